import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { ChunkBlobWriter, readChunks, type ChunkStore } from './blob-chunks.ts';

/**
 * The message bytes, content-addressed by SHA-256 (one copy for many recipients).
 * Small messages (store.inline_max_size) are handed back to be stored in the
 * database row with the delivery. Larger ones are files, data_dir/blobs/ab/<sha256>
 * — or, with a ChunkStore (PostgreSQL: nodes share no filesystem), database chunks.
 *
 * A blob is written to a temp file, fsynced, renamed into place and its directory
 * fsynced before `finish()` resolves: the rows that point at it are committed only
 * after that, so no acknowledged message can point at a missing or torn file.
 */
export interface StoredBlob {
  hash: string;
  size: number;
  /** Set for a small message kept inline: the caller stores it with the rows. */
  data?: Buffer;
}

export interface BlobStoreOptions {
  /** Messages up to this size are returned to be stored inline, not written as files (0: never). */
  inlineMaxSize?: number;
  /** Reads an inline message back (from the data store); null if the hash is a file. */
  loadInline?: (hash: string) => Promise<Buffer | null>;
  /** Large messages go to the database in chunks instead of files. */
  chunks?: ChunkStore;
}

/** What ingest writes a message into: a file writer or a database chunk writer. */
export interface BlobSink {
  readonly size: number;
  write(chunk: Buffer): void;
  drained(): Promise<void>;
  finish(): Promise<StoredBlob>;
  abort(): Promise<void>;
}

const FLUSH_AT = 256 * 1024;

const fsyncFd = promisify(fs.fsync);
const openFd = promisify(fs.open);
const closeFd = promisify(fs.close);
const writeFd = (fd: number, buf: Buffer): Promise<number> =>
  new Promise((resolve, reject) => fs.write(fd, buf, (err, n) => (err ? reject(err) : resolve(n))));

export class BlobStore {
  readonly root: string;
  private tmpDir: string;
  private chunks: ChunkStore | null;
  private seq = 0;
  /** Fan-out directories known to exist, with an open fd for fsyncing them. */
  private dirs = new Map<string, DirSync>();

  readonly inlineMaxSize: number;
  private loadInline: (hash: string) => Promise<Buffer | null>;

  constructor(dataDir: string, opts: BlobStoreOptions = {}) {
    this.inlineMaxSize = opts.inlineMaxSize ?? 0;
    this.loadInline = opts.loadInline ?? (async () => null);
    this.chunks = opts.chunks ?? null;
    this.root = path.join(dataDir, 'blobs');
    this.tmpDir = path.join(dataDir, 'tmp');
    if (this.chunks) return; // no files at all
    fs.mkdirSync(this.tmpDir, { recursive: true, mode: 0o750 });
    fs.mkdirSync(this.root, { recursive: true, mode: 0o750 });
    // Leftovers of writes interrupted by a crash were never acknowledged.
    for (const f of fs.readdirSync(this.tmpDir)) fs.rmSync(path.join(this.tmpDir, f), { force: true });
  }

  pathOf(hash: string): string {
    return path.join(this.root, hash.slice(0, 2), hash);
  }

  writer(): BlobSink {
    if (this.chunks) return new ChunkBlobWriter(this.chunks, this.inlineMaxSize);
    return new BlobWriter(this, path.join(this.tmpDir, `${process.pid}.${Date.now()}.${++this.seq}`));
  }

  /** A stream of the message bytes [start, end), inline or from its file. */
  read(hash: string, start?: number, end?: number): Readable {
    const out = new PassThrough();
    this.loadInline(hash).then(
      (data) => {
        if (data) out.end(data.subarray(start ?? 0, end ?? data.length));
        else if (this.chunks) pipeline(readChunks(this.chunks, hash, start, end), out).catch((e) => out.destroy(e as Error));
        else pipeline(fs.createReadStream(this.pathOf(hash), { start, end: end === undefined ? undefined : end - 1 }), out).catch((e) => out.destroy(e as Error));
      },
      (err) => out.destroy(err as Error),
    );
    return out;
  }

  async readAll(hash: string): Promise<Buffer> {
    const inline = await this.loadInline(hash);
    if (inline) return inline;
    if (!this.chunks) return fsp.readFile(this.pathOf(hash));
    const parts: Buffer[] = [];
    for await (const c of readChunks(this.chunks, hash)) parts.push(c as Buffer);
    return Buffer.concat(parts);
  }

  async exists(hash: string): Promise<boolean> {
    if (await this.loadInline(hash)) return true;
    if (this.chunks) return (await this.chunks.chunk(hash, 0)) !== null;
    try {
      await fsp.access(this.pathOf(hash));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Moves a fsynced temp file to its final name and makes the rename durable
   * (fsync of the directory, POSIX rename(2) is not durable by itself).
   */
  async install(tmpPath: string, hash: string): Promise<void> {
    const dir = path.dirname(this.pathOf(hash));
    let d = this.dirs.get(dir);
    if (!d) {
      const created = await fsp.mkdir(dir, { recursive: true, mode: 0o750 });
      // A new fan-out directory must itself be durable in blobs/.
      if (created) await fsyncDir(this.root);
      d = this.dirs.get(dir) ?? new DirSync(await openFd(dir, 'r'));
      this.dirs.set(dir, d);
    }
    await fsp.rename(tmpPath, this.pathOf(hash));
    await d.sync();
  }

  close(): void {
    for (const d of this.dirs.values()) fs.closeSync(d.fd);
    this.dirs.clear();
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await openFd(dir, 'r');
  try {
    await fsyncFd(fd);
  } finally {
    await closeFd(fd);
  }
}

/**
 * Coalesces directory fsyncs: one fsync covers every rename done before it
 * started, so concurrent deliveries into one directory share a flush (at most
 * one in flight and one queued behind it).
 */
class DirSync {
  private inFlight: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  constructor(readonly fd: number) {}

  sync(): Promise<void> {
    if (!this.inFlight) return this.start();
    // The running fsync may have started before our rename: wait for the next one.
    this.next ??= this.inFlight.catch(() => undefined).then(() => {
      this.next = null;
      return this.start();
    });
    return this.next;
  }

  private start(): Promise<void> {
    const p = fsyncFd(this.fd).finally(() => {
      if (this.inFlight === p) this.inFlight = null;
    });
    this.inFlight = p;
    return p;
  }
}

export class BlobWriter implements BlobSink {
  private hash = crypto.createHash('sha256');
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private fd: fsp.FileHandle | null = null;
  /** Set synchronously by flush(): the file exists or is being opened (fd is set later, asynchronously). */
  private flushed = false;
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
    this.flushed = true;
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
    if (!this.flushed && this.size <= this.store.inlineMaxSize) {
      // Small message: its bytes go into the same transaction as its rows, made
      // durable by the group commit's one fsync instead of a file + directory fsync.
      const data = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      return { hash, size: this.size, data };
    }
    if (!this.flushed) {
      // Whole message in memory (the common case): open, write, fsync, close.
      const data = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      const fd = await openFd(this.tmpPath, 'wx', 0o640);
      try {
        let off = 0;
        while (off < data.length) off += await writeFd(fd, off === 0 ? data : data.subarray(off));
        await fsyncFd(fd);
      } catch (err) {
        await closeFd(fd).catch(() => undefined);
        await fsp.rm(this.tmpPath, { force: true });
        throw err;
      }
      await closeFd(fd);
    } else {
      this.flush();
      await this.chain;
      if (this.failed) {
        await this.abort();
        throw this.failed;
      }
      const fh = this.fd!;
      this.fd = null;
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    // Identical content may already be there: rename replaces it with the same bytes.
    await this.store.install(this.tmpPath, hash);
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
