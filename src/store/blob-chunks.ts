import crypto from 'node:crypto';
import { Readable } from 'node:stream';
import type { StoredBlob } from './blob-store.ts';

/**
 * Where large messages go when blobs live in the database (PostgreSQL: nodes share
 * no filesystem). Implemented by DataStore over the blob_chunks table.
 */
export interface ChunkStore {
  putChunk(key: string, seq: number, data: Buffer): Promise<void>;
  /** Moves the chunks written under a temporary key to the content hash (or drops them if that hash is stored already). */
  installChunks(tmpKey: string, hash: string): Promise<void>;
  deleteChunks(key: string): Promise<void>;
  chunk(hash: string, seq: number): Promise<Buffer | null>;
}

/** Fixed piece size: the piece holding byte N is N / CHUNK_SIZE, so ranges read only what they need. */
export const CHUNK_SIZE = 256 * 1024;

/**
 * Writes a message as it arrives, CHUNK_SIZE bytes per row under "tmp:<random>";
 * at the end the rows move to the message's SHA-256. Each insert is its own
 * committed statement, so memory stays at one chunk whatever the message size; a
 * crash leaves only tmp rows, which nothing references (removed at start).
 */
export class ChunkBlobWriter {
  private hash = crypto.createHash('sha256');
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private seq = 0;
  private chain: Promise<void> = Promise.resolve();
  private failed: Error | null = null;
  private readonly key = `tmp:${crypto.randomUUID()}`;
  size = 0;

  constructor(
    private chunks: ChunkStore,
    private inlineMaxSize: number,
  ) {}

  write(chunk: Buffer): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    while (this.pendingBytes >= CHUNK_SIZE) this.flush(CHUNK_SIZE);
  }

  drained(): Promise<void> {
    return this.chain;
  }

  private flush(n: number): void {
    const all = Buffer.concat(this.pending, this.pendingBytes);
    const piece = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length ? [rest] : [];
    this.pendingBytes = rest.length;
    const seq = this.seq++;
    this.chain = this.chain.then(async () => {
      if (this.failed) return;
      try {
        await this.chunks.putChunk(this.key, seq, Buffer.from(piece));
      } catch (err) {
        this.failed = err as Error;
      }
    });
  }

  async finish(): Promise<StoredBlob> {
    const hash = this.hash.digest('hex');
    if (this.seq === 0 && this.size <= this.inlineMaxSize) {
      const data = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      return { hash, size: this.size, data };
    }
    if (this.pendingBytes || this.seq === 0) this.flush(this.pendingBytes);
    await this.chain;
    if (this.failed) {
      await this.abort();
      throw this.failed;
    }
    await this.chunks.installChunks(this.key, hash);
    return { hash, size: this.size };
  }

  async abort(): Promise<void> {
    this.pending = [];
    await this.chain.catch(() => undefined);
    if (this.seq > 0) await this.chunks.deleteChunks(this.key).catch(() => undefined);
  }
}

/** Streams bytes [start, end) of a chunked message, one chunk in memory at a time. */
export function readChunks(chunks: ChunkStore, hash: string, start = 0, end = Infinity): Readable {
  let seq = Math.floor(start / CHUNK_SIZE);
  let offset = seq * CHUNK_SIZE;
  return new Readable({
    async read() {
      try {
        if (offset >= end) return void this.push(null);
        const data = await chunks.chunk(hash, seq);
        if (!data) {
          if (seq === 0) this.destroy(Object.assign(new Error(`ENOENT: no stored message ${hash}`), { code: 'ENOENT' }));
          else this.push(null);
          return;
        }
        const from = Math.max(0, start - offset);
        const to = Math.min(data.length, end - offset);
        offset += data.length;
        seq++;
        this.push(data.subarray(from, to));
        if (data.length < CHUNK_SIZE) this.push(null);
      } catch (err) {
        this.destroy(err as Error);
      }
    },
  });
}
