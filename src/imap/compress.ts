import { Duplex } from 'node:stream';
import zlib from 'node:zlib';

/**
 * COMPRESS=DEFLATE (RFC 4978) as a stream: wraps the connection (plain TCP or TLS)
 * in a Duplex that inflates what it reads and deflates what it writes, both raw
 * DEFLATE (RFC 1951, no zlib or gzip header; RFC 4978 §3).
 *
 * - Every write is followed, once per turn of the event loop, by a sync flush
 *   (Z_SYNC_FLUSH, RFC 4978 §4: "flush … so that the client can decode every
 *   response it was sent"), so a burst of small writes (a FETCH response in pieces)
 *   becomes one flush, and nothing sits in the compressor waiting for more.
 * - Backpressure both ways: the write side reports `writableNeedDrain` like a
 *   socket (compressor input is bounded by its own buffer and the connection's);
 *   the read side stops the inflater (and through its pipe the connection) while
 *   the reader of this stream is paused.
 * - Corrupt input (a client that does not compress, a decompression error) destroys
 *   the stream with the error; the connection goes with it.
 * - end() flushes the compressor and ends the connection; destroy() destroys all.
 */
export class DeflateStream extends Duplex {
  private readonly inflate = zlib.createInflateRaw();
  private readonly deflate = zlib.createDeflateRaw({ level: zlib.constants.Z_DEFAULT_COMPRESSION });
  private flushScheduled = false;

  constructor(private readonly raw: Duplex) {
    super({ allowHalfOpen: false });
    raw.pipe(this.inflate);
    this.deflate.pipe(raw);
    this.inflate.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) this.inflate.pause();
    });
    this.inflate.on('end', () => this.push(null));
    const fail = (err: Error) => this.destroy(err);
    this.inflate.on('error', fail);
    this.deflate.on('error', fail);
    raw.on('error', fail);
    raw.on('close', () => this.destroy());
  }

  override _read(): void {
    this.inflate.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const more = this.deflate.write(chunk);
    this.scheduleFlush();
    if (more) cb();
    else this.deflate.once('drain', () => cb());
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (!this.deflate.destroyed && !this.deflate.writableEnded) this.deflate.flush(zlib.constants.Z_SYNC_FLUSH);
    });
  }

  override _final(cb: (err?: Error | null) => void): void {
    // Ending the compressor finishes the DEFLATE stream; the pipe then ends the connection.
    this.deflate.end(() => cb());
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.inflate.destroy();
    this.deflate.destroy();
    this.raw.destroy();
    cb(err);
  }
}
