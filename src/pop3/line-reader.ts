/**
 * Splits the client's bytes into lines (RFC 1939 §3: commands end with CRLF; a bare
 * LF is accepted too, as every widely used POP3 server does). Memory is bounded: a
 * line longer than `max` octets is reported once as 'too-long' as soon as it
 * crosses the limit, and the rest of it, up to its LF, is thrown away unread.
 */
export type LineEvent = { kind: 'line'; line: Buffer } | { kind: 'too-long' };

const EMPTY = Buffer.alloc(0);

export class LineReader {
  private buf: Buffer = EMPTY;
  private discarding = false;

  constructor(private max: number) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
  }

  /** Bytes received and not yet returned (STLS discards them: RFC 2595 §4, see net/starttls.ts). */
  get pending(): number {
    return this.buf.length;
  }

  next(): LineEvent | null {
    for (;;) {
      const i = this.buf.indexOf(10);
      if (this.discarding) {
        if (i < 0) {
          this.buf = EMPTY;
          return null;
        }
        this.buf = this.buf.subarray(i + 1);
        this.discarding = false;
        continue;
      }
      if (i < 0) {
        if (this.buf.length <= this.max) return null;
        this.buf = EMPTY;
        this.discarding = true;
        return { kind: 'too-long' };
      }
      const end = i > 0 && this.buf[i - 1] === 13 ? i - 1 : i;
      const line = this.buf.subarray(0, end);
      this.buf = i + 1 < this.buf.length ? this.buf.subarray(i + 1) : EMPTY;
      if (line.length > this.max) return { kind: 'too-long' };
      return { kind: 'line', line };
    }
  }
}
