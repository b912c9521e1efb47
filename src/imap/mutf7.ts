/**
 * Modified UTF-7 for mailbox names (RFC 3501 §5.1.3; still used by IMAP4rev1
 * clients that have not enabled UTF8=ACCEPT, RFC 6855 §3):
 *  - printable US-ASCII 0x20–0x7E stands for itself, except "&", written "&-";
 *  - anything else is "&" + modified BASE64 (RFC 2045 alphabet with "," for "/",
 *    no "=" padding) of UTF-16BE + "-".
 * Decoding is strict (errors as values): characters outside 0x20–0x7E, an
 * unterminated "&", a bad BASE64 character, leftover or non-zero padding bits, a
 * dangling UTF-16 surrogate, a printable ASCII character or "&" inside BASE64, and
 * two adjacent encoded runs ("&…-&…-" which the encoder would have merged) are all
 * rejected, so every name has exactly one encoding.
 */

export type Mutf7Result = { ok: true; value: string } | { ok: false; error: string };

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,';
const INDEX = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) INDEX[ALPHABET.charCodeAt(i)] = i;

function isDirect(code: number): boolean {
  return code >= 0x20 && code <= 0x7e;
}

function encodeRun(units: number[]): string {
  let out = '&';
  let bits = 0;
  let acc = 0;
  for (const u of units) {
    acc = (acc << 16) | u;
    bits += 16;
    while (bits >= 6) {
      bits -= 6;
      out += ALPHABET[(acc >> bits) & 0x3f];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(acc << (6 - bits)) & 0x3f];
  return out + '-';
}

/** Encode a mailbox name (any Unicode string; lone surrogates become U+FFFD). */
export function encodeMutf7(name: string): string {
  const wellFormed = name.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
  let out = '';
  let run: number[] = [];
  for (let i = 0; i < wellFormed.length; i++) {
    const u = wellFormed.charCodeAt(i);
    if (isDirect(u)) {
      if (run.length) {
        out += encodeRun(run);
        run = [];
      }
      out += u === 0x26 ? '&-' : wellFormed[i];
    } else run.push(u);
  }
  if (run.length) out += encodeRun(run);
  return out;
}

/** Decode a modified UTF-7 mailbox name, strictly. */
export function decodeMutf7(encoded: string): Mutf7Result {
  let out = '';
  let i = 0;
  let lastRunEnd = -1;
  while (i < encoded.length) {
    const c = encoded.charCodeAt(i);
    if (!isDirect(c)) return { ok: false, error: `Invalid character at ${i}` };
    if (c !== 0x26) {
      out += encoded[i++];
      continue;
    }
    const end = encoded.indexOf('-', i + 1);
    if (end < 0) return { ok: false, error: `Unterminated "&" at ${i}` };
    if (end === i + 1) {
      out += '&';
      i = end + 1;
      continue;
    }
    if (lastRunEnd === i) return { ok: false, error: `Adjacent encoded runs at ${i}` };
    let acc = 0;
    let bits = 0;
    const units: number[] = [];
    for (let p = i + 1; p < end; p++) {
      const k = encoded.charCodeAt(p);
      const v = k < 128 ? INDEX[k] : -1;
      if (v < 0) return { ok: false, error: `Invalid BASE64 character at ${p}` };
      acc = (acc << 6) | v;
      bits += 6;
      if (bits >= 16) {
        bits -= 16;
        units.push((acc >> bits) & 0xffff);
        acc &= (1 << bits) - 1;
      }
    }
    // Minimal encoding: fewer than 6 leftover bits, all zero, and at least one unit.
    if (bits >= 6 || acc !== 0 || units.length === 0) return { ok: false, error: `Invalid BASE64 padding at ${i}` };
    for (let k = 0; k < units.length; k++) {
      const u = units[k];
      if (isDirect(u)) return { ok: false, error: `Printable ASCII encoded in BASE64 at ${i}` };
      if (u >= 0xd800 && u <= 0xdbff) {
        const low = units[k + 1];
        if (low === undefined || low < 0xdc00 || low > 0xdfff) return { ok: false, error: `Unpaired surrogate at ${i}` };
        k++;
        out += String.fromCharCode(u, low);
      } else if (u >= 0xdc00 && u <= 0xdfff) return { ok: false, error: `Unpaired surrogate at ${i}` };
      else out += String.fromCharCode(u);
    }
    i = end + 1;
    lastRunEnd = i;
  }
  return { ok: true, value: out };
}

/** Whether a name is valid modified UTF-7 (and so a valid IMAP4rev1 mailbox name). */
export function isValidMutf7(encoded: string): boolean {
  return decodeMutf7(encoded).ok;
}
