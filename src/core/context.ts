import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { DataStore } from '../store/data-store.ts';
import type { PubSub } from './pubsub.ts';
import type { Directory } from '../directory/directory.ts';
import type { Ingest } from './ingest.ts';

/** Everything a service needs, injected (no module-level singletons). */
export interface Context {
  config: Config;
  log: Logger;
  data: DataStore;
  blobs: BlobStore;
  pubsub: PubSub;
  directory: Directory;
  ingest: Ingest;
  /** Clock, injectable for tests. */
  now: () => number;
}
