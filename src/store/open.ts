import path from 'node:path';
import { SqliteWriterThread } from './sqlite/writer-thread.ts';
import { BlobStore } from './blob-store.ts';
import { DataStore } from './data-store.ts';
import { openSqlite } from './sqlite/open.ts';
import { SqliteMessageWriter } from './sqlite/message-writer.ts';
import { openPostgres, type PostgresOptions } from './postgres/open.ts';
import type { Config } from '../config/schema.ts';
import { LocalPubSub, type PubSub } from '../core/pubsub.ts';
import { PostgresPubSub } from './postgres/pubsub.ts';

export interface Stores {
  data: DataStore;
  blobs: BlobStore;
  /** Change notifications: in-process on SQLite, LISTEN/NOTIFY between nodes on PostgreSQL. */
  pubsub: PubSub;
  /** SQLite's writer thread, when the store has one (the server). */
  writer?: SqliteWriterThread;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Commit deliveries on a separate thread (the server); CLI commands write in-line. */
  writerThread?: boolean;
  /** store.inline_max_size: small messages live in the database, not as files. */
  inlineMaxSize?: number;
}

/** Opens the configured backend: `[store] backend`. */
export async function openStoresFromConfig(
  config: Pick<Config, 'data_dir' | 'store'>,
  opts: Pick<OpenOptions, 'writerThread'> & { onPubSubError?: (err: Error) => void; listen?: boolean } = {},
): Promise<Stores> {
  const st = config.store;
  if (st.backend === 'postgres') {
    return openPostgresStores({ url: st.url, schema: st.schema, poolSize: st.pool_size }, st.inline_max_size, opts.onPubSubError, opts.listen ?? true);
  }
  return openStores(config.data_dir, { ...opts, inlineMaxSize: st.inline_max_size });
}

/**
 * PostgreSQL: everything in the database — rows, small messages inline, large ones
 * in chunks — so any node can serve any mailbox without a shared filesystem.
 */
export async function openPostgresStores(
  pgOpts: PostgresOptions,
  inlineMaxSize = 64 * 1024,
  onPubSubError?: (err: Error) => void,
  /** Hold a LISTEN session for other nodes' changes (servers); CLI commands only publish. */
  listen = true,
): Promise<Stores> {
  const { db, pool, clientConfig } = await openPostgres(pgOpts);
  const data = new DataStore(db, false);
  // Interrupted uploads; an hour is far longer than any DATA phase.
  await data.deleteAbandonedChunks(3_600_000);
  const blobs = new BlobStore('', { inlineMaxSize, loadInline: (hash) => data.inlineBlob(hash), chunks: data });
  const pubsub = new PostgresPubSub(pool, clientConfig, pgOpts.schema, onPubSubError);
  try {
    if (listen) await pubsub.start();
  } catch (err) {
    await data.close();
    throw err;
  }
  return {
    data,
    blobs,
    pubsub,
    async close() {
      await pubsub.close();
      await data.close();
    },
  };
}

/** Opens the embedded backend (SQLite + blob files) in data_dir. */
export async function openStores(dataDir: string, opts: OpenOptions = {}): Promise<Stores> {
  // The server's writer thread commits deliveries and IMAP STORE/EXPUNGE; the main
  // connection's other writes (COPY/MOVE, queue outcomes) are group-committed too (see
  // WalSync), and its lookups run on a read-only connection (SqliteReader). CLI commands
  // write with FULL commits, including the in-line message writer on `raw`.
  const { db, raw, wal, reader } = await openSqlite(dataDir, { groupCommit: !!opts.writerThread });
  const thread = opts.writerThread ? new SqliteWriterThread(path.join(dataDir, 'postern.db')) : null;
  const inline = thread ? null : new SqliteMessageWriter(raw);
  const data = new DataStore(db, true, thread ?? inline, thread, reader);
  const blobs = new BlobStore(dataDir, { inlineMaxSize: opts.inlineMaxSize ?? 64 * 1024, loadInline: (hash) => data.inlineBlob(hash) });
  return {
    data,
    blobs,
    pubsub: new LocalPubSub(),
    ...(thread ? { writer: thread } : {}),
    async close() {
      await thread?.close();
      inline?.flushSearch();
      await data.close();
      reader?.close();
      wal?.close();
      blobs.close();
    },
  };
}
