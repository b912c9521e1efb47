import crypto from 'node:crypto';
import { LRUCache } from 'lru-cache';

/**
 * Remembers successful logins for a short time, like Dovecot's auth_cache, so a
 * client that reconnects every few seconds does not pay for argon2 each time.
 *
 * The key is an HMAC of username and password under a random per-process secret:
 * the cache never holds a password, and its keys are useless outside this process.
 * Each entry also keeps the stored hash it was verified against; a hit counts only
 * while the account still has that hash, so a password change (on any node, or by
 * the CLI) invalidates it at once. Failures are never cached.
 */
export class CredentialCache {
  private readonly secret = crypto.randomBytes(32);
  private readonly entries: LRUCache<string, { accountId: number; storedHash: string }>;

  constructor(
    readonly ttlMs: number,
    max = 10_000,
  ) {
    this.entries = new LRUCache({ max, ttl: Math.max(ttlMs, 1), ttlAutopurge: false });
  }

  private key(username: string, password: string): string {
    return crypto.createHmac('sha256', this.secret).update(username).update('\0').update(password).digest('base64');
  }

  /** The account id when this exact username/password verified against `storedHash` within the TTL. */
  get(username: string, password: string, accountId: number, storedHash: string): boolean {
    if (this.ttlMs <= 0) return false;
    const e = this.entries.get(this.key(username, password));
    return !!e && e.accountId === accountId && e.storedHash === storedHash;
  }

  set(username: string, password: string, accountId: number, storedHash: string): void {
    if (this.ttlMs <= 0) return;
    this.entries.set(this.key(username, password), { accountId, storedHash });
  }

  get size(): number {
    return this.entries.size;
  }
}
