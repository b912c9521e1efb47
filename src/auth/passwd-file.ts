import { isKnownScheme, parseStoredHash, type ParsedHash } from './hash-schemes.ts';

/**
 * Dovecot passwd-file: one user per line,
 *   user:password:uid:gid:(gecos):home:(shell):extra_fields
 * of which only user and password matter here; later fields may be missing.
 * Blank lines and lines starting with "#" are skipped. A password without a
 * "{SCHEME}" prefix uses default_pass_scheme (Dovecot's default: CRYPT).
 * Source: https://doc.dovecot.org/configuration_manual/authentication/passwd_file/
 *
 * Reasons in errors name the line, the user and the scheme, never the password
 * field: the report is printed and may be pasted into tickets.
 */

export interface PasswdEntry {
  line: number;
  /** Lower-cased user@domain. */
  email: string;
  /** The parsed password field (argon2, crypt, digest, or plain to be hashed at import). */
  hash: Exclude<ParsedHash, { kind: 'unsupported' }>;
  /** The value to store as the password hash, in the notation verifyPassword reads (unused for plain). */
  stored: string;
}

export interface PasswdLineError {
  line: number;
  reason: string;
}

export interface PasswdFileOptions {
  /** Appended to user names without "@domain" (passwd-files per domain, `passwd-file /etc/dovecot/%d`). */
  domain?: string;
  /** Dovecot default_pass_scheme for fields without "{SCHEME}": CRYPT (detect $6$/$5$/$2y$/$argon2 by prefix) unless given. */
  defaultScheme?: string;
}

export function parsePasswdFile(text: string, opts: PasswdFileOptions = {}): { entries: PasswdEntry[]; errors: PasswdLineError[] } {
  const defaultScheme = (opts.defaultScheme ?? 'CRYPT').toUpperCase();
  if (!isKnownScheme(defaultScheme)) throw new Error(`unknown default scheme "${opts.defaultScheme}"`);
  const domain = opts.domain?.toLowerCase();
  const entries: PasswdEntry[] = [];
  const errors: PasswdLineError[] = [];
  const seen = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const raw = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (raw.trim() === '' || raw.startsWith('#')) continue;
    const fields = raw.split(':');
    let user = fields[0].trim().toLowerCase();
    const password = fields[1];
    if (!user) {
      errors.push({ line, reason: 'no user name before the first ":"' });
      continue;
    }
    if (!/^[^\s@]+(@[^\s@]+)?$/.test(user)) {
      errors.push({ line, reason: 'user name is not "user" or "user@domain"' });
      continue;
    }
    if (!user.includes('@')) {
      if (!domain) {
        errors.push({ line, reason: `user ${user} has no @domain (give --domain DOMAIN)` });
        continue;
      }
      user = `${user}@${domain}`;
    }
    const first = seen.get(user);
    if (first !== undefined) {
      errors.push({ line, reason: `user ${user} appears again (first on line ${first})` });
      continue;
    }
    seen.set(user, line);
    if (password === undefined || password === '') {
      errors.push({ line, reason: `user ${user} has no password field` });
      continue;
    }
    // password_get_scheme(): a "{...}" prefix names the scheme; otherwise the default applies.
    const prefixed = password.startsWith('{') && password.includes('}');
    const stored = prefixed || defaultScheme === 'CRYPT' ? password : `{${defaultScheme}}${password}`;
    const hash = parseStoredHash(stored);
    if (hash.kind === 'unsupported') {
      errors.push({ line, reason: `user ${user}: ${hash.reason}` });
      continue;
    }
    entries.push({ line, email: user, hash, stored });
  }
  return { entries, errors };
}
