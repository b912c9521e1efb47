import { hash, verify, Algorithm } from '@node-rs/argon2';

/** New passwords are hashed with argon2id (OWASP parameters: m=19 MiB, t=2, p=1). */
export async function hashPassword(password: string): Promise<string> {
  return hash(password, { algorithm: Algorithm.Argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 });
}

export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  if (stored.startsWith('$argon2')) return verify(stored, password);
  return false;
}

/** (lead's placeholder until the hash-schemes work lands) */
export function needsRehash(stored: string): boolean {
  return !stored.startsWith('$argon2id$');
}
