import type { Config } from '../config/schema.ts';
import type { ChangeEvent } from '../core/pubsub.ts';

/**
 * What the main process and an IMAP worker process (src/imap/workers.ts, worker.ts) say to each
 * other over the IPC channel. Sockets travel as the channel's handle next to a `conn` message.
 */
export type ToWorker =
  | { t: 'init'; config: Config; index: number }
  /** A connection the main process admitted; the socket is the message's handle. */
  | { t: 'conn'; id: number; mode: 'imap' | 'imaps'; address: string }
  /** A change committed in another process (SMTP delivery, another worker): wakes IDLE. */
  | { t: 'change'; event: ChangeEvent }
  /** An ACME certificate the main process obtained (TlsProvider.addCertificate). */
  | { t: 'cert'; key: string; certPath: string; keyPath: string; hosts: string[] }
  | { t: 'stop' };

export type FromWorker =
  | { t: 'ready' }
  | { t: 'failed'; message: string }
  /** The connection `id` is gone: the main process frees its per-address slot. */
  | { t: 'closed'; id: number }
  /** A change this worker committed (STORE, EXPUNGE, APPEND …), for every other process. */
  | { t: 'change'; event: ChangeEvent };
