import { Worker } from 'node:worker_threads';
import type { AddedMessage, NewMessage } from '../data-store.ts';
import { MailError, type MailErrorCode } from '../../core/errors.ts';
import type { ExpungeResult, StoreFlagsResult, StoreMode } from '../imap-model.ts';
import type { ExpungeCandidates, ViewAdvance } from './imap-writer.ts';

/** One request's answer from the thread. */
export interface WriterAnswer {
  id: number;
  result?: unknown;
  error?: { message: string; code: string | null; name: string };
}

/** The answers the thread sends together (a turn's), with its flush count then. */
export interface WriterAnswers {
  answers: WriterAnswer[];
  flushes: number;
}

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
    this.worker.on('message', (m: WriterAnswers) => {
      this.flushes = Math.max(this.flushes, m.flushes);
      for (const a of m.answers) this.settle(a);
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`database writer thread exited (${code})`)));
    this.worker.unref();
  }

  private settle(a: WriterAnswer): void {
    const p = this.pending.get(a.id);
    if (!p) return;
    this.pending.delete(a.id);
    if (this.pending.size === 0) this.worker.unref();
    if (a.error) p.reject(a.error.name === 'MailError' && a.error.code ? new MailError(a.error.code as MailErrorCode, a.error.message) : new Error(a.error.message));
    else p.resolve(a.result);
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
      // Sent at once: holding a loop turn's requests to send them together (one wake-up
      // of the thread) was measured slower, the thread starting later on each.
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
