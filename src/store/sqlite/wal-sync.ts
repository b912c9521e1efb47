import fs from 'node:fs';

/**
 * Group commit for the main thread's SQLite connection. That connection commits
 * with synchronous=NORMAL — in WAL mode the commit's frames are written to the
 * -wal file but not flushed — and the caller is answered only after this class
 * has fdatasync'ed the -wal file from libuv's thread pool. Once the WAL is on
 * disk the commit survives a crash (SQLite's recovery replays every WAL frame
 * up to the last valid commit record), so the guarantee is that of
 * synchronous=FULL, but:
 *  - the event loop never waits on the disk (a FULL COMMIT blocked every
 *    session for the whole fsync: 5 ms × each IMAP STORE/EXPUNGE);
 *  - one flush covers every commit written before it started, so sessions
 *    committing at the same time share it.
 * A sync that starts after a commit was written covers it; a commit that lands
 * while a flush runs waits for the next one (at most one is queued).
 */
export class WalSync {
  private fd: number | null = null;
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  /** Flushes done (for tests and the benchmark notes). */
  flushes = 0;

  constructor(private readonly walFile: string) {}

  /** Resolves once every commit written before this call is on disk. */
  sync(): Promise<void> {
    if (!this.running) return this.start();
    const after = () => {
      this.queued = null;
      return this.start();
    };
    return (this.queued ??= this.running.then(after, after));
  }

  private start(): Promise<void> {
    const p = new Promise<void>((resolve, reject) => {
      let fd: number;
      try {
        // Opened lazily: the -wal file exists once the first commit is written, and
        // SQLite keeps it (same inode) while any connection is open.
        fd = this.fd ??= fs.openSync(this.walFile, 'r');
      } catch (err) {
        reject(err);
        return;
      }
      fs.fdatasync(fd, (err) => {
        if (err) reject(err);
        else {
          this.flushes++;
          resolve();
        }
      });
    });
    this.running = p;
    const done = () => {
      if (this.running === p) this.running = null;
    };
    p.then(done, done);
    return p;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}
