import { LRUCache } from 'lru-cache';

/**
 * A lookup cache with separate lifetimes for answers ("this user", TTL) and for
 * "nobody" (negative TTL), like Dovecot's auth_cache_ttl / auth_cache_negative_ttl,
 * so a delivery storm or a dictionary attack does not become one LDAP search per
 * RCPT or login. Concurrent lookups of one key share one search. Failures are never
 * cached. The clock is injected (tests move it).
 */
export class LookupCache<V> {
  private readonly entries: LRUCache<string, { value: V; expires: number }>;
  private readonly inflight = new Map<string, Promise<V>>();

  constructor(
    private readonly ttlMs: number,
    private readonly negativeTtlMs: number,
    max: number,
    private readonly now: () => number,
  ) {
    this.entries = new LRUCache({ max });
  }

  /**
   * The cached value of `key`, or `load()`'s (cached when `isNegative` says which TTL
   * applies and that TTL is > 0). `fresh` skips the cache (and refreshes it).
   * `cached` tells whether the value came from the cache.
   */
  async get(key: string, load: () => Promise<V>, isNegative: (v: V) => boolean, fresh = false): Promise<{ value: V; cached: boolean }> {
    if (!fresh) {
      const e = this.entries.get(key);
      if (e && e.expires > this.now()) return { value: e.value, cached: true };
      if (e) this.entries.delete(key);
      const pending = this.inflight.get(key);
      if (pending) return { value: await pending, cached: false };
    }
    const p = load();
    this.inflight.set(key, p);
    try {
      const value = await p;
      const ttl = isNegative(value) ? this.negativeTtlMs : this.ttlMs;
      if (ttl > 0) this.entries.set(key, { value, expires: this.now() + ttl });
      return { value, cached: false };
    } finally {
      if (this.inflight.get(key) === p) this.inflight.delete(key);
    }
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
