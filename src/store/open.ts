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
export async function openStores(dataDir: string, opts: { writerThread?: boolean } = {}): Promise<Stores> {
  const { db, raw } = await openSqlite(dataDir);
  // The server commits deliveries on a separate thread; short-lived CLI commands write in-line.
  const thread = opts.writerThread ? new SqliteWriterThread(path.join(dataDir, 'postern.db')) : null;
  const data = new DataStore(db, true, thread ?? new SqliteMessageWriter(raw));
  const blobs = new BlobStore(dataDir);
  return {
    data,
    blobs,
    async close() {
      await thread?.close();
      await data.close();
    },
  };
}
