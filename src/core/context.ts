import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { BlobStore } from '../store/blob-store.ts';
import type { DataStore } from '../store/data-store.ts';
import type { PubSub } from './pubsub.ts';
import type { Directory } from '../directory/directory.ts';
import type { Ingest } from './ingest.ts';
import type { Authenticator } from '../auth/authenticator.ts';
import type { BanGuard } from '../auth/bans.ts';
import type { ConnectionGuard } from '../net/connection-guard.ts';
import type { DnsResolver } from '../net/dns.ts';

/** Login and abuse defences shared by every protocol. */
export interface Security {
  auth: Authenticator;
  bans: BanGuard;
  connections: ConnectionGuard;
}

/** Everything a service needs, injected (no module-level singletons). */
export interface Context {
  config: Config;
  log: Logger;
  data: DataStore;
  blobs: BlobStore;
  pubsub: PubSub;
  directory: Directory;
  ingest: Ingest;
  security: Security;
  /** Clock, injectable for tests. */
  now: () => number;
  /** DNS for the policy checks and MX lookups ([dns] servers; tests pass their own). */
  dns: DnsResolver;
}
