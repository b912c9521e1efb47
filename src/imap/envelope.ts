import type { Envelope, EnvelopeAddress } from '../mime/types.ts';

/**
 * IMAP string output shared by ENVELOPE and BODYSTRUCTURE (RFC 9051 §4.3, §9 "string").
 *
 * Results are JS strings; a literal's length counts the UTF-8 bytes of its text, so
 * the caller must write the whole response as UTF-8.
 */

export interface ImapStringOptions {
  /** IMAP4rev2 or UTF8=ACCEPT enabled (RFC 9051 §6.3.1, RFC 6855): UTF-8 allowed in quoted strings. */
  utf8: boolean;
}

/**
 * Dovecot (lib-imap/imap-quote.c) switches to a literal after 4 quoted-specials;
 * we do the same so our output compares byte for byte with Dovecot's.
 */
const QUOTED_MAX_ESCAPES = 4;

/** string = quoted / literal. Quoted unless it holds CR, LF, too many specials, or 8-bit without UTF-8. */
export function imapString(s: string, opts: ImapStringOptions): string {
  // NUL can be sent in neither form (RFC 9051 §4.3: literal is CHAR8 = %x01-ff).
  if (s.includes('\0')) s = s.replace(/\0/g, '');
  let escapes = 0;
  let literal = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) {
      if (++escapes > QUOTED_MAX_ESCAPES) literal = true;
    } else if (c === 0x0d || c === 0x0a) literal = true;
    else if (c >= 0x80 && !opts.utf8) literal = true;
    if (literal) break;
  }
  if (literal) return `{${Buffer.byteLength(s, 'utf8')}}\r\n${s}`;
  return '"' + s.replace(/["\\]/g, '\\$&') + '"';
}

/** nstring = string / NIL */
export function imapNString(s: string | null | undefined, opts: ImapStringOptions): string {
  return s === null || s === undefined ? 'NIL' : imapString(s, opts);
}

/**
 * Dovecot's imap_append_string_for_humans(), used for the subject and address display
 * names: CR and LF dropped, runs of SP/HTAB collapsed to one SP, leading and trailing
 * SP removed. (Dovecot then forces a literal when it changed anything; we quote when
 * the quoting rules allow, which clients read as the same value.)
 */
export function forHumans(s: string): string {
  return s.replace(/[\r\n]/g, '').replace(/[ \t]+/g, ' ').replace(/^ /, '').replace(/ $/, '');
}

function address(a: EnvelopeAddress, opts: ImapStringOptions): string {
  const name = a.name === null ? 'NIL' : imapString(forHumans(a.name), opts);
  return `(${name} ${imapNString(a.adl, opts)} ${imapNString(a.mailbox, opts)} ${imapNString(a.host, opts)})`;
}

/** RFC 9051 §7.5.2: "(" 1*address ")" / NIL. Groups are already flattened into start/end markers. */
function addressList(list: EnvelopeAddress[] | null, opts: ImapStringOptions): string {
  if (!list || list.length === 0) return 'NIL';
  return '(' + list.map((a) => address(a, opts)).join('') + ')';
}

/**
 * RFC 9051 §7.5.2 ENVELOPE, without the surrounding parentheses' keyword:
 * returns "(date subject from sender reply-to to cc bcc in-reply-to message-id)".
 *
 * Values are the raw header values (encoded-words are not decoded). Sender and
 * Reply-To default to From when absent or empty (RFC 9051 §7.5.2: the server fills
 * them in; Dovecot imap-envelope.c does the same with NVL(sender, from)). The subject
 * and display names get Dovecot's whitespace clean-up (forHumans); date, in-reply-to
 * and message-id are sent as they are.
 */
export function formatEnvelope(e: Envelope, opts: { utf8: boolean }): string {
  const from = e.from && e.from.length ? e.from : null;
  const sender = e.sender && e.sender.length ? e.sender : from;
  const replyTo = e.replyTo && e.replyTo.length ? e.replyTo : from;
  return (
    '(' +
    [
      imapNString(e.date, opts),
      e.subject === null ? 'NIL' : imapString(forHumans(e.subject), opts),
      addressList(from, opts),
      addressList(sender, opts),
      addressList(replyTo, opts),
      addressList(e.to, opts),
      addressList(e.cc, opts),
      addressList(e.bcc, opts),
      imapNString(e.inReplyTo, opts),
      imapNString(e.messageId, opts),
    ].join(' ') +
    ')'
  );
}

/** The envelope of a message/rfc822 part the indexer did not open (encoded, or past a limit). */
export const EMPTY_ENVELOPE = '(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)';
