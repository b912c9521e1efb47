import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { htmlToText } from '../../mime/text.ts';

/**
 * One parse of a message for the builtin rules and the Bayes tokenizer. mailparser's
 * simpleParser holds the whole message in memory: fine here, the SMTP server only scores
 * messages up to policy.spam.max_size (1 MiB by default) and training reads one at a time.
 */
export interface ParsedContent {
  /** Header fields by lower-case name, raw (unfolded, not decoded), in message order. */
  headers: Map<string, string[]>;
  subject: string;
  from: { name: string; address: string } | null;
  replyTo: string | null;
  /** Addresses in To and Cc. */
  recipients: string[];
  /** text/plain content ('' when none). */
  text: string;
  /** text/html content ('' when none). */
  html: string;
  /** What a reader sees: the plain text, else the HTML as text. */
  body: string;
  /** Links in the body: href (or bare URL) and, for HTML anchors, the link text. */
  urls: Array<{ url: string; host: string; anchor: string | null }>;
  attachments: Array<{ filename: string; contentType: string; size: number }>;
  /** Count of <img> tags in the HTML. */
  images: number;
}

export async function parseContent(message: Buffer): Promise<ParsedContent> {
  // skip*: the rules want the text as sent, not mailparser's HTML renderings of it.
  const p: ParsedMail = await simpleParser(message, { skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true, skipHtmlToText: true });
  const headers = new Map<string, string[]>();
  for (const { key, line } of p.headerLines) {
    const value = line.slice(line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim();
    headers.set(key, [...(headers.get(key) ?? []), value]);
  }
  const html = typeof p.html === 'string' ? p.html : '';
  const text = p.text ?? '';
  const body = text.trim() ? text : htmlToText(html);
  const urls = [...htmlLinks(html), ...bareUrls(text || htmlToText(html))];
  return {
    headers,
    subject: p.subject ?? '',
    from: firstAddress(p.from),
    replyTo: firstAddress(p.replyTo)?.address ?? null,
    recipients: [...addresses(p.to), ...addresses(p.cc)],
    text,
    html,
    body,
    urls: dedupe(urls),
    attachments: p.attachments.map((a) => ({ filename: a.filename ?? '', contentType: a.contentType, size: a.size })),
    images: (html.match(/<img\b/gi) ?? []).length,
  };
}

function firstAddress(a: AddressObject | undefined): { name: string; address: string } | null {
  const v = a?.value[0];
  return v ? { name: v.name ?? '', address: (v.address ?? '').toLowerCase() } : null;
}

function addresses(a: AddressObject | AddressObject[] | undefined): string[] {
  const list = Array.isArray(a) ? a : a ? [a] : [];
  return list.flatMap((o) => o.value.map((v) => (v.address ?? '').toLowerCase())).filter(Boolean);
}

/** <a href="…">text</a> in HTML; the text is kept to compare with the target (URI_MISMATCH). */
function htmlLinks(html: string): ParsedContent['urls'] {
  const out: ParsedContent['urls'] = [];
  for (const m of html.matchAll(/<a\b[^>]*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))[^>]*>([\s\S]*?)<\/a>/gi)) {
    const url = decodeEntities((m[1] ?? m[2] ?? m[3] ?? '').trim());
    const host = hostOf(url);
    if (host) out.push({ url, host, anchor: htmlToText(m[4] ?? '').trim() });
  }
  return out;
}

function bareUrls(text: string): ParsedContent['urls'] {
  const out: ParsedContent['urls'] = [];
  for (const m of text.matchAll(/\bhttps?:\/\/[^\s<>"'()\]]+/gi)) {
    const url = m[0].replace(/[.,;:!?]+$/, '');
    const host = hostOf(url);
    if (host) out.push({ url, host, anchor: null });
  }
  return out;
}

export function hostOf(url: string): string | null {
  if (!/^https?:\/\//i.test(url)) return null;
  try {
    return new URL(url).hostname.toLowerCase().replace(/^\[|\]$/g, '');
  } catch {
    return null;
  }
}

function decodeEntities(s: string): string {
  return s.replace(/&amp;/g, '&').replace(/&#(\d+);/g, (_m, n: string) => String.fromCodePoint(Number(n) || 32));
}

function dedupe(urls: ParsedContent['urls']): ParsedContent['urls'] {
  const seen = new Set<string>();
  return urls.filter((u) => {
    const k = `${u.url}\0${u.anchor ?? ''}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
