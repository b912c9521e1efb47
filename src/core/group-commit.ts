/**
 * Group commit: requests that arrive while a commit is running are collected and
 * committed together in the next one, so N concurrent deliveries share one
 * transaction (one fsync) instead of paying N. Nothing resolves before its commit.
 */
export class GroupCommitter<T, R> {
  private queue: Array<{ item: T; resolve: (r: R) => void; reject: (e: unknown) => void }> = [];
  private running = false;

  constructor(
    private readonly commit: (items: T[]) => Promise<R[]>,
    private readonly maxBatch = 256,
  ) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running) void this.run();
    });
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length) {
        // Let pending I/O callbacks run first (setImmediate comes after the poll
        // phase): deliveries whose blobs just finished join this batch. Without it a
        // synchronous commit would always find a batch of one.
        await new Promise<void>((r) => setImmediate(r));
        const batch = this.queue.splice(0, this.maxBatch);
        try {
          const results = await this.commit(batch.map((b) => b.item));
          batch.forEach((b, i) => b.resolve(results[i] as R));
        } catch (err) {
          if (batch.length === 1) {
            batch[0]!.reject(err);
            continue;
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
    } finally {
      this.running = false;
    }
  }
}
