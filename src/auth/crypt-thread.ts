import { Worker } from 'node:worker_threads';

export type CryptKind = 'sha-crypt' | 'bcrypt';

/**
 * Client of crypt-worker.mjs: one worker, started on first use and shared by all
 * callers; requests are matched to answers by id. The worker is unref'd while
 * idle so it never keeps the process alive, and ref'd while a verification is
 * outstanding so a CLI awaiting one does not exit under it (as writer-thread.ts).
 * If the worker dies, outstanding verifications fail (false) and the next call
 * starts a new one.
 */
export class CryptThread {
  private worker: Worker | null = null;
  private seq = 0;
  private readonly pending = new Map<number, (ok: boolean) => void>();

  verify(kind: CryptKind, hash: string, password: string): Promise<boolean> {
    const w = this.worker ?? this.start();
    const id = ++this.seq;
    return new Promise((resolve) => {
      if (this.pending.size === 0) w.ref();
      this.pending.set(id, resolve);
      w.postMessage({ id, kind, hash, password });
    });
  }

  private start(): Worker {
    // 64 MB heap is plenty: the worker holds one hash computation at a time.
    const w = new Worker(new URL('./crypt-worker.mjs', import.meta.url), { resourceLimits: { maxOldGenerationSizeMb: 64 } });
    w.on('message', (m: { id: number; ok: boolean }) => {
      const resolve = this.pending.get(m.id);
      if (!resolve) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) w.unref();
      resolve(m.ok === true);
    });
    w.on('error', () => this.down(w));
    w.on('exit', () => this.down(w));
    w.unref();
    this.worker = w;
    return w;
  }

  private down(w: Worker): void {
    if (this.worker !== w) return;
    this.worker = null;
    for (const resolve of this.pending.values()) resolve(false);
    this.pending.clear();
    w.unref();
  }
}
