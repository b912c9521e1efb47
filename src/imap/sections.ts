import type { MessageIndex, MimePart } from '../mime/types.ts';

/**
 * FETCH BODY[section]<partial>, BINARY[section] and BINARY.SIZE[section]:
 * RFC 9051 §6.4.5 and §7.5.2, RFC 3516.
 *
 * Part lookup follows Dovecot 2.3 (lib-imap-storage/imap-msgpart.c):
 * - a part number that does not exist gives an empty string, not an error;
 * - in a non-multipart part only number 1 exists, and the path may continue after it
 *   only through a message/rfc822 part;
 * - HEADER, HEADER.FIELDS[.NOT] and TEXT after a part number apply to the message
 *   inside a message/rfc822 part; on any other part they give an empty string;
 * - MIME gives the part's own header block (for part 1 of a single-part message that
 *   is the message header, as Dovecot does).
 */

export type SectionText = 'HEADER' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT' | 'TEXT' | 'MIME';

export interface Section {
  /** Part numbers, [] for the whole message. */
  part: number[];
  /** null: the whole part (BODY[] or BODY[1.2]). */
  text: SectionText | null;
  /** Field names of HEADER.FIELDS[.NOT], as the client sent them. */
  fields: string[];
}

export interface Partial {
  origin: number;
  /** null: to the end (only used internally; the grammar always has a count). */
  count: number | null;
}

/** Syntax error in a section spec: answer BAD (RFC 9051 §7.1.5). */
export class SectionSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SectionSyntaxError';
  }
}

/** Reads bytes [start, end) of the stored blob. */
export type ReadRange = (start: number, end: number) => Promise<Buffer> | Buffer;

const ATOM_CHAR = /[^(){ \x00-\x1f\x7f%*"\\\]]/;

function parseHeaderList(s: string): string[] {
  // header-list = "(" header-fld-name *(SP header-fld-name) ")"; header-fld-name = astring
  if (!s.startsWith('(') || !s.endsWith(')')) throw new SectionSyntaxError('header list expected');
  const body = s.slice(1, -1);
  const out: string[] = [];
  let i = 0;
  while (i < body.length) {
    if (out.length) {
      if (body[i] !== ' ') throw new SectionSyntaxError('SP expected in header list');
      i++;
    }
    if (body[i] === '"') {
      let v = '';
      i++;
      for (;;) {
        if (i >= body.length) throw new SectionSyntaxError('unterminated quoted string');
        const c = body[i++]!;
        if (c === '"') break;
        if (c === '\\') {
          const n = body[i++];
          if (n !== '"' && n !== '\\') throw new SectionSyntaxError('bad escape');
          v += n;
        } else v += c;
      }
      out.push(v);
    } else {
      let j = i;
      while (j < body.length && (ATOM_CHAR.test(body[j]!) || body[j] === ']')) j++;
      if (j === i) throw new SectionSyntaxError('header field name expected');
      out.push(body.slice(i, j));
      i = j;
    }
  }
  if (!out.length) throw new SectionSyntaxError('empty header list');
  // A field name is 1*ftext (RFC 5322 §3.6.8): printable ASCII except ":".
  for (const f of out) if (!/^[!-9;-~]+$/.test(f)) throw new SectionSyntaxError(`invalid header field name ${JSON.stringify(f)}`);
  return out;
}

/**
 * Parses the text between the brackets of BODY[…] (RFC 9051 §9 section-spec):
 * "", "1.2", "HEADER", "TEXT", "1.MIME", "HEADER.FIELDS (From To)",
 * "1.2.HEADER.FIELDS.NOT (Received)". Keywords are case-insensitive.
 */
export function parseSection(spec: string): Section {
  const part: number[] = [];
  let rest = spec;
  for (;;) {
    const m = /^([0-9]+)(\.|$)/.exec(rest);
    if (!m) break;
    if (!/^[1-9][0-9]*$/.test(m[1]!)) throw new SectionSyntaxError('part number must be a non-zero number');
    const n = Number(m[1]);
    if (!Number.isSafeInteger(n) || n > 0xffffffff) throw new SectionSyntaxError('part number too large');
    part.push(n);
    rest = rest.slice(m[0].length);
    if (m[2] === '') return { part, text: null, fields: [] };
    if (rest === '') throw new SectionSyntaxError('section ends with "."');
  }
  if (rest === '') return { part, text: null, fields: [] };
  const up = rest.toUpperCase();
  if (up === 'HEADER' || up === 'TEXT') return { part, text: up, fields: [] };
  if (up === 'MIME') {
    if (!part.length) throw new SectionSyntaxError('MIME needs a part number');
    return { part, text: 'MIME', fields: [] };
  }
  const f = /^HEADER\.FIELDS(\.NOT)? /.exec(up);
  if (f) return { part, text: f[1] ? 'HEADER.FIELDS.NOT' : 'HEADER.FIELDS', fields: parseHeaderList(rest.slice(f[0].length)) };
  throw new SectionSyntaxError(`unknown section ${JSON.stringify(spec)}`);
}

/** Canonical section text for the FETCH response, e.g. `1.2.HEADER.FIELDS (FROM TO)`. */
export function formatSection(s: Section): string {
  const parts = s.part.join('.');
  if (s.text === null) return parts;
  let t: string = s.text;
  if (s.text === 'HEADER.FIELDS' || s.text === 'HEADER.FIELDS.NOT') {
    t += ' (' + s.fields.map((f) => (/^[!#$&'+-~]+$/.test(f) && !/[%*\]{}]/.test(f) ? f.toUpperCase() : '"' + f.toUpperCase().replace(/["\\]/g, '\\$&') + '"')).join(' ') + ')';
  }
  return parts ? `${parts}.${t}` : t;
}

/** Parses "<origin.count>" (RFC 9051 §6.4.5 partial; count is a nz-number). */
export function parsePartial(s: string): Partial {
  const m = /^<([0-9]+)\.([0-9]+)>$/.exec(s);
  if (!m || /^0[0-9]/.test(m[1]!) || !/^[1-9]/.test(m[2]!)) throw new SectionSyntaxError(`invalid partial ${JSON.stringify(s)}`);
  return { origin: Number(m[1]), count: Number(m[2]) };
}

/** Applies <origin.count> to extracted data: past the end gives an empty string. */
export function applyPartial(data: Buffer, partial: Partial | null | undefined): Buffer {
  if (!partial) return data;
  if (partial.origin >= data.length) return Buffer.alloc(0);
  const end = partial.count === null ? data.length : Math.min(data.length, partial.origin + partial.count);
  return data.subarray(partial.origin, end);
}

function isMessage(p: MimePart): boolean {
  return p.type === 'message' && (p.subtype === 'rfc822' || p.subtype === 'global') && p.children.length === 1;
}

/**
 * The part a section number names (Dovecot imap_msgpart_find): [] is the root;
 * null when it does not exist.
 */
export function findPart(root: MimePart, nums: number[]): MimePart | null {
  let part: MimePart | null = root;
  for (let i = 0; i < nums.length && part; i++) {
    const num = nums[i]!;
    const more = i + 1 < nums.length;
    if (part.type === 'multipart') {
      part = part.children[num - 1] ?? null;
    } else if (num !== 1 || (more && !isMessage(part))) {
      part = null;
    }
    // Continuing into a message/rfc822: the next number counts inside the embedded message.
    if (part && more && isMessage(part)) part = part.children[0]!;
  }
  return part;
}

/** What a section selects: a byte range of the blob, a filtered header block, or nothing. */
export type SectionTarget =
  | { kind: 'empty' }
  | { kind: 'range'; start: number; end: number }
  | { kind: 'fields'; start: number; end: number; fields: string[]; not: boolean };

/** Locates a section without reading anything (the caller can stream a 'range'). */
export function locateSection(index: MessageIndex, s: Section): SectionTarget {
  const root = index.root;
  let msg: MimePart; // the message whose HEADER/TEXT is wanted
  if (s.part.length === 0) {
    if (s.text === null) return { kind: 'range', start: 0, end: index.size };
    msg = root;
  } else {
    const part = findPart(root, s.part);
    if (!part) return { kind: 'empty' };
    if (s.text === null) return { kind: 'range', start: part.bodyStart, end: part.bodyEnd };
    if (s.text === 'MIME') return { kind: 'range', start: part.headerStart, end: part.bodyStart };
    if (!isMessage(part)) return { kind: 'empty' };
    msg = part.children[0]!;
  }
  switch (s.text) {
    case 'HEADER':
      return { kind: 'range', start: msg.headerStart, end: msg.bodyStart };
    case 'TEXT':
      // The root's body runs to the end of the blob (anything after a close delimiter included).
      return { kind: 'range', start: msg.bodyStart, end: msg === root ? index.size : msg.bodyEnd };
    case 'HEADER.FIELDS':
    case 'HEADER.FIELDS.NOT':
      return { kind: 'fields', start: msg.headerStart, end: msg.bodyStart, fields: s.fields, not: s.text === 'HEADER.FIELDS.NOT' };
    default:
      throw new SectionSyntaxError('MIME needs a part number');
  }
}

/** Is the section the top-level message's header (HEADER, HEADER.FIELDS[.NOT]): bytes [0, end of header)? */
export function isRootHeader(s: Section): boolean {
  return s.part.length === 0 && (s.text === 'HEADER' || s.text === 'HEADER.FIELDS' || s.text === 'HEADER.FIELDS.NOT');
}

/**
 * Where the top-level header ends (the body starts) in the first bytes of a message,
 * without its MIME index, so that a header-only FETCH of many messages needs
 * neither the index nor the body. The rule is the indexer's (mime/indexer.ts,
 * RFC 5322 §2.1): the header block runs through the first empty line — "\r\n" or a
 * bare "\n", the first line included; a message without one is all header.
 * `complete`: `head` is the whole message. Returns -1 when `head` ends before the
 * answer is known.
 */
export function headerEnd(head: Buffer, complete: boolean): number {
  if (head[0] === 10) return 1;
  if (head[0] === 13 && head[1] === 10) return 2;
  // A blank line after the first: LF LF or LF CR LF, whichever comes first. LF LF
  // found at i has i + 1 < length, so no LF CR LF cut off at the end of `head` (which
  // would start at length - 2) can come before it.
  const crlf = head.indexOf(LF_CRLF);
  const lf = (crlf < 0 ? head : head.subarray(0, crlf + 1)).indexOf(LF_LF);
  if (lf >= 0) return lf + 2;
  if (crlf >= 0) return crlf + 3;
  return complete ? head.length : -1;
}

const LF_LF = Buffer.from('\n\n');
const LF_CRLF = Buffer.from('\n\r\n');

/** Byte → its lower case as JavaScript's toLowerCase gives it for the latin1 character (every result is latin1). */
const LOWER = Uint8Array.from({ length: 256 }, (_, c) => String.fromCharCode(c).toLowerCase().charCodeAt(0));

/** The field names of a HEADER.FIELDS list as lower-case latin1 bytes, kept per list (one FETCH filters thousands of headers). */
const wantedCache = new WeakMap<string[], Buffer[]>();

function wantedNames(names: string[]): Buffer[] {
  let want = wantedCache.get(names);
  if (!want) {
    // A name with a character beyond latin1 can equal no field name read as latin1.
    want = names.map((n) => n.toLowerCase()).filter((n) => !/[^\x00-\xff]/.test(n)).map((n) => Buffer.from(n, 'latin1'));
    wantedCache.set(names, want);
  }
  return want;
}

/** Does block[start, end) equal, case-insensitively, one of the wanted (lower-case) names? */
function isWanted(block: Buffer, start: number, end: number, want: Buffer[]): boolean {
  const len = end - start;
  for (const w of want) {
    if (w.length !== len) continue;
    let i = 0;
    while (i < len && LOWER[block[start + i]!] === w[i]) i++;
    if (i === len) return true;
  }
  return false;
}

/**
 * Keeps (or, with not, drops) the header fields whose names match, case-insensitively,
 * with their folded continuation lines exactly as stored, then the blank line that ends
 * a header (RFC 9051 §6.4.5: "all subsets of the header return the blank line").
 * A field name is what precedes the line's first ":", without trailing blanks.
 */
export function filterHeader(block: Buffer, names: string[], not: boolean): Buffer {
  const want = wantedNames(names);
  // Kept byte ranges [start, end) of block; -1 as start: a CRLF added after a last field cut off without one.
  const ranges: number[] = [];
  let total = 2;
  let keep = false;
  let pos = 0;
  while (pos < block.length) {
    const nl = block.indexOf(10, pos);
    const end = nl < 0 ? block.length : nl + 1;
    const start = pos;
    pos = end;
    const first = block[start];
    if (first === 13 || first === 10) break; // the blank line: end of the header
    if (first !== 32 && first !== 9) {
      let colon = start;
      while (colon < end && block[colon] !== 58) colon++;
      let nameEnd = colon;
      while (nameEnd > start && (block[nameEnd - 1] === 32 || block[nameEnd - 1] === 9)) nameEnd--;
      keep = (colon < end && isWanted(block, start, nameEnd, want)) !== not;
    }
    if (!keep) continue;
    if (ranges.length && ranges[ranges.length - 1] === start) ranges[ranges.length - 1] = end;
    else ranges.push(start, end);
    total += end - start;
    if (nl < 0) {
      ranges.push(-1, -1);
      total += 2;
    }
  }
  const out = Buffer.allocUnsafe(total);
  let o = 0;
  for (let i = 0; i < ranges.length; i += 2) {
    if (ranges[i] === -1) o += CRLF.copy(out, o);
    else o += block.copy(out, o, ranges[i], ranges[i + 1]);
  }
  CRLF.copy(out, o);
  return out;
}

const CRLF = Buffer.from('\r\n');

/**
 * BODY[section]<partial>: the exact bytes to send (RFC 9051 §6.4.5), partial applied
 * after extraction. Throws SectionSyntaxError for a MIME section without a part.
 */
export async function fetchSection(index: MessageIndex, section: Section | string, read: ReadRange, partial?: Partial | null): Promise<Buffer> {
  const s = typeof section === 'string' ? parseSection(section) : section;
  const t = locateSection(index, s);
  let data: Buffer;
  if (t.kind === 'empty') data = Buffer.alloc(0);
  else if (t.kind === 'range') data = t.end > t.start ? await read(t.start, t.end) : Buffer.alloc(0);
  else data = filterHeader(t.end > t.start ? await read(t.start, t.end) : Buffer.alloc(0), t.fields, t.not);
  return applyPartial(data, partial);
}

// ---- BINARY (RFC 3516) ----------------------------------------------------------

export type BinaryResult = { ok: true; data: Buffer; /** holds NUL: send as literal8 (RFC 3516 §4.2) */ hasNul: boolean } | { ok: false; code: 'UNKNOWN-CTE' };

/** base64 body, lenient like every mail client: characters outside the alphabet are skipped. */
export function decodeBase64(buf: Buffer): Buffer {
  return Buffer.from(buf.toString('latin1').replace(/[^A-Za-z0-9+/]/g, ''), 'base64');
}

function hex(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * quoted-printable (RFC 2045 §6.7): "=XX" decoded, "=" line end is a soft break,
 * trailing whitespace on a line is transport padding and dropped, a malformed "="
 * sequence is kept as it is (rule 6.7 "robust" decoding).
 */
export function decodeQuotedPrintable(buf: Buffer): Buffer {
  const out = Buffer.allocUnsafe(buf.length);
  let o = 0;
  let lineStart = 0;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i]!;
    if (c === 10 || (c === 13 && buf[i + 1] === 10)) {
      // drop transport padding before the line end
      while (o > lineStart && (out[o - 1] === 32 || out[o - 1] === 9)) o--;
      if (c === 13) out[o++] = buf[i++]!;
      out[o++] = 10;
      lineStart = o;
      continue;
    }
    if (c === 61) {
      // soft line break: "=" [WSP…] CRLF
      let j = i + 1;
      while (buf[j] === 32 || buf[j] === 9) j++;
      if (buf[j] === 10 || (buf[j] === 13 && buf[j + 1] === 10)) {
        i = buf[j] === 13 ? j + 1 : j;
        lineStart = o;
        continue;
      }
      if (j === buf.length) break; // "=" at the very end: soft break
      const h = hex(buf[i + 1] ?? -1);
      const l = hex(buf[i + 2] ?? -1);
      if (h >= 0 && l >= 0) {
        out[o++] = h * 16 + l;
        i += 2;
        continue;
      }
    }
    out[o++] = c;
  }
  while (o > lineStart && (out[o - 1] === 32 || out[o - 1] === 9)) o--;
  return out.subarray(0, o);
}

/** Decodes a body by its Content-Transfer-Encoding; null for an encoding we do not know. */
export function decodeTransfer(body: Buffer, encoding: string): Buffer | null {
  const m = /^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+/.exec(encoding.trim());
  const enc = m ? m[0].toLowerCase() : '7bit'; // no valid token: the default (as BODYSTRUCTURE shows it)
  switch (enc) {
    case '7bit':
    case '8bit':
    case 'binary':
      return body;
    case 'base64':
      return decodeBase64(body);
    case 'quoted-printable':
      return decodeQuotedPrintable(body);
    default:
      return null;
  }
}

/**
 * BINARY[section-part]<partial> (RFC 3516 §4.2): the part's body with its transfer
 * encoding removed. [] is the whole message: its header plus the decoded body when the
 * message is single-part; a multipart's or message's body is sent as it is (only
 * identity encodings are valid there, RFC 2045 §6.4). An unknown encoding gives
 * { ok: false, code: 'UNKNOWN-CTE' } for "NO [UNKNOWN-CTE]" (RFC 3516 §4.3); a part
 * number that does not exist gives an empty string, like BODY[].
 */
export async function fetchBinary(index: MessageIndex, part: number[], read: ReadRange, partial?: Partial | null): Promise<BinaryResult> {
  const t = binaryTarget(index, part);
  if (!t) return { ok: true, data: Buffer.alloc(0), hasNul: false };
  const raw = t.bodyEnd > t.bodyStart ? await read(t.bodyStart, t.bodyEnd) : Buffer.alloc(0);
  const header = t.headerEnd === null ? null : t.headerEnd > 0 ? await read(0, t.headerEnd) : Buffer.alloc(0);
  return decodeBinary(t, raw, header, partial);
}

/** fetchBinary over bytes already in memory (FETCH of many messages answers without an await per message). */
export function fetchBinarySync(index: MessageIndex, part: number[], read: (start: number, end: number) => Buffer, partial?: Partial | null): BinaryResult {
  const t = binaryTarget(index, part);
  if (!t) return { ok: true, data: Buffer.alloc(0), hasNul: false };
  const raw = t.bodyEnd > t.bodyStart ? read(t.bodyStart, t.bodyEnd) : Buffer.alloc(0);
  const header = t.headerEnd === null ? null : t.headerEnd > 0 ? read(0, t.headerEnd) : Buffer.alloc(0);
  return decodeBinary(t, raw, header, partial);
}

interface BinaryTarget {
  part: MimePart;
  bodyStart: number;
  bodyEnd: number;
  /** BINARY[] (the whole message): the header [0, headerEnd) goes before the decoded body; else null. */
  headerEnd: number | null;
}

/** The bytes BINARY[part] decodes; null when the part does not exist (an empty string, like BODY[]). */
function binaryTarget(index: MessageIndex, part: number[]): BinaryTarget | null {
  const root = index.root;
  const p = part.length ? findPart(root, part) : root;
  if (!p) return null;
  return { part: p, bodyStart: p.bodyStart, bodyEnd: p === root ? index.size : p.bodyEnd, headerEnd: part.length ? null : p.bodyStart };
}

function decodeBinary(t: BinaryTarget, raw: Buffer, header: Buffer | null, partial: Partial | null | undefined): BinaryResult {
  const p = t.part;
  let data: Buffer | null;
  if (p.type === 'multipart' || (p.type === 'message' && p.children.length === 1)) data = raw;
  else data = decodeTransfer(raw, p.encoding);
  if (data === null) return { ok: false, code: 'UNKNOWN-CTE' };
  if (header) data = Buffer.concat([header, data]);
  const out = applyPartial(data, partial);
  return { ok: true, data: out, hasNul: out.includes(0) };
}

/** BINARY.SIZE[section-part] (RFC 3516 §4.2): the size of the decoded part, before any partial. */
export async function binarySize(index: MessageIndex, part: number[], read: ReadRange): Promise<{ ok: true; size: number } | { ok: false; code: 'UNKNOWN-CTE' }> {
  const r = await fetchBinary(index, part, read);
  return r.ok ? { ok: true, size: r.data.length } : r;
}
