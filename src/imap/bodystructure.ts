import type { MimePart } from '../mime/types.ts';
import { EMPTY_ENVELOPE, formatEnvelope, imapNString, imapString, type ImapStringOptions } from './envelope.ts';

/**
 * FETCH BODY and BODYSTRUCTURE (RFC 9051 §7.5.2 and the "body" grammar in §9), shaped
 * like Dovecot 2.3's lib-imap/imap-bodystructure.c output:
 *
 * - media types are sent as the index holds them (lower case: the indexer folds them;
 *   Dovecot sends the header's own case, so the common lower-case header compares equal;
 *   clients must compare these case-insensitively anyway, RFC 2045 §5.1);
 * - the transfer encoding is sent in lower case, "7bit" when absent or not a valid
 *   token (Dovecot: "Content-Transfer-Encoding: ?invalid" gives "7bit");
 * - text/* without a charset gets ("charset" "us-ascii") appended (RFC 2045 §5.2;
 *   Dovecot params_write(default_charset));
 * - empty parameter lists are NIL, extension data in the RFC order;
 * - a multipart without any part (boundary never found, no boundary parameter) is
 *   written with a single empty text/plain part, as Dovecot does, since the grammar
 *   requires at least one body;
 * - a message/rfc822 part the indexer did not open (non-identity encoding, limits)
 *   keeps its media type with an all-NIL envelope and an empty text/plain body, so
 *   the "body-type-msg" grammar stays intact.
 */

export interface BodyStructureOptions {
  /** true: BODYSTRUCTURE (with extension data); false: BODY. */
  extended: boolean;
  /** UTF-8 allowed in quoted strings (IMAP4rev2 / UTF8=ACCEPT). */
  utf8: boolean;
}

const EMPTY_BODY = '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)';
const EMPTY_BODYSTRUCTURE = '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)';

/** RFC 2045 §5.1 token characters. */
const TOKEN = /^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+/;

/** The transfer encoding as sent in BODYSTRUCTURE: its leading token in lower case, default "7bit". */
export function normalizeEncoding(encoding: string): string {
  const m = TOKEN.exec(encoding.trim());
  return m ? m[0].toLowerCase() : '7bit';
}

/**
 * Header values other than Content-Type/Disposition parameters reach the index as
 * latin1 "byte strings" (one char per byte); turn valid UTF-8 back into text
 * (RFC 6532). Invalid UTF-8 stays as the bytes read as latin1.
 */
function text(s: string | null): string | null {
  if (s === null || !/[\x80-\xff]/.test(s) || /[^\x00-\xff]/.test(s)) return s;
  const buf = Buffer.from(s, 'latin1');
  const dec = buf.toString('utf8');
  return Buffer.from(dec, 'utf8').equals(buf) ? dec : s;
}

/** RFC 2231 §4 ext-value with UTF-8 and no language: for non-ASCII values when UTF-8 is off. */
function rfc2231(value: string): string {
  return "utf-8''" + [...Buffer.from(value, 'utf8')].map((b) => (b > 0x20 && b < 0x7f && !/[*'%()<>@,;:\\"/[\]?=]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : '%' + b.toString(16).toUpperCase().padStart(2, '0'))).join('');
}

/**
 * body-fld-param: ("name" "value" …) / NIL. Values are decoded by the indexer; a
 * non-ASCII value is re-encoded per RFC 2231 ("name*" "utf-8''…", which is also the
 * form Dovecot sends for extended parameters) unless UTF-8 is enabled.
 */
function params(p: Record<string, string>, defaultCharset: boolean, opts: ImapStringOptions): string {
  const out: string[] = [];
  let charset = false;
  for (const [k, v] of Object.entries(p)) {
    if (k === 'charset') charset = true;
    if (!opts.utf8 && /[^\x00-\x7f]/.test(v)) out.push(imapString(k + '*', opts), imapString(rfc2231(v), opts));
    else out.push(imapString(k, opts), imapString(v, opts));
  }
  if (defaultCharset && !charset) out.push('"charset"', '"us-ascii"');
  return out.length ? '(' + out.join(' ') + ')' : 'NIL';
}

/** disposition SP language SP location (shared by single parts and multiparts). */
function common(part: MimePart, opts: ImapStringOptions): string {
  const d = part.disposition;
  const disp = d ? `(${imapString(d.type, opts)} ${params(d.params, false, opts)})` : 'NIL';
  const lang = part.language && part.language.length ? '(' + part.language.map((l) => imapString(text(l)!, opts)).join(' ') + ')' : 'NIL';
  return `${disp} ${lang} ${imapNString(text(part.location), opts)}`;
}

function isMessage(part: MimePart): boolean {
  return part.type === 'message' && (part.subtype === 'rfc822' || part.subtype === 'global');
}

function body(part: MimePart, opts: BodyStructureOptions): string {
  if (part.type === 'multipart') {
    const kids = part.children.length ? part.children.map((c) => '(' + body(c, opts) + ')').join('') : opts.extended ? EMPTY_BODYSTRUCTURE : EMPTY_BODY;
    let s = `${kids} ${imapString(part.subtype, opts)}`;
    if (opts.extended) s += ` ${params(part.params, false, opts)} ${common(part, opts)}`;
    return s;
  }
  const isText = part.type === 'text';
  let s =
    `${imapString(part.type, opts)} ${imapString(part.subtype, opts)} ${params(part.params, isText, opts)}` +
    ` ${imapNString(text(part.id), opts)} ${imapNString(text(part.description), opts)}` +
    ` ${imapString(normalizeEncoding(part.encoding), opts)} ${part.size}`;
  if (isText) s += ` ${part.lines}`;
  else if (isMessage(part)) {
    const inner = part.children[0];
    if (inner) s += ` ${part.envelope ? formatEnvelope(part.envelope, opts) : EMPTY_ENVELOPE} (${body(inner, opts)}) ${part.lines}`;
    else s += ` ${EMPTY_ENVELOPE} ${opts.extended ? EMPTY_BODYSTRUCTURE : EMPTY_BODY} ${part.lines}`;
  }
  if (opts.extended) s += ` ${imapNString(text(part.md5), opts)} ${common(part, opts)}`;
  return s;
}

/**
 * The parenthesised BODY (extended=false) or BODYSTRUCTURE (extended=true) of a part,
 * normally MessageIndex.root: e.g. `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 1)`.
 * The result may contain literals ({n}CRLF…); write it as UTF-8.
 */
export function formatBodyStructure(part: MimePart, opts: BodyStructureOptions): string {
  return '(' + body(part, opts) + ')';
}
