import path from 'node:path';
import { SqliteWriterThread } from './sqlite/writer-thread.ts';
import { BlobStore } from './blob-store.ts';
import { DataStore } from './data-store.ts';
import { openSqlite } from './sqlite/open.ts';
import { SqliteMessageWriter } from './sqlite/message-writer.ts';

export interface Stores {
  data: DataStore;
  blobs: BlobStore;
  close(): Promise<void>;
}

/** Opens the embedded backend (SQLite + blob files) in data_dir. */
export interface OpenOptions {
  /** Commit deliveries on a separate thread (the server); CLI commands write in-line. */
  writerThread?: boolean;
  /** store.inline_max_size: small messages live in the database, not as files. */
  inlineMaxSize?: number;
}

export async function openStores(dataDir: string, opts: OpenOptions = {}): Promise<Stores> {
  const { db, raw } = await openSqlite(dataDir);
  const thread = opts.writerThread ? new SqliteWriterThread(path.join(dataDir, 'postern.db')) : null;
  const inline = thread ? null : new SqliteMessageWriter(raw);
  const data = new DataStore(db, true, thread ?? inline);
  const blobs = new BlobStore(dataDir, { inlineMaxSize: opts.inlineMaxSize ?? 64 * 1024, loadInline: (hash) => data.inlineBlob(hash) });
  return {
    data,
    blobs,
    async close() {
      await thread?.close();
      inline?.flushSearch();
      await data.close();
      blobs.close();
    },
  };
}
