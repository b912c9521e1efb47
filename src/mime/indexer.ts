import { Writable } from 'node:stream';
import type { MessageIndex, MimePart } from './types.ts';
import { buildEnvelope, decodeWords, displayFrom, first, parseHeaderBlock, parseValue, type HeaderField } from './headers.ts';
import { decodeText, htmlToText } from './text.ts';

export interface IndexerOptions {
  /** Deepest nesting that is still split (root = 0). Default 100. */
  maxDepth?: number;
  /** Most parts (including the root and embedded message roots). Default 10000. */
  maxParts?: number;
  /** Cap on MessageIndex.searchText, in characters. Default 256 KiB. */
  maxSearchText?: number;
}

/** Header bytes kept per part; the rest of an absurd header block is counted but not parsed. */
const MAX_HEADER_BYTES = 256 * 1024;
/** Bytes of each line kept to recognise a delimiter (RFC 2046 §5.1.1: boundary ≤ 70 chars, then padding). */
const LINE_PREFIX = 256;

interface OpenPart {
  part: MimePart;
  /** 'header' while reading its header block, then 'body'. */
  phase: 'header' | 'body';
  /** Raw header lines (latin1), capped at MAX_HEADER_BYTES. */
  header: string[];
  headerBytes: number;
  fields: HeaderField[];
  /** multipart/*: its boundary while delimiters are recognised; null otherwise (or in the epilogue). */
  boundary: string | null;
  /** Number of LF bytes before bodyStart. */
  lfAtBody: number;
  /** Raw body bytes of text/plain and text/html parts for the search text, capped. */
  text: Buffer[] | null;
  textBytes: number;
  depth: number;
  /** The enclosing part (multipart or message/rfc822 holder); null for the root. */
  parent: OpenPart | null;
  /** The message/rfc822 part whose body this part is the root of (null otherwise). */
  holder: OpenPart | null;
}

/**
 * Streaming MIME indexer (RFC 5322, RFC 2045, RFC 2046): one pass over the raw bytes,
 * memory bounded by headers, a capped amount of search text and per-part counters.
 *
 * Tree → IMAP section numbers (RFC 9051 §6.4.5):
 * - the root part has path "";
 * - the parts of a multipart at path P are "P.1", "P.2", … (just "1", "2", … when P is "");
 * - a message/rfc822 (or message/global) part at path P has exactly one child, the
 *   embedded message's root. It has no number of its own and gets path P (or "1" when
 *   P is "", since the body of a non-multipart top-level message is section 1). So an
 *   embedded multipart's parts are "P.1", "P.2", …; P.HEADER / P.TEXT are children[0]'s
 *   header and body; P.MIME is P's own header.
 * - IMAP's rule for non-multipart messages: section "P.1" of a message whose root is not
 *   multipart is that root's body (likewise BODY[1] of a single-part top-level message).
 *   A resolver meeting "P.1" where P's children[0] is non-multipart serves its body.
 *
 * Offsets: a part's header block is [headerStart, bodyStart), including the blank line;
 * its body is [bodyStart, bodyEnd). In a multipart, the CRLF before a delimiter line
 * belongs to the delimiter (RFC 2046 §5.1.1), not to the part before it; a multipart's
 * body spans preamble, delimiters, parts and epilogue.
 *
 * Never throws on malformed input: bare LF ends a line, a header block without a blank
 * line ends at the next delimiter or end of input (empty body), a missing close
 * delimiter ends the open parts at end of input.
 */
export class MimeIndexer extends Writable {
  private opts: Required<IndexerOptions>;
  /** Bytes consumed. */
  private offset = 0;
  /** LF bytes consumed = number of complete lines. */
  private lfCount = 0;
  private lastByte = -1;
  /** Current line: start offset and its first LINE_PREFIX bytes. */
  private lineStart = 0;
  private prefix = Buffer.alloc(LINE_PREFIX);
  private prefixLen = 0;
  /** Terminator length of the previous line (2 CRLF, 1 bare LF) and whether it was empty. */
  private prevEol = 0;
  private prevEmpty = false;
  /** LF bytes before the start of the line being ended. */
  private lfAtLine = 0;
  private stack: OpenPart[] = [];
  private root: OpenPart;
  private parts = 1;
  private truncated = false;
  private search: string[] = [];
  private searchLen = 0;
  private done: Promise<MessageIndex>;
  private resolveDone!: (r: MessageIndex) => void;
  private rejectDone!: (e: unknown) => void;
  private settled = false;

  constructor(opts: IndexerOptions = {}) {
    super();
    this.opts = {
      maxDepth: opts.maxDepth ?? 100,
      maxParts: opts.maxParts ?? 10_000,
      maxSearchText: opts.maxSearchText ?? 256 * 1024,
    };
    this.root = this.open('', 0, 0, null, null);
    this.done = new Promise((res, rej) => {
      this.resolveDone = (r) => {
        this.settled = true;
        res(r);
      };
      this.rejectDone = (e) => {
        this.settled = true;
        rej(e);
      };
    });
    this.done.catch(() => undefined); // rejection is reported through result()
  }

  /** Resolves with the index once end() has been called and all bytes are processed. */
  result(): Promise<MessageIndex> {
    return this.done;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      let pos = 0;
      while (pos < chunk.length) {
        const nl = chunk.indexOf(10, pos);
        const end = nl < 0 ? chunk.length : nl + 1;
        this.feed(chunk, pos, end, nl >= 0);
        pos = end;
      }
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    try {
      if (this.offset > this.lineStart) this.endLine(0);
      this.finish();
      cb();
    } catch (err) {
      this.rejectDone(err);
      cb(err as Error);
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Streams destroy themselves after finishing: only an unfinished index fails.
    // (Building the Error, with its stack, cost more than indexing a small message.)
    if (!this.settled) this.rejectDone(err ?? new Error('indexer destroyed'));
    cb(err);
  }

  private open(path: string, headerStart: number, depth: number, parent: OpenPart | null, holder: OpenPart | null): OpenPart {
    const part: MimePart = {
      path,
      type: 'text',
      subtype: 'plain',
      params: {},
      id: null,
      description: null,
      encoding: '7BIT',
      md5: null,
      disposition: null,
      language: null,
      location: null,
      headerStart,
      bodyStart: headerStart,
      bodyEnd: headerStart,
      size: 0,
      lines: 0,
      children: [],
      envelope: null,
    };
    const p: OpenPart = { part, phase: 'header', header: [], headerBytes: 0, fields: [], boundary: null, lfAtBody: 0, text: null, textBytes: 0, depth, parent, holder };
    this.stack.push(p);
    return p;
  }

  /** chunk[start, end): one line or a piece of one; `complete` when it ends with LF. */
  private feed(chunk: Buffer, start: number, end: number, complete: boolean): void {
    const len = end - start;
    const top = this.stack[this.stack.length - 1]!;
    if (top.phase === 'header') {
      if (top.headerBytes < MAX_HEADER_BYTES) top.header.push(chunk.toString('latin1', start, Math.min(end, start + MAX_HEADER_BYTES - top.headerBytes)));
      top.headerBytes += len;
    } else if (top.text) {
      const room = this.opts.maxSearchText * 4 - top.textBytes; // bytes: base64 and UTF-8 expand
      if (room > 0) {
        const n = Math.min(room, len);
        top.text.push(Buffer.from(chunk.subarray(start, start + n))); // copy: don't pin the chunk
        top.textBytes += n;
      }
    }
    if (this.prefixLen < LINE_PREFIX) this.prefixLen += chunk.copy(this.prefix, this.prefixLen, start, Math.min(end, start + LINE_PREFIX - this.prefixLen));
    const crBeforeLf = len >= 2 ? chunk[end - 2] === 13 : this.lastByte === 13;
    this.offset += len;
    this.lastByte = chunk[end - 1]!;
    if (complete) {
      this.lfCount++;
      this.endLine(crBeforeLf ? 2 : 1);
    }
  }

  /** Ends the current line; eol = its terminator length (2 CRLF, 1 bare LF, 0 none: end of input). */
  private endLine(eol: number): void {
    const start = this.lineStart;
    const contentLen = this.offset - start - eol;
    const top = this.stack[this.stack.length - 1]!;
    this.lineStart = this.offset;
    this.lfAtLine = this.lfCount - (eol > 0 ? 1 : 0);
    const prefixLen = this.prefixLen;
    this.prefixLen = 0;
    if (top.phase === 'header' && contentLen === 0 && eol > 0) {
      this.endHeader(top, this.offset, true);
    } else if (prefixLen >= 2 && this.prefix[0] === 45 && this.prefix[1] === 45) {
      // Checked in header phase too: a part whose header never ends still stops at a delimiter.
      const line = this.prefix.toString('latin1', 0, Math.min(prefixLen, Math.max(0, contentLen)));
      this.checkDelimiter(line, start, eol > 0);
    }
    this.prevEol = eol;
    this.prevEmpty = contentLen === 0;
  }

  /** RFC 2046 §5.1.1: "--" boundary ["--"] *LWSP at the start of a line; innermost multipart first. */
  private checkDelimiter(line: string, lineStart: number, terminated: boolean): void {
    for (let i = this.stack.length - 1; i >= 0; i--) {
      const b = this.stack[i]!.boundary;
      if (b === null || !line.startsWith(b, 2)) continue;
      const rest = line.slice(2 + b.length);
      if (!/^(--)?[ \t]*$/.test(rest)) continue;
      // An unterminated delimiter at end of input opens nothing: treat it as a close.
      this.delimiter(i, lineStart, rest.startsWith('--') || !terminated);
      return;
    }
  }

  /** Parses a finished header block. `nested`: false when closing (nothing may open any more). */
  private endHeader(p: OpenPart, bodyStart: number, nested: boolean): void {
    p.phase = 'body';
    p.part.bodyStart = bodyStart;
    p.lfAtBody = this.lfCount;
    p.fields = parseHeaderBlock(p.header.join(''));
    p.header = [];
    const f = p.fields;
    const part = p.part;
    const parent = p.parent;
    const ct = first(f, 'content-type');
    // RFC 2046 §5.1.5: parts of multipart/digest default to message/rfc822; RFC 2045 §5.2 otherwise.
    const inDigest = parent !== null && parent.part.type === 'multipart' && parent.part.subtype === 'digest' && p.holder === null;
    const parsed = parseValue(ct ?? (inDigest ? 'message/rfc822' : 'text/plain; charset=us-ascii'));
    const m = /^([^/\s]+)\s*\/\s*([^/\s]+)$/.exec(parsed.value.toLowerCase());
    if (m) {
      part.type = m[1]!;
      part.subtype = m[2]!;
      part.params = parsed.params;
    } else {
      // RFC 2045 §5.2: an invalid Content-Type means text/plain; charset=us-ascii.
      part.params = { charset: 'us-ascii' };
    }
    part.id = first(f, 'content-id');
    part.description = first(f, 'content-description');
    part.encoding = (first(f, 'content-transfer-encoding') ?? '').trim().toUpperCase() || '7BIT';
    part.md5 = first(f, 'content-md5');
    const disp = first(f, 'content-disposition');
    if (disp !== null) {
      const d = parseValue(disp);
      part.disposition = { type: d.value.toLowerCase(), params: d.params };
    }
    const lang = first(f, 'content-language');
    part.language = lang ? lang.split(',').map((s) => s.trim()).filter(Boolean) : null;
    part.location = first(f, 'content-location');
    if (p === this.root || p.holder) {
      // The header of a message (top-level or embedded) feeds the search text.
      for (const name of ['subject', 'from', 'to', 'cc']) {
        const v = first(f, name);
        if (v) this.addSearch(decodeWords(v));
      }
    }
    if (p.holder) p.holder.part.envelope = buildEnvelope(f);

    const limited = p.depth >= this.opts.maxDepth || this.parts >= this.opts.maxParts;
    if (part.type === 'multipart') {
      if (!part.params.boundary) return; // no boundary: an opaque body (RFC 2046 §5.1.1 requires one)
      if (!nested) return;
      if (limited) this.truncated = true;
      else p.boundary = part.params.boundary;
    } else if (part.type === 'message' && (part.subtype === 'rfc822' || part.subtype === 'global')) {
      // RFC 2046 §5.2.1: only identity encodings; an encoded message stays opaque.
      if (!nested || !['7BIT', '8BIT', 'BINARY'].includes(part.encoding)) return;
      if (limited) {
        this.truncated = true;
        return;
      }
      this.parts++;
      const inner = this.open(part.path || '1', bodyStart, p.depth + 1, p, p);
      part.children = [inner.part];
    } else if (part.type === 'text' && (part.subtype === 'plain' || part.subtype === 'html')) {
      p.text = [];
    }
  }

  /** A delimiter line of the multipart at stack[level] starts at lineStart. */
  private delimiter(level: number, lineStart: number, isClose: boolean): void {
    // RFC 2046 §5.1.1: the CRLF preceding the delimiter line is part of the delimiter.
    const bodyEnd = lineStart - this.prevEol;
    while (this.stack.length - 1 > level) this.close(this.stack.pop()!, bodyEnd, true);
    const mp = this.stack[level]!;
    if (isClose) {
      mp.boundary = null; // epilogue follows
      return;
    }
    if (this.parts >= this.opts.maxParts) {
      // Limit: the rest of this multipart stays unsplit (it folds into its body/epilogue).
      this.truncated = true;
      mp.boundary = null;
      return;
    }
    this.parts++;
    const n = mp.part.children.length + 1;
    const child = this.open(mp.part.path ? `${mp.part.path}.${n}` : String(n), this.offset, mp.depth + 1, mp, null);
    mp.part.children.push(child.part);
  }

  /** Closes a part at bodyEnd; `atDelimiter`: bodyEnd is just before the CRLF of a delimiter. */
  private close(p: OpenPart, bodyEnd: number, atDelimiter: boolean): void {
    const part = p.part;
    // A header without a blank line (RFC 5322 §2.1 allows no body): the body is empty.
    if (p.phase === 'header') this.endHeader(p, Math.max(part.headerStart, bodyEnd), false);
    part.bodyEnd = Math.max(part.bodyStart, bodyEnd);
    part.size = part.bodyEnd - part.bodyStart;
    // lines = LF count in the body, plus one if it is non-empty and does not end in LF.
    if (part.size === 0) part.lines = 0;
    else if (atDelimiter) {
      // LFs before the delimiter line minus the one in the excluded CRLF; the body ends
      // in LF exactly when the line before the delimiter was empty.
      part.lines = this.lfAtLine - p.lfAtBody - 1 + (this.prevEmpty ? 0 : 1);
    } else {
      part.lines = this.lfCount - p.lfAtBody + (this.lastByte === 10 ? 0 : 1);
    }
    if (p.text) {
      const raw = Buffer.concat(p.text);
      const text = decodeText(raw.subarray(0, Math.min(raw.length, part.size)), part.encoding, part.params.charset);
      this.addSearch(part.subtype === 'html' ? htmlToText(text) : text);
      p.text = null;
    }
  }

  private addSearch(s: string): void {
    const room = this.opts.maxSearchText - this.searchLen;
    if (room <= 0 || !s) return;
    const piece = this.search.length ? '\n' + s : s;
    this.search.push(piece.slice(0, room));
    this.searchLen += Math.min(room, piece.length);
  }

  private finish(): void {
    const total = this.offset;
    while (this.stack.length) this.close(this.stack.pop()!, total, false);
    const fields = this.root.fields;
    const dateRaw = first(fields, 'date');
    // Date.parse understands RFC 5322 dates; a trailing comment such as "(UTC)" confuses it.
    const date = dateRaw ? Date.parse(dateRaw.replace(/\([^()]*\)/g, ' ').trim()) : NaN;
    this.resolveDone({
      size: total,
      envelope: buildEnvelope(fields),
      root: this.root.part,
      subject: decodeWords(first(fields, 'subject') ?? ''),
      from: displayFrom(fields),
      date: Number.isFinite(date) ? date : null,
      messageId: first(fields, 'message-id'),
      receivedCount: fields.filter((f) => f.name === 'received').length,
      searchText: this.search.join(''),
      truncated: this.truncated,
    });
  }
}

/** Indexes a whole message held in memory. */
export async function indexBuffer(buf: Buffer, opts?: IndexerOptions): Promise<MessageIndex> {
  const ix = new MimeIndexer(opts);
  ix.end(buf);
  return ix.result();
}
