import { sql, type AliasedRawBuilder } from 'kysely';
import type { DataStore } from './data-store.ts';

/**
 * Batched reads of the `blobs` table for IMAP FETCH of many messages: one query per
 * few hundred messages instead of one (or two) per message.
 *
 * A FETCH of 10,000 headers used to run 10,000 `SELECT data FROM blobs WHERE hash = ?`
 * (each built and compiled by kysely, each awaited on its own) plus the MIME index
 * queries; here the same rows come back from ~20 `hash IN (…)` queries whose SQL is
 * compiled once per store and shape. The number of placeholders is rounded up to a
 * few fixed sizes (the list padded by repeating its last hash, which IN ignores), so
 * SQLite's statement cache sees a handful of SQL texts, not one per batch length.
 */

/** What to read of each blob's row. */
export interface BlobBatchRequest {
  /** The MIME index JSON (`meta`). */
  meta: boolean;
  /**
   * The inline message bytes: none, all of them, or at most this many from the start
   * (`substr(data, 1, n)`: a header-only FETCH needs no body).
   */
  data: 'none' | 'whole' | number;
}

export interface BlobBatchRow {
  /** null when not asked for. */
  meta: string | null;
  /** The inline bytes (or their first `data` bytes); null when the blob is a file or chunks, or not asked for. */
  data: Buffer | null;
}

/** Placeholder counts used; a batch is padded up to the next one. */
const SIZES = [1, 8, 32, 128, 512] as const;
/** Most hashes per query. */
export const BLOB_BATCH_MAX = SIZES[SIZES.length - 1];

/** Stand-ins for the parameters while the SQL is compiled (their order is checked). */
const PREFIX_MARK = 987654321;
const HASH_MARK = '\u0000hash';

/** Compiled SQL text per store and query shape ("meta|data|size"). */
const compiled = new WeakMap<DataStore, Map<string, string>>();

function sqlText(store: DataStore, req: BlobBatchRequest, size: number): string {
  let byStore = compiled.get(store);
  if (!byStore) compiled.set(store, (byStore = new Map()));
  const prefix = typeof req.data === 'number';
  const key = `${req.meta}|${prefix ? 'prefix' : req.data}|${size}`;
  let text = byStore.get(key);
  if (text !== undefined) return text;
  const cols: Array<AliasedRawBuilder<unknown, string>> = [sql.ref('hash').as('hash')];
  if (req.meta) cols.push(sql.ref('meta').as('meta'));
  // substr() takes a BLOB in SQLite and a bytea in PostgreSQL alike. The prefix length
  // is the first parameter (the select list compiles before WHERE): checked below.
  if (prefix) cols.push(sql`substr(data, 1, ${PREFIX_MARK})`.as('data'));
  else if (req.data === 'whole') cols.push(sql.ref('data').as('data'));
  const hashes = Array.from({ length: size }, (_, i) => `${HASH_MARK}${i}`);
  const c = store.db.selectFrom('blobs').select(cols).where('hash', 'in', hashes).compile();
  const want: unknown[] = prefix ? [PREFIX_MARK, ...hashes] : hashes;
  if (c.parameters.length !== want.length || c.parameters.some((p, i) => p !== want[i])) {
    throw new Error('blob-batch: unexpected parameter order in the compiled query');
  }
  text = c.sql;
  byStore.set(key, text);
  return text;
}

/**
 * Reads the rows of these blobs, at most BLOB_BATCH_MAX per query. Hashes with no
 * row (an expunged message whose blob was collected) are absent from the result.
 */
export async function readBlobRows(store: DataStore, hashes: readonly string[], req: BlobBatchRequest): Promise<Map<string, BlobBatchRow>> {
  const out = new Map<string, BlobBatchRow>();
  const unique = [...new Set(hashes)];
  for (let i = 0; i < unique.length; i += BLOB_BATCH_MAX) {
    const part = unique.slice(i, i + BLOB_BATCH_MAX);
    const size = SIZES.find((n) => n >= part.length)!;
    const params: unknown[] = typeof req.data === 'number' ? [req.data, ...part] : [...part];
    for (let k = part.length; k < size; k++) params.push(part[part.length - 1]);
    const rows = await store.selectRows<{ hash: string; meta?: string; data?: Buffer | Uint8Array | null }>(sqlText(store, req, size), params);
    for (const row of rows) {
      const d = row.data ?? null;
      out.set(row.hash, {
        meta: row.meta ?? null,
        // Drivers hand back a Buffer for BLOB/bytea; a plain Uint8Array is wrapped without copying.
        data: d === null || Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength),
      });
    }
  }
  return out;
}
