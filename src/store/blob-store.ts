import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';

/**
 * Content-addressed message files: data_dir/blobs/ab/<sha256>. Identical messages
 * (one message to many recipients) share one file.
 *
 * A blob is written to a temp file, fsynced, renamed into place and its directory
 * fsynced before `finish()` resolves: the rows that point at it are committed only
 * after that, so no acknowledged message can point at a missing or torn file.
 */
export interface StoredBlob {
  hash: string;
  size: number;
}

const FLUSH_AT = 256 * 1024;

export class BlobStore {
  readonly root: string;
  private tmpDir: string;
  private seq = 0;

  constructor(dataDir: string) {
    this.root = path.join(dataDir, 'blobs');
    this.tmpDir = path.join(dataDir, 'tmp');
    fs.mkdirSync(this.tmpDir, { recursive: true, mode: 0o750 });
    // Leftovers of writes interrupted by a crash were never acknowledged.
    for (const f of fs.readdirSync(this.tmpDir)) fs.rmSync(path.join(this.tmpDir, f), { force: true });
  }

  pathOf(hash: string): string {
    return path.join(this.root, hash.slice(0, 2), hash);
  }

  writer(): BlobWriter {
    return new BlobWriter(this, path.join(this.tmpDir, `${process.pid}.${Date.now()}.${++this.seq}`));
  }

  async put(data: Buffer): Promise<StoredBlob> {
    const w = this.writer();
    w.write(data);
    return w.finish();
  }

  read(hash: string, start?: number, end?: number): Readable {
    return fs.createReadStream(this.pathOf(hash), { start, end: end === undefined ? undefined : end - 1 });
  }

  async readAll(hash: string): Promise<Buffer> {
    return fsp.readFile(this.pathOf(hash));
  }

  async exists(hash: string): Promise<boolean> {
    try {
      await fsp.access(this.pathOf(hash));
      return true;
    } catch {
      return false;
    }
  }
}

export class BlobWriter {
  private hash = crypto.createHash('sha256');
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private fd: fsp.FileHandle | null = null;
  private chain: Promise<void> = Promise.resolve();
  private failed: Error | null = null;
  size = 0;

  constructor(
    private store: BlobStore,
    private tmpPath: string,
  ) {}

  /** Buffers up to 256 KiB, then writes in the background; never holds a whole large message. */
  write(chunk: Buffer): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= FLUSH_AT) this.flush();
  }

  /** Resolves when the buffered data has reached the file (for backpressure). */
  drained(): Promise<void> {
    return this.chain;
  }

  private flush(): void {
    const data = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.chain = this.chain.then(async () => {
      if (this.failed) return;
      try {
        if (!this.fd) this.fd = await fsp.open(this.tmpPath, 'wx', 0o640);
        await this.fd.write(data);
      } catch (err) {
        this.failed = err as Error;
      }
    });
  }

  async finish(): Promise<StoredBlob> {
    const hash = this.hash.digest('hex');
    const final = this.store.pathOf(hash);
    const dir = path.dirname(final);
    if (!this.fd && (await this.store.exists(hash))) {
      // Small message already stored (same content): nothing to write.
      this.pending = [];
      return { hash, size: this.size };
    }
    this.flush();
    await this.chain;
    if (this.failed) {
      await this.abort();
      throw this.failed;
    }
    const fd = this.fd ?? (await fsp.open(this.tmpPath, 'wx', 0o640));
    this.fd = null;
    try {
      await fd.sync();
    } finally {
      await fd.close();
    }
    await fsp.mkdir(dir, { recursive: true, mode: 0o750 });
    await fsp.rename(this.tmpPath, final);
    const dfd = await fsp.open(dir, 'r');
    try {
      await dfd.sync();
    } finally {
      await dfd.close();
    }
    return { hash, size: this.size };
  }

  async abort(): Promise<void> {
    this.pending = [];
    await this.chain.catch(() => undefined);
    if (this.fd) {
      await this.fd.close().catch(() => undefined);
      this.fd = null;
    }
    await fsp.rm(this.tmpPath, { force: true });
  }
}
