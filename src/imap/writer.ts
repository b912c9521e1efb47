/**
 * IMAP response formatting (RFC 9051 §9 formal syntax, §4.3 strings).
 *
 * Strings go out quoted when that is safe and short, else as literals:
 *  - NUL, CR, LF → literal (a literal8 `~{n}` when there is a NUL, RFC 3516);
 *  - 8-bit bytes → literal, unless `utf8` (UTF8=ACCEPT enabled, RFC 6855, or
 *    IMAP4rev2 selected, RFC 9051 §4.3) and the bytes are valid UTF-8;
 *  - `"` and `\` → literal (some clients mishandle escapes; RFC 9051 allows both);
 *    `quoted()` itself escapes them, for callers who want it;
 *  - longer than `maxQuoted` (1024) → literal, which keeps lines short.
 * Raw text (atoms, response text) never carries CR, LF or NUL: they are replaced by
 * spaces, so no value can end a response line early (response injection).
 */
import { isUtf8 } from 'node:buffer';
import type { ReaderEvent, Token } from './parser.ts';

export interface WriteOptions {
  /** UTF-8 allowed in quoted strings (UTF8=ACCEPT enabled or IMAP4rev2). */
  utf8?: boolean;
  /** Write `{n+}` instead of `{n}` (client commands with LITERAL+; tests). */
  nonSync?: boolean;
  /** Strings longer than this are written as literals. Default 1024. */
  maxQuoted?: number;
}

export const CRLF = Buffer.from('\r\n');
export const NIL = 'NIL';
export const DEFAULT_MAX_QUOTED = 1024;
/** Longest human-readable response text we send. */
export const MAX_TEXT = 1000;

const SP = Buffer.from(' ');

function bytes(value: string | Buffer): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
}

/** Can `value` be a quoted string (with `\"` and `\\` escapes)? */
export function canQuote(value: string | Buffer, opts: WriteOptions = {}): boolean {
  const b = bytes(value);
  if (b.length > (opts.maxQuoted ?? DEFAULT_MAX_QUOTED)) return false;
  let high = false;
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c === 0 || c === 0x0a || c === 0x0d) return false;
    if (c >= 0x80) high = true;
  }
  return !high || (!!opts.utf8 && isUtf8(b));
}

/** `"…"` with `"` and `\` escaped, or null when the value cannot be quoted. */
export function quoted(value: string | Buffer, opts: WriteOptions = {}): Buffer | null {
  const b = bytes(value);
  if (!canQuote(b, opts)) return null;
  let extra = 0;
  for (let i = 0; i < b.length; i++) if (b[i] === 0x22 || b[i] === 0x5c) extra++;
  const out = Buffer.allocUnsafe(b.length + extra + 2);
  let k = 0;
  out[k++] = 0x22;
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c === 0x22 || c === 0x5c) out[k++] = 0x5c;
    out[k++] = c;
  }
  out[k++] = 0x22;
  return out;
}

/** `{n}CRLF` + bytes; `~{n}` for `binary` (RFC 3516), `{n+}` with opts.nonSync. */
export function literal(value: string | Buffer, opts: { binary?: boolean; nonSync?: boolean } = {}): Buffer {
  const b = bytes(value);
  const head = `${opts.binary ? '~' : ''}{${b.length}${opts.nonSync ? '+' : ''}}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), b]);
}

/** string = quoted / literal, chosen as described at the top of this file. */
export function string(value: string | Buffer, opts: WriteOptions = {}): Buffer {
  const b = bytes(value);
  if (b.indexOf(0x22) < 0 && b.indexOf(0x5c) < 0) {
    const q = quoted(b, opts);
    if (q) return q;
  }
  return literal(b, { binary: b.indexOf(0) >= 0, nonSync: opts.nonSync });
}

/** ATOM-CHAR: any CHAR except atom-specials (RFC 9051 §9). */
export function isAtomChar(c: number): boolean {
  return (
    c > 0x20 && c < 0x7f && c !== 0x28 && c !== 0x29 && c !== 0x7b && c !== 0x25 && c !== 0x2a && c !== 0x22 && c !== 0x5c && c !== 0x5d
  );
}

/** 1*ATOM-CHAR (and not NIL, which reads back as nil). */
export function isAtom(value: string): boolean {
  if (value.length === 0 || value.toUpperCase() === 'NIL') return false;
  for (let i = 0; i < value.length; i++) if (!isAtomChar(value.charCodeAt(i))) return false;
  return true;
}

/** astring = 1*ASTRING-CHAR / string: a bare atom when possible (`]` allowed), else a string. */
export function astring(value: string | Buffer, opts: WriteOptions = {}): Buffer {
  const s = typeof value === 'string' ? value : value.toString('latin1');
  let bare = s.length > 0 && s.toUpperCase() !== 'NIL';
  for (let i = 0; i < s.length && bare; i++) {
    const c = s.charCodeAt(i);
    if (!isAtomChar(c) && c !== 0x5d) bare = false;
  }
  return bare ? Buffer.from(s, 'latin1') : string(value, opts);
}

/** nstring = string / nil. */
export function nstring(value: string | Buffer | null | undefined, opts: WriteOptions = {}): Buffer {
  return value === null || value === undefined ? Buffer.from(NIL) : string(value, opts);
}

/** Replace what could end or corrupt a line (CR, LF, NUL) by spaces. */
export function safeText(text: string, max = Number.POSITIVE_INFINITY): string {
  const clean = text.replace(/[\r\n\0]/g, ' ');
  return clean.length > max ? clean.slice(0, max) : clean;
}

/** A tree of response parts. Plain strings are atoms/raw text and are written as-is. */
export type Wire =
  | string
  | number
  | bigint
  | null
  | readonly Wire[]
  | { string: string | Buffer }
  | { astring: string | Buffer }
  | { nstring: string | Buffer | null | undefined }
  | { literal: string | Buffer; binary?: boolean }
  | { token: Token };

function push(out: Buffer[], item: Wire, opts: WriteOptions): void {
  if (item === null) out.push(Buffer.from(NIL));
  else if (typeof item === 'string') out.push(Buffer.from(safeText(item), 'utf8'));
  else if (typeof item === 'number' || typeof item === 'bigint') out.push(Buffer.from(String(item)));
  else if (Array.isArray(item)) {
    out.push(Buffer.from('('));
    item.forEach((x, i) => {
      if (i > 0) out.push(SP);
      push(out, x, opts);
    });
    out.push(Buffer.from(')'));
  } else if ('string' in item) out.push(string(item.string, opts));
  else if ('astring' in item) out.push(astring(item.astring, opts));
  else if ('nstring' in item) out.push(nstring(item.nstring, opts));
  else if ('literal' in item) out.push(literal(item.literal, { binary: item.binary }));
  else if ('token' in item) out.push(formatToken(item.token, opts));
}

/** One part of a response. */
export function wire(item: Wire, opts: WriteOptions = {}): Buffer {
  const out: Buffer[] = [];
  push(out, item, opts);
  return Buffer.concat(out);
}

/** Items joined by SP, ended by CRLF. */
export function line(items: readonly Wire[], opts: WriteOptions = {}): Buffer {
  const out: Buffer[] = [];
  items.forEach((x, i) => {
    if (i > 0) out.push(SP);
    push(out, x, opts);
  });
  out.push(CRLF);
  return Buffer.concat(out);
}

/** `* …` */
export function untagged(items: readonly Wire[], opts: WriteOptions = {}): Buffer {
  return line(['*', ...items], opts);
}

export type Status = 'OK' | 'NO' | 'BAD' | 'PREAUTH' | 'BYE';

/** `tag STATUS [CODE] text` (RFC 9051 §7.1); tag '*' for untagged. */
export function status(tag: string | null, kind: Status, text: string, code?: string): Buffer {
  const head = `${tag ?? '*'} ${kind} ${code ? `[${safeText(code, MAX_TEXT)}] ` : ''}`;
  return Buffer.from(safeText(head) + safeText(text || kind, MAX_TEXT) + '\r\n', 'utf8');
}

/** `+ text` — a continuation request (RFC 9051 §7.5). */
export function continuation(text = 'Ready'): Buffer {
  return Buffer.from(`+ ${safeText(text, MAX_TEXT)}\r\n`, 'utf8');
}

/** The reply for a reader error event (bad/no → tagged or `* BAD`; fatal → `* BYE`). */
export function readerErrorResponse(ev: ReaderEvent): Buffer | null {
  if (ev.kind === 'bad' || ev.kind === 'no') return status(ev.tag, ev.kind === 'bad' ? 'BAD' : 'NO', ev.text, ev.code);
  if (ev.kind === 'fatal') return status(null, 'BYE', ev.text);
  return null;
}

/**
 * A parser token written back in command syntax: quoted strings stay quoted when
 * representable (with escapes), literals stay literals (`~{n}` when binary). A
 * `stream` token has no bytes; it is written as `{size}` with no data (logging only).
 */
export function formatToken(token: Token, opts: WriteOptions = {}): Buffer {
  switch (token.kind) {
    case 'atom': {
      if (!token.section) return Buffer.from(safeText(token.value), 'latin1');
      const parts: Buffer[] = [Buffer.from(safeText(token.value) + '[', 'latin1'), formatTokens(token.section, opts), Buffer.from(']')];
      if (token.partial) {
        const p = token.partial;
        parts.push(Buffer.from(p.length === undefined ? `<${p.offset}>` : `<${p.offset}.${p.length}>`));
      }
      return Buffer.concat(parts);
    }
    case 'number':
      return Buffer.from(token.text);
    case 'nil':
      return Buffer.from(NIL);
    case 'list':
      return Buffer.concat([Buffer.from('('), formatTokens(token.items, opts), Buffer.from(')')]);
    case 'string': {
      if (!token.literal) {
        const q = quoted(token.value, { ...opts, maxQuoted: Number.POSITIVE_INFINITY });
        if (q) return q;
      }
      return literal(token.value, { binary: token.binary === true, nonSync: opts.nonSync });
    }
    case 'stream':
      return Buffer.from(`${token.binary ? '~' : ''}{${token.size}}`);
  }
}

/** Tokens joined by SP. */
export function formatTokens(tokens: readonly Token[], opts: WriteOptions = {}): Buffer {
  const out: Buffer[] = [];
  tokens.forEach((t, i) => {
    if (i > 0) out.push(SP);
    out.push(formatToken(t, opts));
  });
  return Buffer.concat(out);
}

/** A whole client command line: `tag NAME args CRLF` (tests, and an IMAP client if we ever need one). */
export function formatCommand(tag: string, name: string, args: readonly Token[], opts: WriteOptions = {}): Buffer {
  const head = Buffer.from(`${tag} ${name}`, 'latin1');
  return Buffer.concat(args.length ? [head, SP, formatTokens(args, opts), CRLF] : [head, CRLF]);
}

/**
 * Many responses gathered into few large buffers, for commands that answer with
 * thousands of lines (FETCH 1:*): text is encoded straight into a chunk of
 * `chunkSize` bytes, small byte strings are copied in, large ones are queued as
 * they are. The caller takes the chunks and writes them to the socket when
 * `length` is large enough, which costs one socket write per chunk instead of
 * several per response.
 */
export class ResponseBuffer {
  private chunks: Buffer[] = [];
  private queued = 0;
  private cur: Buffer;
  private pos = 0;

  constructor(
    private readonly chunkSize = 64 * 1024,
    /** Byte strings at least this long are queued, not copied. */
    private readonly copyMax = 8 * 1024,
  ) {
    this.cur = Buffer.allocUnsafe(chunkSize);
  }

  /** Bytes gathered and not taken yet. */
  get length(): number {
    return this.queued + this.pos;
  }

  /** Appends text, UTF-8 encoded (as Buffer.from(text, 'utf8') would). */
  text(s: string): void {
    // A UTF-16 code unit takes at most 3 bytes in UTF-8 (a surrogate pair 4 for 2 units).
    if (s.length * 3 > this.cur.length - this.pos) {
      const n = Buffer.byteLength(s, 'utf8');
      if (n > this.cur.length - this.pos) {
        this.seal();
        if (n > this.cur.length) {
          this.push(Buffer.from(s, 'utf8'));
          return;
        }
      }
    }
    this.pos += this.cur.write(s, this.pos, 'utf8');
  }

  /** Appends bytes; the caller must not change them until they are taken and written. */
  bytes(b: Buffer): void {
    if (b.length >= this.copyMax) {
      this.seal();
      this.push(b);
      return;
    }
    if (b.length > this.cur.length - this.pos) this.seal();
    if (b.length > this.cur.length - this.pos) this.push(b); // (only with copyMax above a quarter chunk)
    else this.pos += b.copy(this.cur, this.pos);
  }

  /** Everything gathered so far, in order; the buffer starts empty again. */
  take(): Buffer[] {
    this.seal();
    const out = this.chunks;
    this.chunks = [];
    this.queued = 0;
    return out;
  }

  private push(b: Buffer): void {
    this.chunks.push(b);
    this.queued += b.length;
  }

  /** Ends the current chunk; the unused rest of it is kept for what follows when it is not too small. */
  private seal(): void {
    if (this.pos === 0) return;
    this.push(this.cur.subarray(0, this.pos));
    const rest = this.cur.length - this.pos;
    this.cur = rest >= this.chunkSize / 4 ? this.cur.subarray(this.pos) : Buffer.allocUnsafe(this.chunkSize);
    this.pos = 0;
  }
}
