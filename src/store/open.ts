import { BlobStore } from './blob-store.ts';
import { DataStore } from './data-store.ts';
import { openSqlite } from './sqlite/open.ts';

export interface Stores {
  data: DataStore;
  blobs: BlobStore;
  close(): Promise<void>;
}

/** Opens the embedded backend (SQLite + blob files) in data_dir. */
export async function openStores(dataDir: string): Promise<Stores> {
  const { db } = await openSqlite(dataDir);
  const data = new DataStore(db, true);
  const blobs = new BlobStore(dataDir);
  return { data, blobs, close: () => data.close() };
}
