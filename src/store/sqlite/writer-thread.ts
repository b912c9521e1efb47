import { Worker } from 'node:worker_threads';
import type { AddedMessage, NewMessage } from '../data-store.ts';
import { MailError, type MailErrorCode } from '../../core/errors.ts';

/** Client side of writer-worker.ts: same addMessages contract, answered by the commit thread. */
export class SqliteWriterThread {
  private worker: Worker;
  private seq = 0;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  /** Set once the thread is gone: every later commit fails at once (a 451 to the client) instead of hanging. */
  private dead: unknown = null;

  constructor(file: string) {
    // The boot file registers tsx in the worker, then loads writer-worker.ts.
    this.worker = new Worker(new URL('./writer-worker-boot.mjs', import.meta.url), { workerData: { file } });
    this.worker.on('message', (m: { id: number; result?: unknown; error?: { message: string; code: string | null; name: string } }) => {
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
    this.dead ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.worker.unref();
  }

  private call(msg: { batch?: NewMessage[]; close?: boolean }): Promise<unknown> {
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

  async close(): Promise<void> {
    if (this.dead) return;
    await this.call({ close: true }).catch(() => undefined);
    await this.worker.terminate();
  }
}
