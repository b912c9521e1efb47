import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';

let seq = 0;

/**
 * A message held back during DATA until the content checks decided (issue #9): their
 * Authentication-Results and X-Spam headers go in front of it, and a tagged Subject changes
 * it, so nothing can be written to the store before. Up to `memoryLimit` bytes stay in memory;
 * a larger message spills to a file in data_dir/tmp (removed by `discard`, and at start like
 * every temporary file there), so memory per connection stays bounded whatever the size.
 * Nothing here is acknowledged: the store's own fsync comes later, before the 250.
 */
export class HeldMessage {
  private chunks: Buffer[] = [];
  private bytes = 0;
  private file: fs.WriteStream | null = null;
  private filePath: string | null = null;

  constructor(
    private readonly tmpDir: string,
    private readonly memoryLimit: number,
  ) {}

  get size(): number {
    return this.bytes;
  }

  async write(chunk: Buffer): Promise<void> {
    if (!chunk.length) return;
    this.bytes += chunk.length;
    if (!this.file && this.bytes <= this.memoryLimit) {
      this.chunks.push(chunk);
      return;
    }
    if (!this.file) {
      // data_dir/tmp exists with file blobs; with blobs in PostgreSQL it may not yet.
      await fsp.mkdir(this.tmpDir, { recursive: true, mode: 0o750 });
      this.filePath = path.join(this.tmpDir, `held.${process.pid}.${Date.now()}.${++seq}`);
      this.file = fs.createWriteStream(this.filePath, { flags: 'wx', mode: 0o640 });
      const held = Buffer.concat(this.chunks);
      this.chunks = [];
      if (!this.file.write(held)) await drained(this.file);
    }
    if (!this.file.write(chunk)) await drained(this.file);
  }

  /** The whole message in memory, or null when it spilled to a file (too large to hold). */
  buffer(): Buffer | null {
    return this.file ? null : Buffer.concat(this.chunks);
  }

  /** Call once every byte was written: flushes the spill file. */
  async end(): Promise<void> {
    const f = this.file;
    if (f && !f.writableFinished) await new Promise<void>((resolve, reject) => f.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }

  /** The message from byte `start` on (each call a new stream). */
  stream(start = 0): Readable {
    if (this.filePath) return fs.createReadStream(this.filePath, { start, highWaterMark: 256 * 1024 });
    const all = Buffer.concat(this.chunks).subarray(start);
    return Readable.from(all.length ? [all] : []);
  }

  async discard(): Promise<void> {
    this.chunks = [];
    const f = this.file;
    this.file = null;
    if (f && !f.closed) await new Promise<void>((resolve) => f.destroy() && f.once('close', () => resolve()));
    if (this.filePath) await fsp.rm(this.filePath, { force: true });
    this.filePath = null;
  }
}

function drained(w: fs.WriteStream): Promise<void> {
  return new Promise((resolve, reject) => {
    const onErr = (e: Error) => {
      w.off('drain', onDrain);
      reject(e);
    };
    const onDrain = () => {
      w.off('error', onErr);
      resolve();
    };
    w.once('drain', onDrain);
    w.once('error', onErr);
  });
}

/** At start: held files a crash left behind (nothing in them was acknowledged). */
export function removeStaleHeldFiles(tmpDir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(tmpDir);
  } catch {
    return; // no tmp dir: nothing was ever held
  }
  for (const n of names) if (n.startsWith('held.')) fs.rmSync(path.join(tmpDir, n), { force: true });
}
