import libmime from 'libmime';
import addressparser from 'nodemailer/lib/addressparser';
import type { Envelope, EnvelopeAddress } from './types.ts';

/** One header field: lower-case name, raw value (unfolded per RFC 5322 §2.2.3, not decoded). */
export interface HeaderField {
  name: string;
  value: string;
}

/**
 * Parses a raw header block (latin1 string of the bytes) into fields. Unfolding per
 * RFC 5322 §2.2.3: only the line break is removed, the folding whitespace stays.
 */
export function parseHeaderBlock(block: string): HeaderField[] {
  const out: HeaderField[] = [];
  let cur: HeaderField | null = null;
  for (const line of block.split(/\r?\n/)) {
    if (line === '') continue;
    if (line[0] === ' ' || line[0] === '\t') {
      if (cur) cur.value += line;
      continue;
    }
    const i = line.indexOf(':');
    if (i <= 0) {
      cur = null; // not a header field (RFC 5322 §3.6.8 allows only ftext names): ignored
      continue;
    }
    cur = { name: line.slice(0, i).trim().toLowerCase(), value: line.slice(i + 1) };
    out.push(cur);
  }
  for (const f of out) f.value = f.value.trim();
  return out;
}

export function first(fields: HeaderField[], name: string): string | null {
  const f = fields.find((x) => x.name === name);
  return f ? f.value : null;
}

/** Raw header bytes were read as latin1; turn them back into UTF-8 text (RFC 6532 headers). */
export function utf8(s: string): string {
  return /[\x80-\xff]/.test(s) ? Buffer.from(s, 'latin1').toString('utf8') : s;
}

export function decodeWords(s: string): string {
  try {
    return libmime.decodeWords(utf8(s));
  } catch {
    return utf8(s);
  }
}

export interface ParsedValue {
  value: string;
  params: Record<string, string>;
}

/** Content-Type / Content-Disposition value with RFC 2231 parameters decoded. */
export function parseValue(s: string): ParsedValue {
  try {
    const p = libmime.parseHeaderValue(utf8(s)) as { value: string; params: Record<string, string> };
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(p.params)) params[k.toLowerCase()] = String(v);
    return { value: p.value.trim(), params };
  } catch {
    return { value: s.split(';')[0]!.trim(), params: {} };
  }
}

interface ParsedAddress {
  name?: string;
  address?: string;
  group?: ParsedAddress[];
}

function toEnvelopeAddresses(list: ParsedAddress[]): EnvelopeAddress[] {
  const out: EnvelopeAddress[] = [];
  for (const a of list) {
    if (a.group) {
      // RFC 9051 §7.5.2: group start = (NIL NIL "name" NIL), group end = (NIL NIL NIL NIL)
      out.push({ name: null, adl: null, mailbox: a.name ?? '', host: null });
      out.push(...toEnvelopeAddresses(a.group));
      out.push({ name: null, adl: null, mailbox: null, host: null });
      continue;
    }
    const addr = a.address ?? '';
    if (!addr && !a.name) continue;
    // A bare word ("From: foo") comes back as a name without address: it is the mailbox.
    // Without a domain the host is "" rather than NIL, since NIL host means group start.
    const at = addr.lastIndexOf('@');
    out.push({
      name: a.name && addr ? a.name : null,
      adl: null,
      mailbox: addr ? (at >= 0 ? addr.slice(0, at) : addr) : a.name!,
      host: at >= 0 ? addr.slice(at + 1) : '',
    });
  }
  return out;
}

export function parseAddressList(raw: string | null): EnvelopeAddress[] | null {
  if (raw === null) return null;
  try {
    const parsed = addressparser(utf8(raw), { flatten: false }) as unknown as ParsedAddress[];
    const list = toEnvelopeAddresses(parsed);
    return list.length ? list : null;
  } catch {
    return null;
  }
}

/** RFC 9051 §7.5.2 ENVELOPE from a header block. Sender and Reply-To default to From. */
export function buildEnvelope(fields: HeaderField[]): Envelope {
  const get = (n: string) => {
    const v = first(fields, n);
    return v === null ? null : utf8(v);
  };
  // parseAddressList decodes UTF-8 itself: give it the raw (latin1-read) value, or
  // "José" would be decoded twice into "Jos\uFFFD".
  const addresses = (n: string) => parseAddressList(first(fields, n));
  const from = addresses('from');
  return {
    date: get('date'),
    subject: get('subject'),
    from,
    sender: addresses('sender') ?? from,
    replyTo: addresses('reply-to') ?? from,
    to: addresses('to'),
    cc: addresses('cc'),
    bcc: addresses('bcc'),
    inReplyTo: get('in-reply-to'),
    messageId: get('message-id'),
  };
}

/** "Name <addr>" or "addr" for the first From address, decoded, for listings. */
export function displayFrom(fields: HeaderField[]): string {
  const raw = first(fields, 'from');
  if (raw === null) return '';
  try {
    const [a] = addressparser(utf8(raw), { flatten: true }) as unknown as ParsedAddress[];
    if (!a) return decodeWords(raw);
    const name = a.name ? decodeWords(a.name) : '';
    return name ? `${name} <${a.address ?? ''}>` : (a.address ?? '');
  } catch {
    return decodeWords(raw);
  }
}
