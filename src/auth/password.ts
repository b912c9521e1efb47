import os from 'node:os';
import { hash, verify, Algorithm } from '@node-rs/argon2';
import { parseStoredHash, verifyDigest, type ParsedHash } from './hash-schemes.ts';
import { CryptThread } from './crypt-thread.ts';

/** OWASP parameters for argon2id: m=19 MiB, t=2, p=1. */
const ARGON2 = { algorithm: Algorithm.Argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;
const CURRENT_PREFIX = `$argon2id$v=19$m=${ARGON2.memoryCost},t=${ARGON2.timeCost},p=${ARGON2.parallelism}$`;

/**
 * SHA-crypt's cost grows with the square of the password length (unixcrypt's
 * steps 11 and 13-16), so a 64 KiB IMAP literal as password could tie up the
 * shared crypt thread for minutes. No real password is this long.
 */
const MAX_CRYPT_PASSWORD_BYTES = 4096;

/**
 * The crypt worker: a process-wide compute resource with no configuration, started
 * on the first $6$/$5$/$2y$ verification only (installations that never imported
 * such hashes never start it).
 */
let cryptThread: CryptThread | null = null;

/**
 * At most this many argon2 computations at once. They run on libuv's pool (4
 * threads), off the event loop — but on a 2-core machine four of them starve the
 * main thread of CPU: bench/auth.ts --no-cache measured NOOP p99 16 ms with 4 at a
 * time and 4 ms with 1, at the same logins/s. Leave one core to the event loop.
 */
const HASH_SLOTS = Math.max(1, os.availableParallelism() - 1);
let hashing = 0;
const waiting: Array<() => void> = [];

async function limited<T>(fn: () => Promise<T>): Promise<T> {
  if (hashing >= HASH_SLOTS) await new Promise<void>((r) => waiting.push(r));
  else hashing++;
  try {
    return await fn();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else hashing--;
  }
}

/** New passwords are hashed with argon2id. */
export async function hashPassword(password: string): Promise<string> {
  return limited(() => hash(password, ARGON2));
}

/**
 * Whether `password` matches the stored hash: argon2 (ours, and Dovecot's
 * {ARGON2I}/{ARGON2ID}), SHA-crypt, bcrypt and the salted/unsalted SHA digests
 * (hash-schemes.ts). Cleartext ({PLAIN}) and anything unknown or malformed is a
 * failed login, never an exception. Nothing slow runs on the event loop:
 * argon2 runs on libuv's pool, crypt(3) schemes on the crypt worker thread.
 */
export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  if (typeof password !== 'string') return false;
  const p = parseStoredHash(stored);
  try {
    switch (p.kind) {
      case 'argon2':
        return await limited(() => verify(p.phc, password));
      case 'sha-crypt':
      case 'bcrypt':
        if (p.kind === 'sha-crypt' && Buffer.byteLength(password) > MAX_CRYPT_PASSWORD_BYTES) return false;
        cryptThread ??= new CryptThread();
        return await cryptThread.verify(p.kind, p.crypt, password);
      case 'digest':
        return verifyDigest(p, password);
      default:
        return false; // 'plain': no cleartext at rest; 'unsupported'
    }
  } catch {
    return false;
  }
}

/** True for every hash that is not argon2id with our current parameters: rehash it at the next successful login. */
export function needsRehash(stored: string): boolean {
  return typeof stored !== 'string' || !stored.startsWith(CURRENT_PREFIX);
}

/** The scheme name of a hash verifyPassword can check (e.g. "SHA512-CRYPT"), for reports; null otherwise. */
export function describeScheme(stored: string): string | null {
  const p: ParsedHash = parseStoredHash(stored);
  return p.kind === 'unsupported' || p.kind === 'plain' ? null : p.scheme;
}
