import { Worker } from 'node:worker_threads';
import type { AddedMessage, NewMessage } from '../data-store.ts';
import { MailError, type MailErrorCode } from '../../core/errors.ts';
import type { ExpungeResult, StoreFlagsResult, StoreMode } from '../imap-model.ts';
import type { ExpungeCandidates, ViewAdvance } from './imap-writer.ts';

/** Client side of writer-worker.ts: addMessages, and IMAP STORE and EXPUNGE (imap-writer.ts), answered by the commit thread. */
export class SqliteWriterThread {
  private worker: Worker;
  private seq = 0;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  /** Set once the thread is gone: every later commit fails at once (a 451 to the client) instead of hanging. */
  private dead: unknown = null;
  /** WAL flushes the thread had done when it sent its latest answer to a commit. */
  flushes = 0;

  constructor(file: string) {
    // The boot file registers tsx in the worker, then loads writer-worker.ts.
    this.worker = new Worker(new URL('./writer-worker-boot.mjs', import.meta.url), { workerData: { file } });
    this.worker.on('message', (m: { id: number; result?: unknown; flushes?: number; error?: { message: string; code: string | null; name: string } }) => {
      if (m.flushes !== undefined) this.flushes = Math.max(this.flushes, m.flushes);
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.worker.unref();
      if (m.error) p.reject(m.error.name === 'MailError' && m.error.code ? new MailError(m.error.code as MailErrorCode, m.error.message) : new Error(m.error.message));
      else p.resolve(m.result);
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`database writer thread exited (${code})`)));
    this.worker.unref();
  }

  private fail(err: unknown): void {
    // A temporary failure for the client (SMTP 451, IMAP NO [UNAVAILABLE]): nothing was acknowledged.
    this.dead ??= new MailError('TEMP_FAILURE', `the database writer thread stopped (${(err as Error).message}); restart postern`);
    for (const p of this.pending.values()) p.reject(this.dead);
    this.pending.clear();
    this.worker.unref();
  }

  private call(msg: object): Promise<unknown> {
    const id = ++this.seq;
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      // Keep the process alive only while a commit is outstanding.
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...msg });
    });
  }

  addMessages(batch: NewMessage[]): Promise<AddedMessage[][]> {
    return this.call({ batch }) as Promise<AddedMessage[][]>;
  }

  storeFlags(mailboxId: number, uids: number[], mode: StoreMode, flags: string[], unchangedSince?: number): Promise<{ result: StoreFlagsResult; view: ViewAdvance }> {
    return this.call({ store: { mailboxId, uids, mode, flags, unchangedSince } }) as Promise<{ result: StoreFlagsResult; view: ViewAdvance }>;
  }

  expunge(mailboxId: number, uids: number[] | null, seen: ExpungeCandidates | null): Promise<{ result: ExpungeResult; view: ViewAdvance }> {
    return this.call({ expunge: { mailboxId, uids, seen } }) as Promise<{ result: ExpungeResult; view: ViewAdvance }>;
  }

  async close(): Promise<void> {
    if (this.dead) return;
    await this.call({ close: true }).catch(() => undefined);
    await this.worker.terminate();
  }
}
