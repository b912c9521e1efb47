/**
 * Edits of a received message's header section before it is stored (issue #9). Works on the
 * raw bytes as latin1 so 8-bit header bytes pass through unchanged.
 */

/** The header's fields, each with its folded continuation lines and final CRLF. */
function fields(header: Buffer): string[] {
  const text = header.toString('latin1');
  const out: string[] = [];
  for (const m of text.matchAll(/[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*/g)) if (m[0]) out.push(m[0]);
  // Bytes after the last CRLF (a header section cut at the size bound): kept as they are.
  const rest = text.slice(out.reduce((n, f) => n + f.length, 0));
  if (rest) out.push(rest);
  return out;
}

const nameOf = (field: string) => field.slice(0, Math.max(0, field.indexOf(':'))).trim().toLowerCase();

/**
 * Removes what a sender must not be able to claim:
 * - Authentication-Results fields carrying our own authserv-id (RFC 8601 §5: a receiver
 *   removes them, else a forged "dkim=pass" from outside looks like ours);
 * - X-Spam-* fields (a spammer's "X-Spam-Status: No" must not be mistaken for our verdict).
 */
export function stripForgedFields(header: Buffer, authservId: string): Buffer {
  const id = authservId.toLowerCase();
  const kept = fields(header).filter((f) => {
    const name = nameOf(f);
    if (name.startsWith('x-spam-')) return false;
    if (name === 'authentication-results') {
      const value = f.slice(f.indexOf(':') + 1).replace(/\([^)]*\)/g, ' ').trim();
      const first = value.split(/[;\s]/)[0]!.toLowerCase();
      return first !== id;
    }
    return true;
  });
  return Buffer.from(kept.join(''), 'latin1');
}

/** Prefixes the Subject with `tag` ("[SPAM] …"), once; adds a Subject when there is none. */
export function tagSubject(header: Buffer, tag: string): Buffer {
  if (!tag) return header;
  const all = fields(header);
  const i = all.findIndex((f) => nameOf(f) === 'subject');
  if (i < 0) return Buffer.concat([header, Buffer.from(`Subject: ${tag}\r\n`, 'latin1')]);
  const f = all[i]!;
  const colon = f.indexOf(':');
  const value = f.slice(colon + 1).replace(/^[ \t]+/, '');
  if (value.startsWith(tag)) return header;
  all[i] = `${f.slice(0, colon)}: ${tag} ${value}`;
  return Buffer.from(all.join(''), 'latin1');
}
