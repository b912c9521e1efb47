import { sql } from 'kysely';
import { LRUCache } from 'lru-cache';
import type { DataStore } from './data-store.ts';

/** Messages per query. */
const BATCH = 500;

/**
 * The top-level header block (bytes [0, root.bodyStart), blank line included) and the
 * MIME index JSON of messages stored inline, the block cut in the database so the
 * bodies stay there. Messages in files or chunks, and gone ones, are absent.
 */
export async function headerBlocks(data: DataStore, hashes: readonly string[]): Promise<Map<string, { head: Buffer; meta: string }>> {
  const out = new Map<string, { head: Buffer; meta: string }>();
  const cache = headerCacheOf(data);
  const missing: string[] = [];
  for (const h of new Set(hashes)) {
    const hit = cache.get(h);
    if (hit) out.set(h, hit);
    else missing.push(h);
  }
  // The root part starts at offset 0 (MimeIndexer opens it there).
  const end = data.postgres ? sql`CAST((CAST(meta AS json) -> 'root' ->> 'bodyStart') AS integer)` : sql`json_extract(meta, '$.root.bodyStart')`;
  for (let i = 0; i < missing.length; i += BATCH) {
    const part = missing.slice(i, i + BATCH);
    const r = await sql<{ hash: string; meta: string; head: Uint8Array | null }>`SELECT hash, meta, substr(data, 1, ${end}) AS head FROM blobs WHERE hash IN (${sql.join(part)}) AND data IS NOT NULL`.execute(data.db);
    for (const row of r.rows) {
      if (!row.head) continue;
      const block = { head: Buffer.from(row.head.buffer, row.head.byteOffset, row.head.byteLength), meta: row.meta };
      out.set(row.hash, block);
      cache.set(row.hash, block);
    }
  }
  return out;
}

/**
 * Header blocks and MIME indexes of recently searched or fetched messages, per
 * store, up to HEADER_CACHE_BYTES: header searches (FROM, SUBJECT — what clients
 * send most) and header FETCHes (a client's message list) then run from memory, as
 * Dovecot's run from its cache file, instead of reading each message's row again
 * (17–30 µs a row: the rows hold the whole message). Blobs are content-addressed,
 * so an entry never goes stale.
 */
const HEADER_CACHE_BYTES = 128 * 1024 * 1024;
const headerCaches = new WeakMap<DataStore, LRUCache<string, { head: Buffer; meta: string }>>();
function headerCacheOf(data: DataStore): LRUCache<string, { head: Buffer; meta: string }> {
  let c = headerCaches.get(data);
  if (!c) {
    // meta is a JS string: 2 bytes a character at most; plus the key and object overhead.
    // SEARCH keeps its parsed copy of a block alongside (search-keys.ts Headers.of): the
    // lower-cased text (1 byte a character), the decoded fields and their joined text
    // (2 bytes a character each at most), or the values of the fields searched by name
    // (a part of those): counted as 5 × the block in all.
    c = new LRUCache({ maxSize: HEADER_CACHE_BYTES, sizeCalculation: (v, k) => 5 * v.head.length + 2 * v.meta.length + 2 * k.length + 100 });
    headerCaches.set(data, c);
  }
  return c;
}
