/**
 * Group commit: requests that arrive while a commit is running are collected and
 * committed together in the next one, so N concurrent deliveries share one
 * transaction (one fsync) instead of paying N. Nothing resolves before its commit.
 *
 * `maxInFlight` commits may be outstanding at once. One (the default) suits a backend
 * that commits on this thread or on a pool. The SQLite writer thread groups what it
 * receives into shared flushes itself and commits in arrival order, so there a batch
 * goes as soon as it is collected: waiting for the previous batch's answer first
 * (a whole round trip to the thread and its fdatasync) doubled an APPEND's latency.
 */
export class GroupCommitter<T, R> {
  private queue: Array<{ item: T; resolve: (r: R) => void; reject: (e: unknown) => void }> = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly commit: (items: T[]) => Promise<R[]>,
    private readonly maxBatch = 256,
    private readonly maxInFlight = 1,
  ) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || !this.queue.length) return;
    this.scheduled = true;
    // Let pending I/O callbacks run first (setImmediate comes after the poll phase):
    // deliveries whose blobs just finished join this batch. Without it a synchronous
    // commit would always find a batch of one.
    setImmediate(() => {
      this.scheduled = false;
      const batch = this.queue.splice(0, this.maxBatch);
      if (!batch.length) return;
      this.inFlight++;
      void this.run(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
      this.pump();
    });
  }

  private async run(batch: Array<{ item: T; resolve: (r: R) => void; reject: (e: unknown) => void }>): Promise<void> {
    try {
      const results = await this.commit(batch.map((b) => b.item));
      batch.forEach((b, i) => b.resolve(results[i] as R));
    } catch (err) {
      if (batch.length === 1) {
        batch[0]!.reject(err);
        return;
      }
      // One bad item must not fail its neighbours: retry each on its own.
      for (const b of batch) {
        try {
          const [r] = await this.commit([b.item]);
          b.resolve(r as R);
        } catch (e) {
          b.reject(e);
        }
      }
    }
  }
}
