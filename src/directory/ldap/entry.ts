import type { Entry } from 'ldapts';
import type { LdapConfig } from '../../config/directory.ts';
import { describeScheme } from '../../auth/password.ts';
import type { DirectoryUser } from '../directory.ts';

/** A user read from LDAP, with the password hashes (compare mode) kept out of the public shape. */
export interface LdapUser extends DirectoryUser {
  dn: string;
  hashes: string[];
}

/** The values of an attribute, matched case-insensitively (servers answer in their schema's spelling). */
export function values(entry: Entry, attribute: string): string[] {
  if (!attribute) return [];
  const want = attribute.toLowerCase();
  for (const key of Object.keys(entry)) {
    if (key.toLowerCase() !== want || key === 'dn') continue;
    const v = entry[key];
    const list = Array.isArray(v) ? v : [v];
    return list.map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : String(x))).filter((x) => x.length > 0);
  }
  return [];
}

export function first(entry: Entry, attribute: string): string | null {
  return values(entry, attribute)[0] ?? null;
}

/**
 * A storage limit: a number of bytes, a size with a binary unit ("512M", "2G", "1T"),
 * or Dovecot's quota rule notation "*:storage=N" (KiB, or with a unit) and
 * "*:bytes=N". 0 means no limit (as in Dovecot). Null when absent or unreadable.
 */
export function parseQuota(raw: string | null): number | null {
  if (!raw) return null;
  let s = raw.trim();
  let unit = 1;
  const rule = /^\*?:?(storage|bytes)=(.+)$/i.exec(s);
  if (rule) {
    s = rule[2]!.trim();
    if (rule[1]!.toLowerCase() === 'storage') unit = 1024;
  }
  const m = /^(\d+)\s*([KMGT])?i?B?$/i.exec(s);
  if (!m) return null;
  const mult = m[2] ? 1024 ** ('KMGT'.indexOf(m[2].toUpperCase()) + 1) : unit;
  const n = Number(m[1]) * mult;
  return n > 0 && Number.isSafeInteger(n) ? n : null;
}

/** An entry as a user, or null when it has no usable primary address. */
export function toUser(entry: Entry, cfg: LdapConfig): LdapUser | null {
  const a = cfg.attributes;
  const mail = first(entry, a.mail)?.trim().toLowerCase();
  if (!mail || !/^[^\s@]+@[^\s@]+$/.test(mail)) return null;
  const enabledValues = new Set(cfg.enabled_values.map((v) => v.toLowerCase()));
  const flag = values(entry, a.enabled);
  const hashes = values(entry, a.password);
  return {
    dn: entry.dn,
    email: mail,
    aliases: [...new Set(values(entry, a.alias).map((x) => x.trim().toLowerCase()))].filter((x) => x !== mail),
    uid: first(entry, a.uid),
    displayName: first(entry, a.display_name),
    quotaBytes: parseQuota(first(entry, a.quota)),
    enabled: flag.length === 0 || flag.some((v) => enabledValues.has(v.trim().toLowerCase())),
    hashes,
    passwordSchemes: hashes.map((h) => describeScheme(h) ?? 'unsupported'),
  };
}

/** The public shape (no hashes) for callers outside the LDAP backend. */
export function publicUser(u: LdapUser): DirectoryUser {
  const { hashes: _hashes, ...rest } = u;
  return rest;
}

/** Whether a member value names an entry (a DN such as "uid=x,ou=people,…") rather than an address or a uid. */
export function looksLikeDn(v: string): boolean {
  return /^[A-Za-z][A-Za-z0-9-]*=|^[0-9.]+=/.test(v) && !/^[^=,]+@[^=,]+$/.test(v);
}
