import crypto from 'node:crypto';

/**
 * Stored password hashes in the notation Dovecot uses, so that hashes imported
 * from a Dovecot passwd-file (or SQL/LDAP userdb) keep working until the user's
 * next login rehashes them to argon2id.
 *
 * Notation: "{SCHEME}data" or "{SCHEME.ENC}data" with ENC b64/base64/hex, or a
 * bare crypt(3) string ("$6$…"). Source: Dovecot password schemes
 * (https://doc.dovecot.org/configuration_manual/authentication/password_schemes/)
 * and dovecot/core src/auth/password-scheme.c (password_get_scheme,
 * password_scheme_lookup, password_decode).
 *
 * Parsing never throws and a reason never contains any part of the hash or
 * password: it is printed by the importer and may end up in logs.
 */

export type DigestScheme = 'SHA' | 'SHA256' | 'SHA512' | 'SSHA' | 'SSHA256' | 'SSHA512';
type Algorithm = 'sha1' | 'sha256' | 'sha512';

export type ParsedHash =
  | { kind: 'argon2'; scheme: 'ARGON2ID' | 'ARGON2I'; phc: string }
  | { kind: 'sha-crypt'; scheme: 'SHA512-CRYPT' | 'SHA256-CRYPT'; crypt: string }
  | { kind: 'bcrypt'; scheme: 'BLF-CRYPT'; crypt: string }
  | { kind: 'digest'; scheme: DigestScheme; algorithm: Algorithm; salted: boolean; raw: Buffer }
  /** Cleartext at rest: never accepted at login; the importer hashes it. */
  | { kind: 'plain'; scheme: 'PLAIN'; password: string }
  | { kind: 'unsupported'; reason: string };

/**
 * Cost caps. The slow pure-JS schemes run on one shared worker thread, so one
 * absurd cost in an imported hash would stall every login behind it (and
 * unixcrypt allocates an array of `rounds` entries). glibc's default is 5000
 * rounds, Dovecot's BLF-CRYPT default cost 5, libsodium's "sensitive" argon2 1 GiB.
 */
export const MAX_SHA_CRYPT_ROUNDS = 1_000_000;
export const MAX_BCRYPT_COST = 17;
export const MAX_ARGON2_MEMORY_KIB = 1024 * 1024;

const DIGESTS: Record<DigestScheme, { algorithm: Algorithm; length: number; salted: boolean }> = {
  SHA: { algorithm: 'sha1', length: 20, salted: false },
  SHA256: { algorithm: 'sha256', length: 32, salted: false },
  SHA512: { algorithm: 'sha512', length: 64, salted: false },
  SSHA: { algorithm: 'sha1', length: 20, salted: true },
  SSHA256: { algorithm: 'sha256', length: 32, salted: true },
  SSHA512: { algorithm: 'sha512', length: 64, salted: true },
};
/** Named crypt-style schemes and the hash kinds their data may hold (argon2 strings name their own variant). */
const CRYPT_SCHEMES: Record<string, string[]> = {
  'SHA512-CRYPT': ['SHA512-CRYPT'],
  'SHA256-CRYPT': ['SHA256-CRYPT'],
  'BLF-CRYPT': ['BLF-CRYPT'],
  ARGON2I: ['ARGON2I', 'ARGON2ID'],
  ARGON2ID: ['ARGON2I', 'ARGON2ID'],
  // OpenLDAP's pw-argon2 module (slappasswd -o module-load=argon2 -h {ARGON2}): a PHC string of either variant.
  ARGON2: ['ARGON2I', 'ARGON2ID'],
};
const ALIASES: Record<string, string> = { SHA1: 'SHA', CLEAR: 'PLAIN', CLEARTEXT: 'PLAIN' };

/** Dovecot schemes we recognise but cannot verify: named in import reports. */
const KNOWN_UNSUPPORTED = new Set([
  'MD5', 'MD5-CRYPT', 'PLAIN-MD5', 'LDAP-MD5', 'SMD5', 'PLAIN-MD4', 'CRAM-MD5', 'HMAC-MD5', 'DIGEST-MD5',
  'NTLM', 'LANMAN', 'OTP', 'SKEY', 'RPA', 'PBKDF2', 'SCRAM-SHA-1', 'SCRAM-SHA-256', 'PLAIN-TRUNC', 'DES-CRYPT', 'CRYPT-DES',
]);

/** Whether NAME (optionally NAME.b64/.hex) is a scheme this module parses: for `--default-scheme`. */
export function isKnownScheme(name: string): boolean {
  const [base, enc, ...more] = name.toUpperCase().split('.');
  if (more.length || (enc !== undefined && !['B64', 'BASE64', 'HEX'].includes(enc))) return false;
  const n = Object.hasOwn(ALIASES, base) ? ALIASES[base] : base;
  if (Object.hasOwn(DIGESTS, n) || n === 'PLAIN') return true;
  return enc === undefined && (n === 'CRYPT' || Object.hasOwn(CRYPT_SCHEMES, n));
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const HEX = /^(?:[0-9a-fA-F]{2})*$/;
// glibc crypt(3) SHA-crypt: $5$/$6$, optional rounds=N, salt ≤ 16 chars, 43/86 chars of hash.
// (glibc allows more salt characters; unixcrypt only the crypt alphabet, as every real generator uses.)
const SHA_CRYPT = /^\$([56])\$(?:rounds=([1-9][0-9]{0,8})\$)?[./0-9A-Za-z]{0,16}\$([./0-9A-Za-z]+)$/;
// OpenBSD bcrypt: $2a$/$2b$/$2y$ (same algorithm), two-digit cost, 22 salt + 31 hash chars.
const BCRYPT = /^\$2[aby]\$([0-9]{2})\$[./A-Za-z0-9]{53}$/;
const ARGON2 = /^\$argon2(id|i)\$(?:v=(16|19)\$)?m=([0-9]{1,10}),t=[0-9]{1,10},p=[0-9]{1,3}\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;

export function parseStoredHash(stored: unknown): ParsedHash {
  if (typeof stored !== 'string' || stored.length === 0) return unsupported('empty password hash');
  if (stored.length > 4096) return unsupported('password hash too long');
  // password_get_scheme(): "{NAME}" only when it starts with "{" and has a "}".
  const close = stored.startsWith('{') ? stored.indexOf('}') : -1;
  if (close < 0) return parseCrypt(stored);
  const [rawName, encoding, ...more] = stored.slice(1, close).split('.');
  const body = stored.slice(close + 1);
  const upper = rawName.toUpperCase();
  const name = Object.hasOwn(ALIASES, upper) ? ALIASES[upper] : upper;
  const enc = encoding?.toLowerCase();
  if (more.length || (enc !== undefined && !['b64', 'base64', 'hex'].includes(enc))) return unsupported('unknown scheme encoding');
  if (Object.hasOwn(DIGESTS, name)) return parseDigest(name as DigestScheme, body, enc);
  if (name === 'PLAIN') return parsePlain(body, enc);
  const known = name === 'CRYPT' || Object.hasOwn(CRYPT_SCHEMES, name) || KNOWN_UNSUPPORTED.has(name);
  // Only names from our lists are echoed: an unknown "{...}" may be part of a password.
  if (!known) return unsupported('unknown scheme');
  if (enc !== undefined) return unsupported(`unsupported encoding for ${name}`);
  if (name === 'CRYPT') return parseCrypt(body);
  const accepts = Object.hasOwn(CRYPT_SCHEMES, name) ? CRYPT_SCHEMES[name] : null;
  if (accepts) {
    const p = parseCrypt(body);
    return p.kind === 'unsupported' || accepts.includes(p.scheme) ? p : unsupported(`${name} data is not a ${name} hash`);
  }
  return unsupported(`unsupported scheme ${name}`);
}

/** A bare crypt(3)-style string (also the body of {CRYPT}, Dovecot's default_pass_scheme). */
function parseCrypt(s: string): ParsedHash {
  if (s.startsWith('$5$') || s.startsWith('$6$')) {
    const m = SHA_CRYPT.exec(s);
    const scheme = s[1] === '6' ? 'SHA512-CRYPT' : 'SHA256-CRYPT';
    if (!m || m[3].length !== (m[1] === '6' ? 86 : 43)) return unsupported(`malformed ${scheme} hash`);
    // glibc clamps rounds to ≥ 1000 and writes the clamped value, so smaller never occurs.
    if (m[2] !== undefined && (Number(m[2]) < 1000 || Number(m[2]) > MAX_SHA_CRYPT_ROUNDS)) return unsupported(`${scheme} rounds outside 1000..${MAX_SHA_CRYPT_ROUNDS}`);
    return { kind: 'sha-crypt', scheme, crypt: s };
  }
  if (/^\$2[abxy]\$/.test(s)) {
    const m = BCRYPT.exec(s);
    if (!m) return unsupported('malformed BLF-CRYPT hash');
    const cost = Number(m[1]);
    if (cost < 4 || cost > MAX_BCRYPT_COST) return unsupported(`BLF-CRYPT cost outside 4..${MAX_BCRYPT_COST}`);
    return { kind: 'bcrypt', scheme: 'BLF-CRYPT', crypt: s };
  }
  if (s.startsWith('$argon2')) {
    const m = ARGON2.exec(s);
    if (!m) return unsupported('malformed ARGON2 hash');
    if (Number(m[3]) > MAX_ARGON2_MEMORY_KIB) return unsupported('ARGON2 memory cost above 1 GiB');
    return { kind: 'argon2', scheme: m[1] === 'id' ? 'ARGON2ID' : 'ARGON2I', phc: s };
  }
  if (s.startsWith('$1$')) return unsupported('unsupported scheme MD5-CRYPT');
  if (s.startsWith('$y$') || s.startsWith('$gy$')) return unsupported('unsupported scheme yescrypt');
  if (s.startsWith('$7$')) return unsupported('unsupported scheme scrypt');
  if (/^[./0-9A-Za-z]{13}$/.test(s)) return unsupported('unsupported scheme DES-CRYPT');
  return unsupported('unrecognised hash (no {SCHEME} prefix and not a known crypt format)');
}

function parseDigest(scheme: DigestScheme, body: string, enc: string | undefined): ParsedHash {
  const d = DIGESTS[scheme];
  // password_decode(): without a suffix, a fixed-length scheme is hex when the
  // length is exactly twice the raw length, else base64; salted ones are base64.
  const hex = enc === 'hex' || (enc === undefined && !d.salted && body.length === d.length * 2);
  if (hex ? !HEX.test(body) : !B64.test(body)) return unsupported(`malformed ${scheme} hash (not ${hex ? 'hex' : 'base64'})`);
  const raw = Buffer.from(body, hex ? 'hex' : 'base64');
  if (d.salted ? raw.length <= d.length : raw.length !== d.length) return unsupported(`malformed ${scheme} hash (wrong length)`);
  return { kind: 'digest', scheme, algorithm: d.algorithm, salted: d.salted, raw };
}

function parsePlain(body: string, enc: string | undefined): ParsedHash {
  if (enc === undefined) return { kind: 'plain', scheme: 'PLAIN', password: body };
  const hex = enc === 'hex';
  if (hex ? !HEX.test(body) : !B64.test(body)) return unsupported(`malformed PLAIN.${enc} value`);
  return { kind: 'plain', scheme: 'PLAIN', password: Buffer.from(body, hex ? 'hex' : 'base64').toString('utf8') };
}

/** {SHA*}: digest(password); {SSHA*}: digest(password + salt) + salt. Constant-time comparison. */
export function verifyDigest(p: Extract<ParsedHash, { kind: 'digest' }>, password: string): boolean {
  const length = DIGESTS[p.scheme].length;
  const h = crypto.createHash(p.algorithm).update(password, 'utf8');
  if (p.salted) h.update(p.raw.subarray(length));
  return crypto.timingSafeEqual(h.digest(), p.raw.subarray(0, length));
}

function unsupported(reason: string): ParsedHash {
  return { kind: 'unsupported', reason };
}
