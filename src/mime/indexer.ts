import { Writable } from 'node:stream';
import type { MessageIndex, MimePart } from './types.ts';
import { buildEnvelope, decodeWords, displayFrom, first, parseHeaderBlock, parseValue, type HeaderField } from './headers.ts';
import { decodeText, htmlToText } from './text.ts';

export interface IndexerOptions {
  maxDepth?: number;
  maxParts?: number;
  maxSearchText?: number;
}

/** Header bytes kept per part; the rest of an absurd header block is not parsed. */
const MAX_HEADER_BYTES = 256 * 1024;
/** Bytes of a line kept to recognise a boundary delimiter (RFC 2046 §5.1.1: boundary ≤ 70). */
const LINE_PREFIX = 128;

interface OpenPart {
  part: MimePart;
  /** 'header' while reading its header block, then 'body'. */
  phase: 'header' | 'body';
  header: string[];
  headerBytes: number;
  fields: HeaderField[];
  /** For multipart: the boundary; null when closed (epilogue) or not multipart. */
  boundary: string | null;
  /** Global line counter when the body started. */
  lineAtBody: number;
  /** Collected raw body for text parts (search), capped. */
  text: Buffer[] | null;
  textBytes: number;
  depth: number;
}

/**
 * Streaming MIME indexer (RFC 2045, 2046, 5322): one pass over the raw bytes,
 * bounded memory (headers, a capped amount of text for search, and counters).
 *
 * Section numbering follows IMAP (RFC 9051 §6.4.5): the root is ""; the parts of a
 * multipart are "1", "2", …; a message/rfc822 part keeps its embedded message's
 * root as children[0] — when that root is multipart its parts are numbered
 * "N.1", "N.2" (the root itself takes no number), otherwise the embedded body is "N.1".
 *
 * Offsets: a part's header block is [headerStart, bodyStart) including the blank
 * line; its body is [bodyStart, bodyEnd). In a multipart, the CRLF before a
 * delimiter line belongs to the delimiter (RFC 2046 §5.1.1), not to the part.
 */
export class MimeIndexer extends Writable {
  private opts: Required<IndexerOptions>;
  private offset = 0;
  private lineNo = 0;
  /** The current line: start offset, first bytes (for boundary checks), whether it is complete. */
  private lineStart = 0;
  private linePrefix: Buffer[] = [];
  private linePrefixLen = 0;
  private prevEol = 2;
  private lastByteWasCr = false;
  private stack: OpenPart[] = [];
  private root: OpenPart;
  private parts = 1;
  private truncated = false;
  private searchParts: string[] = [];
  private searchLen = 0;
  private done: Promise<MessageIndex>;
  private resolveDone!: (r: MessageIndex) => void;
  private rejectDone!: (e: unknown) => void;

  constructor(opts: IndexerOptions = {}) {
    super();
    this.opts = { maxDepth: opts.maxDepth ?? 100, maxParts: opts.maxParts ?? 10_000, maxSearchText: opts.maxSearchText ?? 256 * 1024 };
    this.root = this.open('', 0, 0);
    this.done = new Promise((res, rej) => {
      this.resolveDone = res;
      this.rejectDone = rej;
    });
    this.done.catch(() => undefined);
  }

  result(): Promise<MessageIndex> {
    return this.done;
  }

  private open(path: string, headerStart: number, depth: number): OpenPart {
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
    const p: OpenPart = { part, phase: 'header', header: [], headerBytes: 0, fields: [], boundary: null, lineAtBody: 0, text: null, textBytes: 0, depth };
    this.stack.push(p);
    return p;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      let pos = 0;
      while (pos < chunk.length) {
        const nl = chunk.indexOf(10, pos);
        const end = nl < 0 ? chunk.length : nl + 1;
        this.feed(chunk.subarray(pos, end), nl >= 0);
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
    this.rejectDone(err ?? new Error('indexer destroyed'));
    cb(err);
  }

  /** Bytes of one line (or a piece of it); `complete` when it ends with LF. */
  private feed(piece: Buffer, complete: boolean): void {
    const top = this.stack[this.stack.length - 1]!;
    if (top.phase === 'header') {
      if (top.headerBytes < MAX_HEADER_BYTES) top.header.push(piece.toString('latin1'));
      top.headerBytes += piece.length;
    } else if (top.text && top.textBytes < this.opts.maxSearchText * 4) {
      top.text.push(piece);
      top.textBytes += piece.length;
    }
    if (this.linePrefixLen < LINE_PREFIX) {
      this.linePrefix.push(piece.subarray(0, LINE_PREFIX - this.linePrefixLen));
      this.linePrefixLen += Math.min(piece.length, LINE_PREFIX - this.linePrefixLen);
    }
    this.offset += piece.length;
    if (complete) {
      const crBeforeLf = piece.length >= 2 ? piece[piece.length - 2] === 13 : this.lastByteWasCr;
      this.endLine(crBeforeLf ? 2 : 1);
    }
    this.lastByteWasCr = piece[piece.length - 1] === 13;
  }

  /** eol: length of the line terminator (2 CRLF, 1 bare LF, 0 for a last line without one). */
  private endLine(eol: number): void {
    const complete = eol > 0;
    const start = this.lineStart;
    const prefix = Buffer.concat(this.linePrefix, this.linePrefixLen).toString('latin1');
    this.linePrefix = [];
    this.linePrefixLen = 0;
    this.lineStart = this.offset;
    const content = complete ? prefix.replace(/\r?\n$/, '') : prefix;
    const top = this.stack[this.stack.length - 1]!;
    if (top.phase === 'header') {
      if (content === '' && complete) this.endHeader(top, this.offset);
      this.lineNo++;
      this.prevEol = eol;
      return;
    }
    // Body line: a delimiter of any enclosing multipart? (innermost first)
    if (content.startsWith('--')) {
      for (let i = this.stack.length - 1; i >= 0; i--) {
        const b = this.stack[i]!.boundary;
        if (b === null || !content.startsWith('--' + b)) continue;
        const rest = content.slice(2 + b.length);
        const isClose = rest.startsWith('--');
        if (!/^(--)?[ \t]*$/.test(rest) && rest.length < LINE_PREFIX - b.length - 4) continue;
        this.delimiter(i, start, isClose);
        this.lineNo++;
        this.prevEol = eol;
        return;
      }
    }
    this.lineNo++;
    this.prevEol = eol;
  }

  /** parent: the enclosing part; nested: false when closing (no embedded part may open then). */
  private endHeader(p: OpenPart, bodyStart: number, parent: OpenPart | null = this.stack.length >= 2 ? this.stack[this.stack.length - 2]! : null, nested = true): void {
    p.phase = 'body';
    p.part.bodyStart = bodyStart;
    p.lineAtBody = this.lineNo + 1;
    p.fields = parseHeaderBlock(p.header.join(''));
    p.header = [];
    const f = p.fields;
    const ct = first(f, 'content-type');
    // RFC 2046 §5.1.5: parts of multipart/digest default to message/rfc822.
    const defaultType = parent && parent.part.type === 'multipart' && parent.part.subtype === 'digest' ? 'message/rfc822' : 'text/plain';
    const parsed = parseValue(ct ?? defaultType);
    let [type, subtype] = parsed.value.toLowerCase().split('/');
    if (!type || !subtype) {
      [type, subtype] = ['text', 'plain'];
      parsed.params = ct ? { charset: 'us-ascii' } : parsed.params;
    }
    const part = p.part;
    part.type = type.trim();
    part.subtype = subtype.trim();
    part.params = parsed.params;
    if (part.type === 'text' && !part.params.charset && !ct) part.params.charset = 'us-ascii';
    part.id = first(f, 'content-id');
    part.description = first(f, 'content-description');
    part.encoding = (first(f, 'content-transfer-encoding') ?? '7BIT').trim() || '7BIT';
    part.md5 = first(f, 'content-md5');
    const disp = first(f, 'content-disposition');
    if (disp !== null) {
      const d = parseValue(disp);
      part.disposition = { type: d.value.toLowerCase(), params: d.params };
    }
    const lang = first(f, 'content-language');
    part.language = lang ? lang.split(',').map((s) => s.trim()).filter(Boolean) : null;
    part.location = first(f, 'content-location');
    if (part.path === '' || this.isEmbeddedRoot(p)) {
      // headers of a message (root or message/rfc822 body) also feed the search text
      for (const name of ['subject', 'from', 'to', 'cc']) {
        const v = first(f, name);
        if (v) this.addSearch(decodeWords(v));
      }
    }
    const limited = !nested || p.depth >= this.opts.maxDepth || this.parts >= this.opts.maxParts;
    if (part.type === 'multipart' && part.params.boundary) {
      if (limited) this.truncated ||= nested;
      else p.boundary = part.params.boundary;
    } else if (part.type === 'message' && (part.subtype === 'rfc822' || part.subtype === 'global')) {
      if (limited) this.truncated ||= nested;
      else {
        this.parts++;
        this.open(part.path === '' ? '1' : part.path, bodyStart, p.depth + 1).part.path = `${part.path}#embedded`;
      }
    } else if (part.type === 'text' && (part.subtype === 'plain' || part.subtype === 'html')) {
      p.text = [];
    }
  }

  private isEmbeddedRoot(p: OpenPart): boolean {
    return p.part.path.endsWith('#embedded');
  }

  private delimiter(level: number, lineStart: number, isClose: boolean): void {
    // Close everything inside the multipart at `level`.
    const bodyEnd = Math.max(0, lineStart - this.prevEol);
    while (this.stack.length - 1 > level) this.close(this.stack.pop()!, bodyEnd);
    const mp = this.stack[level]!;
    if (isClose) {
      mp.boundary = null; // epilogue follows
      return;
    }
    if (this.parts >= this.opts.maxParts) {
      this.truncated = true;
      mp.boundary = null;
      return;
    }
    this.parts++;
    const n = mp.part.children.length + 1;
    const base = this.sectionBase(mp);
    const child = this.open(base ? `${base}.${n}` : String(n), this.offset, mp.depth + 1);
    mp.part.children.push(child.part);
  }

  /** The section prefix for children of a multipart (an embedded message's root takes its parent's number). */
  private sectionBase(p: OpenPart): string {
    const path = p.part.path;
    if (path.endsWith('#embedded')) return path.slice(0, -'#embedded'.length);
    return path;
  }

  private close(p: OpenPart, bodyEnd: number): void {
    const part = p.part;
    if (p.phase === 'header') {
      // No blank line: the whole thing was header (RFC 5322 allows no body).
      this.endHeader(p, bodyEnd, this.stack[this.stack.length - 1] ?? null, false);
    }
    part.bodyEnd = Math.max(part.bodyStart, bodyEnd);
    part.size = part.bodyEnd - part.bodyStart;
    // Called before the delimiter line is counted, or after the last line: the lines
    // of the body are [lineAtBody, lineNo).
    part.lines = part.size === 0 ? 0 : Math.max(0, this.lineNo - p.lineAtBody);
    if (p.text) {
      const raw = Buffer.concat(p.text).subarray(0, Math.max(0, part.size));
      const text = decodeText(raw, part.encoding, part.params.charset);
      this.addSearch(part.subtype === 'html' ? htmlToText(text) : text);
      p.text = null;
    }
    if (part.path.endsWith('#embedded')) {
      // The embedded message root belongs to the message/rfc822 part above it.
      const holder = this.stack[this.stack.length - 1]!;
      part.path = holder.part.path === '' ? '1' : holder.part.path;
      holder.part.children = [part];
      holder.part.envelope = buildEnvelope(p.fields);
      renumber(part, holder.part.path);
    }
  }

  private addSearch(s: string): void {
    if (this.searchLen >= this.opts.maxSearchText || !s) return;
    const piece = s.slice(0, this.opts.maxSearchText - this.searchLen);
    this.searchParts.push(piece);
    this.searchLen += piece.length + 1;
  }

  private finish(): void {
    const total = this.offset;
    while (this.stack.length) this.close(this.stack.pop()!, total);
    const fields = this.root.fields;
    const dateRaw = first(fields, 'date');
    const date = dateRaw ? Date.parse(dateRaw.replace(/\s*\([^)]*\)\s*$/, '')) : NaN;
    this.resolveDone({
      size: total,
      envelope: buildEnvelope(fields),
      root: this.root.part,
      subject: decodeWords(first(fields, 'subject') ?? ''),
      from: displayFrom(fields),
      date: Number.isFinite(date) ? date : null,
      messageId: first(fields, 'message-id'),
      receivedCount: fields.filter((f) => f.name === 'received').length,
      searchText: this.searchParts.join('\n'),
      truncated: this.truncated,
    });
  }
}

/**
 * Paths of an embedded message's parts: a multipart root's children are N.1, N.2…
 * (the root itself is addressed as N); a single-part root's body is N.1 is handled
 * by IMAP as N.1 = the root's body.
 */
function renumber(root: MimePart, base: string): void {
  root.path = base;
  root.children.forEach((c, i) => {
    const p = `${base}.${i + 1}`;
    if (c.type === 'message') {
      c.path = p;
      if (c.children[0]) renumber(c.children[0], p);
    } else renumber(c, p);
  });
}

export async function indexBuffer(buf: Buffer, opts?: IndexerOptions): Promise<MessageIndex> {
  const ix = new MimeIndexer(opts);
  ix.end(buf);
  return ix.result();
}
