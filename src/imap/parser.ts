/**
 * IMAP command reader: a streaming, incremental parser for client commands
 * (RFC 9051 §9 and RFC 3501 §9 formal syntax, RFC 7888 LITERAL+/LITERAL-,
 * RFC 3516 literal8, RFC 6855 UTF-8 in quoted strings).
 *
 * Pull model. The connection pushes socket chunks with `push()` and pulls events
 * with `next()` until it returns null (then it resumes the socket). The reader never
 * consumes bytes past the event it returns, so:
 *  - after a `continue` event the caller sends "+ Ready" before asking for more, and
 *    the literal's bytes are only read after that (RFC 9051 §7.5);
 *  - after a `command` event the caller may change the limits (e.g. after LOGIN)
 *    before the next pipelined command is read.
 *
 * Framing. A command is one or more lines; a line ending in `{n}`, `{n+}` or `~{n}`
 * (optionally `+`) announces a literal of n bytes that follows the line's CRLF.
 * Literal bytes are data only: they are never scanned for CRLF or commands. A line
 * ends at LF (a preceding CR is removed; a bare LF is tolerated like Dovecot does;
 * a bare CR inside a line is a syntax error).
 *
 * APPEND message literals (the message of APPEND / MULTIAPPEND, the literal8 in
 * `UTF8 (~{n})` of RFC 6855, and `TEXT` parts of CATENATE) are never buffered: the
 * reader emits `literal-start`, zero or more `literal-data` (slices of the pushed
 * chunks, not copies) and `literal-end`, and leaves a `{ kind: 'stream' }`
 * placeholder token in the command's arguments. A command with streamed literals
 * ends with either a `command` event or an error event (`bad`/`no`/`fatal`): on an
 * error the caller discards what it received for that command.
 *
 * Limits (DESIGN.md "Defaults and limits"):
 *  - command text (all lines of one command, literal contents excluded) above
 *    `limits.line` → `BAD [TOOBIG]`; the rest of the line is drained without
 *    being kept (only a 64-byte tail, to see a literal announced at its end);
 *  - an ordinary literal above `limits.literal`, or one that would take the
 *    command's buffered bytes above `limits.command` → `BAD [TOOBIG]`;
 *  - an APPEND message literal above `limits.append` → `NO [TOOBIG]` (RFC 7889);
 *  - a synchronizing literal that is refused gets no continuation: the error ends
 *    the command and the next bytes are a new command (RFC 9051 §7.5);
 *  - a refused non-synchronizing literal is skipped without buffering and the rest
 *    of the command drained, then the error is reported; before authentication
 *    (`limits.preAuth`) it is fatal instead: the caller sends BYE and closes;
 *  - with LITERAL- (`literalMinus`) a non-synchronizing literal above 4096 bytes is
 *    `BAD [TOOBIG]` (RFC 7888 §4).
 * Memory held by the reader (`retainedBytes`) never exceeds
 * `limits.line + limits.command` plus a small constant; pushed but unread input
 * (`pendingBytes`) is the caller's to bound by pausing the socket.
 *
 * Errors are values: nothing here throws on any input.
 *
 * Use:
 *   socket.on('data', (chunk) => { socket.pause(); reader.push(chunk); pump(); });
 *   function pump() {
 *     for (let ev = reader.next(); ev; ev = reader.next()) {
 *       switch (ev.kind) {
 *         case 'continue': socket.write(continuation()); break;
 *         case 'literal-start': sink = openBlob(ev.size); break;      // APPEND
 *         case 'literal-data': if (!sink.write(ev.data)) return sink.once('drain', pump);
 *                              break;
 *         case 'literal-end': break;
 *         case 'command': queue(ev.command); break;               // may setLimits() later
 *         case 'bad': case 'no': socket.write(readerErrorResponse(ev)); break;
 *         case 'fatal': socket.end(readerErrorResponse(ev)); return;
 *       }
 *     }
 *     socket.resume();
 *   }
 * (`literal-start.args` shares token objects with the final command; a list still
 * open at that point, as in `UTF8 (`, keeps growing.)
 */

/** A FETCH partial `<offset.length>` (RFC 9051 §6.4.5). */
export interface PartialRange {
  offset: number;
  length?: number;
}

/**
 * An atom (also flags like `\Seen`, sequence sets like `1:*`, list patterns like
 * `%`). For `BODY`, `BODY.PEEK`, `BINARY`, `BINARY.PEEK` and `BINARY.SIZE` followed
 * directly by `[`, the bracketed part is parsed into `section` (its tokens; `[]`
 * gives an empty array) and a following `<n.m>` into `partial`.
 */
export interface AtomToken {
  kind: 'atom';
  value: string;
  section?: Token[];
  partial?: PartialRange;
}
/** Digits only, within Number.MAX_SAFE_INTEGER (larger numbers stay atoms); `text` as sent. */
export interface NumberToken {
  kind: 'number';
  value: number;
  text: string;
}
/** A quoted string or a literal; `binary` for a literal8 `~{n}`. */
export interface StringToken {
  kind: 'string';
  value: Buffer;
  literal: boolean;
  binary?: true;
}
export interface NilToken {
  kind: 'nil';
  /** As sent: where an astring is expected (a mailbox called "nil"), the atom is a name. */
  text: string;
}
export interface ListToken {
  kind: 'list';
  items: Token[];
}
/** Placeholder for an APPEND message literal delivered through literal-* events. */
export interface StreamToken {
  kind: 'stream';
  index: number;
  size: number;
  binary: boolean;
}
export type Token = AtomToken | NumberToken | StringToken | NilToken | ListToken | StreamToken;

export interface Command {
  tag: string;
  /** Upper-case; `UID FETCH`, `UID STORE`, … for UID commands. */
  name: string;
  args: Token[];
}

export type ReaderEvent =
  | { kind: 'command'; command: Command }
  /** Send a continuation request ("+ Ready") now; the literal's bytes follow. */
  | { kind: 'continue' }
  /** Reply `tag BAD`/`tag NO` (`* BAD` when tag is null), optionally with a response code. */
  | { kind: 'bad' | 'no'; tag: string | null; code?: string; text: string }
  /** Send `* BYE` and close the connection; the reader ignores all further input. */
  | { kind: 'fatal'; tag: string | null; text: string }
  | {
      kind: 'literal-start';
      tag: string;
      name: string;
      /** 0-based number of this streamed literal in its command (MULTIAPPEND). */
      index: number;
      size: number;
      binary: boolean;
      /** The command's top-level arguments parsed so far (mailbox, flags, date…). */
      args: Token[];
    }
  | { kind: 'literal-data'; data: Buffer }
  | { kind: 'literal-end'; index: number };

export interface ReaderLimits {
  /** Bytes of command text per command, literal contents excluded. */
  line: number;
  /** Largest ordinary (buffered) literal. */
  literal: number;
  /** Largest APPEND message literal (streamed, never buffered). */
  append: number;
  /** Bytes buffered for one command: text plus ordinary literals. */
  command: number;
  /** Not yet authenticated: an oversized non-synchronizing literal is fatal. */
  preAuth: boolean;
}

export const KiB = 1024;
export const MAX_LINE = 64 * KiB;
/** Non-synchronizing literals above this are refused when LITERAL- is advertised (RFC 7888 §4). */
export const LITERAL_MINUS_MAX = 4096;
/** Deepest nesting of lists and sections. */
export const MAX_DEPTH = 64;

/** Before login: a small literal cap, no APPEND (DESIGN.md: "pre-login"). */
export const PRE_AUTH_LIMITS: Readonly<ReaderLimits> = Object.freeze({
  line: MAX_LINE,
  literal: 8 * KiB,
  append: 8 * KiB,
  command: MAX_LINE + 16 * KiB,
  preAuth: true,
});

/** After login: 100 KiB ordinary literals, APPEND up to the server's APPENDLIMIT. */
export function authenticatedLimits(appendLimit: number): ReaderLimits {
  return { line: MAX_LINE, literal: 100 * KiB, append: appendLimit, command: 1024 * KiB, preAuth: false };
}

export interface ReaderOptions {
  limits?: ReaderLimits;
  /** LITERAL- instead of LITERAL+ (RFC 7888): non-sync literals capped at 4096 bytes. */
  literalMinus?: boolean;
}

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const DQUOTE = 0x22;
const LPAREN = 0x28;
const RPAREN = 0x29;
const LT = 0x3c;
const GT = 0x3e;
const DOT = 0x2e;
const LBRACKET = 0x5b;
const BACKSLASH = 0x5c;
const RBRACKET = 0x5d;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const PLUS = 0x2b;
const TILDE = 0x7e;

/** Bytes of an over-long line kept to recognise a literal announced at its end. */
const TAIL = 64;

const SECTION_ATOMS = new Set(['BODY', 'BODY.PEEK', 'BINARY', 'BINARY.PEEK', 'BINARY.SIZE']);

const enum Expect {
  /** After SP: a token must follow. */
  Token,
  /** After "(" or "[": a token or the closer. */
  Open,
  /** After a token: SP, a closer or the end. */
  Sep,
}

interface Failure {
  kind: 'bad' | 'no';
  code?: string;
  text: string;
}

interface Frame {
  items: Token[];
  section: AtomToken | null;
}

interface Cmd {
  tag: string | null;
  name: string;
  args: Token[];
  stack: Frame[];
  sections: number;
  expect: Expect;
  error: Failure | null;
  textBytes: number;
  literalBytes: number;
  streams: number;
}

interface Literal {
  mode: 'buffer' | 'stream' | 'skip';
  size: number;
  remaining: number;
  binary: boolean;
  buf: Buffer | null;
  filled: number;
  index: number;
}

interface Marker {
  start: number;
  size: number;
  sync: boolean;
  binary: boolean;
}

function bad(text: string, code?: string): Failure {
  return code ? { kind: 'bad', code, text } : { kind: 'bad', text };
}

/** tag = 1*<any ASTRING-CHAR except "+"> (RFC 9051 §9). */
function isTagChar(c: number): boolean {
  return (
    c > 0x20 && c < 0x7f && c !== LPAREN && c !== RPAREN && c !== LBRACE && c !== 0x25 /* % */ && c !== 0x2a /* * */ &&
    c !== DQUOTE && c !== BACKSLASH && c !== PLUS
  );
}

export function isValidTag(tag: string): boolean {
  if (tag.length === 0) return false;
  for (let i = 0; i < tag.length; i++) if (!isTagChar(tag.charCodeAt(i))) return false;
  return true;
}

function isAlpha(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** Command names: a letter, then letters, digits, "-", "_", ".". */
function isNameChar(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || c === DOT;
}

/**
 * Characters of a bare word: ATOM-CHAR plus what astring, list-mailbox, flags and
 * sequence sets add (`]`, `%`, `*`, `\`). Inside a section `]` ends the word.
 */
function isWordChar(c: number, inSection: boolean): boolean {
  return c > 0x20 && c < 0x7f && c !== LPAREN && c !== RPAREN && c !== LBRACE && c !== DQUOTE && !(inSection && c === RBRACKET);
}

function classify(value: string): Token {
  let digits = value.length > 0;
  for (let i = 0; i < value.length && digits; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x30 || c > 0x39) digits = false;
  }
  if (digits) {
    const n = Number(value);
    if (Number.isSafeInteger(n)) return { kind: 'number', value: n, text: value };
    return { kind: 'atom', value };
  }
  if (value.length === 3 && value.toUpperCase() === 'NIL') return { kind: 'nil', text: value };
  return { kind: 'atom', value };
}

/** `{n}`, `{n+}`, `~{n}`, `~{n+}` at the very end of a line (CR already removed). */
function findMarker(text: Buffer): Marker | null {
  let i = text.length - 1;
  if (i < 2 || text[i] !== RBRACE) return null;
  i--;
  let sync = true;
  if (text[i] === PLUS) {
    sync = false;
    i--;
  }
  const end = i + 1;
  while (i >= 0 && text[i] >= 0x30 && text[i] <= 0x39) i--;
  const digitsStart = i + 1;
  if (digitsStart === end || i < 0 || text[i] !== LBRACE) return null;
  let start = i;
  const binary = i > 0 && text[i - 1] === TILDE;
  if (binary) start--;
  let d = digitsStart;
  while (d < end - 1 && text[d] === 0x30) d++;
  const size = end - d > 15 ? Number.POSITIVE_INFINITY : Number(text.toString('latin1', d, end));
  return { start, size, sync, binary };
}

export class CommandReader {
  private limits: ReaderLimits;
  private readonly literalMinus: boolean;
  private readonly input: Buffer[] = [];
  private inputOffset = 0;
  private pending = 0;
  private readonly out: ReaderEvent[] = [];
  private frag: Buffer[] = [];
  private fragLen = 0;
  private draining = false;
  private tail: Buffer = Buffer.alloc(0);
  private cmd: Cmd | null = null;
  private lit: Literal | null = null;
  private closed = false;

  constructor(options: ReaderOptions = {}) {
    this.limits = { ...(options.limits ?? PRE_AUTH_LIMITS) };
    this.literalMinus = options.literalMinus ?? false;
  }

  /** Change the limits (e.g. after LOGIN); they apply from the next line or literal. */
  setLimits(limits: ReaderLimits): void {
    this.limits = { ...limits };
  }

  getLimits(): Readonly<ReaderLimits> {
    return this.limits;
  }

  /** Queue input. Nothing is parsed until next() is called. */
  push(chunk: Buffer): void {
    if (this.closed || chunk.length === 0) return;
    this.input.push(chunk);
    this.pending += chunk.length;
  }

  /** The next event, or null when more input is needed (or after a fatal error). */
  next(): ReaderEvent | null {
    for (;;) {
      const ev = this.out.shift();
      if (ev) return ev;
      if (this.closed || this.input.length === 0) return null;
      if (this.lit) this.stepLiteral();
      else this.stepLine();
    }
  }

  /** All events available now. */
  drain(): ReaderEvent[] {
    const events: ReaderEvent[] = [];
    for (let ev = this.next(); ev; ev = this.next()) events.push(ev);
    return events;
  }

  /**
   * The next raw line (CRLF or LF stripped) for what is not a command: SASL
   * responses (RFC 9051 §6.2.2) and IDLE's "DONE" (RFC 2177). Null until a whole
   * line is buffered. Only between commands. A line longer than `max` is read to its
   * end without being kept and reported as 'too-long'.
   */
  nextRawLine(max = 8 * KiB): Buffer | 'too-long' | null {
    if (this.cmd || this.lit || this.closed || this.draining) return null;
    while (this.input.length) {
      const chunk = this.input[0]!;
      const from = this.inputOffset;
      const lf = chunk.indexOf(LF, from);
      const end = lf < 0 ? chunk.length : lf;
      const piece = chunk.subarray(from, end);
      if (this.fragLen + piece.length <= max) this.frag.push(Buffer.from(piece));
      this.fragLen += piece.length;
      this.advance(end - from + (lf < 0 ? 0 : 1));
      if (lf >= 0) {
        const line = Buffer.concat(this.frag);
        const tooLong = this.fragLen > max;
        this.frag = [];
        this.fragLen = 0;
        if (tooLong) return 'too-long';
        return line.length && line[line.length - 1] === 13 ? line.subarray(0, line.length - 1) : line;
      }
    }
    return null;
  }

  /** Bytes the reader holds for the command in progress (line, tokens, literal buffer). */
  get retainedBytes(): number {
    const cmd = this.cmd;
    return this.fragLen + this.tail.length + (cmd ? cmd.textBytes + cmd.literalBytes : 0) + (this.lit?.buf?.length ?? 0);
  }

  /** Bytes pushed but not yet read. */
  get pendingBytes(): number {
    return this.pending;
  }

  /** True after a fatal error. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether a command is partly read (e.g. to answer BYE on idle timeout). */
  get inCommand(): boolean {
    return this.cmd !== null || this.fragLen > 0 || this.draining;
  }

  private advance(n: number): void {
    this.inputOffset += n;
    this.pending -= n;
    if (this.inputOffset >= this.input[0].length) {
      this.input.shift();
      this.inputOffset = 0;
    }
  }

  private stepLiteral(): void {
    const lit = this.lit!;
    const chunk = this.input[0];
    const n = Math.min(chunk.length - this.inputOffset, lit.remaining);
    const piece = chunk.subarray(this.inputOffset, this.inputOffset + n);
    if (lit.mode === 'buffer') piece.copy(lit.buf!, lit.filled);
    else if (lit.mode === 'stream') this.out.push({ kind: 'literal-data', data: piece });
    lit.filled += n;
    lit.remaining -= n;
    this.advance(n);
    if (lit.remaining === 0) this.finishLiteral();
  }

  private stepLine(): void {
    const chunk = this.input[0];
    const from = this.inputOffset;
    const lf = chunk.indexOf(LF, from);
    const end = lf < 0 ? chunk.length : lf;
    const piece = chunk.subarray(from, end);
    if (!this.draining) {
      const used = (this.cmd?.textBytes ?? 0) + this.fragLen + piece.length;
      if (used > this.limits.line) this.startDraining(piece);
      else if (piece.length > 0) {
        this.frag.push(Buffer.from(piece));
        this.fragLen += piece.length;
      }
    } else this.keepTail(piece);
    this.advance(end - from + (lf < 0 ? 0 : 1));
    if (lf >= 0) this.endOfLine();
  }

  private keepTail(piece: Buffer): void {
    if (piece.length >= TAIL) this.tail = Buffer.from(piece.subarray(piece.length - TAIL));
    else if (piece.length > 0) {
      const joined = Buffer.concat([this.tail, piece]);
      this.tail = Buffer.from(joined.subarray(Math.max(0, joined.length - TAIL)));
    }
  }

  /** The command text went over the limit: keep only the tag, drain to the end of the line. */
  private startDraining(piece: Buffer): void {
    const head = Buffer.concat([...this.frag, piece]);
    if (!this.cmd) {
      const cmd = this.newCmd();
      // Only within the first `line` bytes, so the result does not depend on chunking.
      const sp = head.subarray(0, this.limits.line).indexOf(SP);
      if (sp > 0) {
        const tag = head.toString('latin1', 0, sp);
        if (isValidTag(tag)) cmd.tag = tag;
      }
      this.cmd = cmd;
    }
    if (!this.cmd.error) this.cmd.error = bad('Command line too long', 'TOOBIG');
    this.frag = [];
    this.fragLen = 0;
    this.draining = true;
    this.tail = Buffer.alloc(0);
    this.keepTail(head);
  }

  private newCmd(): Cmd {
    return {
      tag: null,
      name: '',
      args: [],
      stack: [],
      sections: 0,
      expect: Expect.Sep,
      error: null,
      textBytes: 0,
      literalBytes: 0,
      streams: 0,
    };
  }

  private endOfLine(): void {
    let text: Buffer;
    const wasDraining = this.draining;
    if (wasDraining) {
      text = this.tail;
      this.tail = Buffer.alloc(0);
    } else {
      text = this.frag.length === 1 ? this.frag[0] : Buffer.concat(this.frag, this.fragLen);
      if (this.cmd) this.cmd.textBytes += this.fragLen + 1;
    }
    this.frag = [];
    this.fragLen = 0;
    this.draining = false;
    if (text.length > 0 && text[text.length - 1] === CR) text = text.subarray(0, text.length - 1);
    const marker = findMarker(text);
    if (!wasDraining) {
      const body = marker ? text.subarray(0, marker.start) : text;
      if (!this.cmd) {
        if (text.length === 0) return; // empty lines are ignored
        this.cmd = this.newCmd();
        this.cmd.textBytes = text.length + 2;
        this.parseHead(this.cmd, body);
      } else if (!this.cmd.error) this.tokenize(this.cmd, body, 0);
    }
    if (marker) this.literal(marker);
    else this.finishCommand();
  }

  private literal(m: Marker): void {
    const cmd = this.cmd!;
    const limits = this.limits;
    const buffered = cmd.textBytes + cmd.literalBytes;
    if (!m.sync && limits.preAuth && (m.size > limits.literal || buffered + m.size > limits.command)) {
      this.fatal(cmd.tag, 'Literal too big before authentication');
      return;
    }
    if (!cmd.error && cmd.expect === Expect.Sep) cmd.error = bad('Missing space before literal');
    const message = !cmd.error && this.isMessageLiteral(cmd);
    if (!cmd.error) {
      if (!m.sync && this.literalMinus && m.size > LITERAL_MINUS_MAX) {
        cmd.error = bad('Non-synchronizing literal too big (LITERAL-)', 'TOOBIG');
      } else if (message) {
        if (m.size > limits.append) cmd.error = { kind: 'no', code: 'TOOBIG', text: 'Message too big' };
      } else if (m.size > limits.literal || buffered + m.size > limits.command) {
        cmd.error = bad('Literal too big', 'TOOBIG');
      }
    }
    if (cmd.error) {
      // A refused synchronizing literal is never sent: the command ends here.
      if (m.sync) this.finishCommand();
      else this.startLiteral('skip', m, -1);
      return;
    }
    if (m.sync) this.out.push({ kind: 'continue' });
    if (message) {
      const index = cmd.streams++;
      this.out.push({
        kind: 'literal-start',
        tag: cmd.tag!,
        name: cmd.name,
        index,
        size: m.size,
        binary: m.binary,
        args: cmd.args.slice(),
      });
      this.startLiteral('stream', m, index);
    } else this.startLiteral('buffer', m, -1);
  }

  /** APPEND's message (RFC 3502 MULTIAPPEND, RFC 6855 `UTF8 (literal8)`, RFC 4469 CATENATE `TEXT`). */
  private isMessageLiteral(cmd: Cmd): boolean {
    if (cmd.name !== 'APPEND') return false;
    if (cmd.stack.length === 0) return cmd.args.length >= 1;
    if (cmd.stack.length !== 1 || cmd.stack[0].section) return false;
    const items = cmd.stack[0].items;
    const before = cmd.args[cmd.args.length - 2];
    if (!before || before.kind !== 'atom') return false;
    const word = before.value.toUpperCase();
    if (word === 'UTF8') return items.length === 0;
    if (word === 'CATENATE') {
      const last = items[items.length - 1];
      return !!last && last.kind === 'atom' && last.value.toUpperCase() === 'TEXT';
    }
    return false;
  }

  private startLiteral(mode: Literal['mode'], m: Marker, index: number): void {
    this.lit = {
      mode,
      size: m.size,
      remaining: m.size,
      binary: m.binary,
      buf: mode === 'buffer' ? Buffer.alloc(m.size) : null,
      filled: 0,
      index,
    };
    if (m.size === 0) this.finishLiteral();
  }

  private finishLiteral(): void {
    const lit = this.lit!;
    const cmd = this.cmd!;
    this.lit = null;
    if (lit.mode === 'skip') return;
    let token: Token;
    if (lit.mode === 'buffer') {
      token = lit.binary ? { kind: 'string', value: lit.buf!, literal: true, binary: true } : { kind: 'string', value: lit.buf!, literal: true };
      cmd.literalBytes += lit.size;
    } else {
      this.out.push({ kind: 'literal-end', index: lit.index });
      token = { kind: 'stream', index: lit.index, size: lit.size, binary: lit.binary };
    }
    this.append(cmd, token);
    cmd.expect = Expect.Sep;
  }

  private finishCommand(): void {
    const cmd = this.cmd!;
    this.cmd = null;
    if (!cmd.error) {
      if (cmd.stack.length > 0) cmd.error = bad(cmd.stack[cmd.stack.length - 1].section ? 'Missing ]' : 'Missing )');
      else if (cmd.expect !== Expect.Sep) cmd.error = bad('Unexpected end of command');
    }
    const e = cmd.error;
    if (e) {
      this.out.push(e.code ? { kind: e.kind, tag: cmd.tag, code: e.code, text: e.text } : { kind: e.kind, tag: cmd.tag, text: e.text });
    } else this.out.push({ kind: 'command', command: { tag: cmd.tag!, name: cmd.name, args: cmd.args } });
  }

  private fatal(tag: string | null, text: string): void {
    this.out.push({ kind: 'fatal', tag, text });
    this.closed = true;
    this.cmd = null;
    this.lit = null;
    this.frag = [];
    this.fragLen = 0;
    this.tail = Buffer.alloc(0);
    this.input.length = 0;
    this.inputOffset = 0;
    this.pending = 0;
  }

  /** tag SP command-name [SP args] — the first line of a command. */
  private parseHead(cmd: Cmd, body: Buffer): void {
    const sp = body.indexOf(SP);
    const tagEnd = sp < 0 ? body.length : sp;
    const tag = body.toString('latin1', 0, tagEnd);
    if (!isValidTag(tag)) {
      cmd.error = bad('Invalid tag');
      return;
    }
    cmd.tag = tag;
    let i = tagEnd + 1;
    let j = i;
    while (j < body.length && isNameChar(body[j])) j++;
    if (sp < 0 || j === i || !isAlpha(body[i])) {
      cmd.error = bad('Missing command name');
      return;
    }
    let name = body.toString('latin1', i, j).toUpperCase();
    if (name === 'UID') {
      i = j + 1;
      let k = i;
      while (k < body.length && isNameChar(body[k])) k++;
      if (body[j] !== SP || k === i || !isAlpha(body[i])) {
        cmd.error = bad('Missing command after UID');
        return;
      }
      name = 'UID ' + body.toString('latin1', i, k).toUpperCase();
      j = k;
    }
    cmd.name = name;
    cmd.expect = Expect.Sep;
    this.tokenize(cmd, body, j);
  }

  private append(cmd: Cmd, token: Token): void {
    const top = cmd.stack[cmd.stack.length - 1];
    (top ? top.items : cmd.args).push(token);
  }

  /** Tokenize one line's text (literal marker removed) into the command's tree. */
  private tokenize(cmd: Cmd, text: Buffer, i: number): void {
    const n = text.length;
    while (i < n && !cmd.error) {
      const c = text[i];
      const top = cmd.stack[cmd.stack.length - 1];
      if (cmd.expect === Expect.Sep) {
        if (c === SP) {
          cmd.expect = Expect.Token;
          i++;
        } else if (c === RPAREN && top && !top.section) {
          cmd.stack.pop();
          i++;
        } else if (c === RBRACKET && top && top.section) {
          i = this.closeSection(cmd, text, i);
        } else cmd.error = bad(c === RPAREN || c === RBRACKET ? 'Unexpected ' + String.fromCharCode(c) : 'Expected space');
        continue;
      }
      if (cmd.expect === Expect.Open && top) {
        if (c === RPAREN && !top.section) {
          cmd.stack.pop();
          cmd.expect = Expect.Sep;
          i++;
          continue;
        }
        if (c === RBRACKET && top.section) {
          i = this.closeSection(cmd, text, i);
          continue;
        }
      }
      if (c === LPAREN) {
        if (cmd.stack.length >= MAX_DEPTH) {
          cmd.error = bad('Too deeply nested');
          break;
        }
        const list: ListToken = { kind: 'list', items: [] };
        this.append(cmd, list);
        cmd.stack.push({ items: list.items, section: null });
        cmd.expect = Expect.Open;
        i++;
      } else if (c === DQUOTE) {
        i = this.readQuoted(cmd, text, i);
      } else if (isWordChar(c, cmd.sections > 0)) {
        i = this.readWord(cmd, text, i);
      } else cmd.error = bad('Unexpected character');
    }
  }

  private readWord(cmd: Cmd, text: Buffer, i: number): number {
    const inSection = cmd.sections > 0;
    let j = i;
    let section = false;
    while (j < text.length) {
      const c = text[j];
      if (c === LBRACKET && !inSection && j > i && SECTION_ATOMS.has(text.toString('latin1', i, j).toUpperCase())) {
        section = true;
        break;
      }
      if (!isWordChar(c, inSection)) break;
      j++;
    }
    const value = text.toString('latin1', i, j);
    if (section) {
      if (cmd.stack.length >= MAX_DEPTH) {
        cmd.error = bad('Too deeply nested');
        return j;
      }
      const atom: AtomToken = { kind: 'atom', value, section: [] };
      this.append(cmd, atom);
      cmd.stack.push({ items: atom.section!, section: atom });
      cmd.sections++;
      cmd.expect = Expect.Open;
      return j + 1;
    }
    this.append(cmd, classify(value));
    cmd.expect = Expect.Sep;
    return j;
  }

  /** "]" then an optional partial "<" number ["." number] ">". */
  private closeSection(cmd: Cmd, text: Buffer, i: number): number {
    const frame = cmd.stack.pop()!;
    cmd.sections--;
    cmd.expect = Expect.Sep;
    i++;
    if (text[i] !== LT) return i;
    const offset = readNumber(text, i + 1);
    if (!offset) {
      cmd.error = bad('Invalid partial');
      return i;
    }
    i = offset.end;
    let length: number | undefined;
    if (text[i] === DOT) {
      const len = readNumber(text, i + 1);
      if (!len) {
        cmd.error = bad('Invalid partial');
        return i;
      }
      length = len.value;
      i = len.end;
    }
    if (text[i] !== GT) {
      cmd.error = bad('Invalid partial');
      return i;
    }
    frame.section!.partial = length === undefined ? { offset: offset.value } : { offset: offset.value, length };
    return i + 1;
  }

  /** quoted = DQUOTE *QUOTED-CHAR DQUOTE; only \" and \\ escapes; 8-bit passes (RFC 6855, RFC 9051 UTF-8). */
  private readQuoted(cmd: Cmd, text: Buffer, i: number): number {
    let j = i + 1;
    let len = 0;
    let escapes = false;
    for (;;) {
      if (j >= text.length) {
        cmd.error = bad('Unterminated quoted string');
        return j;
      }
      const c = text[j];
      if (c === DQUOTE) break;
      if (c === BACKSLASH) {
        const e = text[j + 1];
        if (e !== DQUOTE && e !== BACKSLASH) {
          cmd.error = bad('Invalid escape in quoted string');
          return j;
        }
        escapes = true;
        j += 2;
      } else if (c === CR || c === 0) {
        cmd.error = bad('Invalid character in quoted string');
        return j;
      } else j++;
      len++;
    }
    let value: Buffer;
    if (!escapes) value = Buffer.from(text.subarray(i + 1, j));
    else {
      value = Buffer.allocUnsafe(len);
      let k = 0;
      for (let p = i + 1; p < j; p++) {
        const c = text[p];
        if (c === BACKSLASH) p++;
        value[k++] = text[p];
      }
    }
    this.append(cmd, { kind: 'string', value, literal: false });
    cmd.expect = Expect.Sep;
    return j + 1;
  }
}

function readNumber(text: Buffer, i: number): { value: number; end: number } | null {
  let j = i;
  while (j < text.length && text[j] >= 0x30 && text[j] <= 0x39) j++;
  if (j === i || j - i > 15) return null;
  return { value: Number(text.toString('latin1', i, j)), end: j };
}

/** The text of an astring-like token (atom, number, NIL, string as UTF-8), else null. */
export function tokenText(token: Token | undefined): string | null {
  if (!token) return null;
  switch (token.kind) {
    case 'atom':
      return token.section || token.partial ? null : token.value;
    case 'number':
      return token.text;
    case 'nil':
      // An astring position: the atom as written (RFC 9051 §9: astring includes "nil").
      return token.text;
    case 'string':
      return token.value.toString('utf8');
    default:
      return null;
  }
}
