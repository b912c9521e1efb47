import crypto from 'node:crypto';
import type { ParsedContent } from './parse.ts';

/**
 * The Bayes tokenizer: what the classifier counts. As in SpamAssassin and SpamBayes, a token
 * is counted once per message (presence, not frequency), and where it was found is part of it:
 * "S:free" (Subject) is not "free" (body). Headers are reduced to the parts that tell senders
 * apart (domains, the mailer) — never dates or ids, which are unique to each message.
 */

/** Longer messages add nothing a classifier needs: keep the first this many distinct tokens. */
const MAX_TOKENS = 3000;
/** Words longer than this are mostly base64, hashes or URLs: one "sk:" token by first letters and length. */
const MAX_WORD = 20;

export function tokenize(p: ParsedContent): string[] {
  const out = new Set<string>();
  const add = (t: string) => {
    if (out.size < MAX_TOKENS) out.add(t);
  };
  for (const w of words(p.subject)) add(`S:${w}`);
  for (const w of words(p.body)) add(w);
  if (p.from) {
    add(`H:from-dom:${domainOf(p.from.address)}`);
    for (const w of words(p.from.name)) add(`H:from-name:${w}`);
  }
  if (p.replyTo) add(`H:replyto-dom:${domainOf(p.replyTo)}`);
  const mailer = (p.headers.get('x-mailer')?.[0] ?? p.headers.get('user-agent')?.[0] ?? '').toLowerCase().split(/[\s/;(]/)[0];
  if (mailer) add(`H:mailer:${mailer}`);
  const ctype = (p.headers.get('content-type')?.[0] ?? 'text/plain').toLowerCase().split(';')[0]!.trim();
  add(`H:ctype:${ctype}`);
  if (p.headers.has('list-id')) add('H:list-id');
  const mid = p.headers.get('message-id')?.[0];
  if (mid) add(`H:mid-dom:${domainOf(mid.replace(/[<>]/g, ''))}`);
  for (const u of p.urls) {
    add(`U:${u.host}`);
    const reg = u.host.split('.').slice(-2).join('.');
    if (reg !== u.host && !/^[\d.]+$|:/.test(u.host)) add(`U:${reg}`);
  }
  for (const a of p.attachments) add(`A:${a.contentType.toLowerCase()}`);
  if (p.images) add(`H:images:${p.images > 3 ? 'many' : p.images}`);
  return [...out];
}

/** Lower-case words of any script; numbers count as words; long runs become "sk:" tokens. */
export function words(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/[\p{L}\p{M}\p{N}$€£]+(?:['’.\-@][\p{L}\p{M}\p{N}]+)*/gu)) {
    const w = m[0].toLowerCase();
    if (w.length < 2) continue;
    out.push(w.length > MAX_WORD ? `sk:${w.slice(0, 2)}:${Math.floor(w.length / 10) * 10}` : w);
  }
  return out;
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** What the store keeps: the first 8 bytes of SHA-1, hex (no text of anyone's mail in the database). */
export function hashToken(token: string): string {
  return crypto.createHash('sha1').update(token).digest('hex').slice(0, 16);
}
