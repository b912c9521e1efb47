import iconv from 'iconv-lite';
import libqp from 'libqp';

/**
 * Decodes a text part's body for the search index: transfer encoding (RFC 2045 §6)
 * then charset. iconv-lite, not TextDecoder: Node 20's TextDecoder mis-decodes
 * windows-1252.
 */
export function decodeText(body: Buffer, encoding: string, charset: string | undefined): string {
  let bytes = body;
  const enc = encoding.toLowerCase();
  if (enc === 'base64') bytes = Buffer.from(body.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
  else if (enc === 'quoted-printable') bytes = libqp.decode(body.toString('latin1'));
  const cs = (charset ?? 'utf-8').toLowerCase();
  if (cs === 'utf-8' || cs === 'utf8' || cs === 'us-ascii') return bytes.toString('utf8');
  try {
    if (iconv.encodingExists(cs)) return iconv.decode(bytes, cs);
  } catch {
    /* fall through */
  }
  return bytes.toString('utf8');
}

/** Crude but safe HTML to text for indexing: drop script/style, tags, decode a few entities. */
export function htmlToText(html: string): string {
  return html
    .replace(/<(script|style)[\s\S]*?<\/\1>/gi, ' ')
    .replace(/<[^>]*>/g, ' ')
    .replace(/&nbsp;/g, ' ')
    .replace(/&amp;/g, '&')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#(\d+);/g, (_m, n: string) => String.fromCodePoint(Number(n) || 32))
    .replace(/\s+/g, ' ');
}
