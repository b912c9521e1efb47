/**
 * RFC 1939 §3 multi-line responses, computed chunk by chunk as the message streams
 * from its blob (never the whole message in memory):
 * - every line is sent with CRLF (a bare LF in the stored bytes becomes CRLF);
 * - a line that starts with "." gets one more "." in front ("byte-stuffing");
 * - the response ends with CRLF "." CRLF, with the line end added first when the
 *   message does not end with one.
 * For TOP (RFC 1939 §7) the header section, the empty line after it and then exactly
 * `bodyLines` lines of the body are sent; `done` turns true once they are (the
 * caller stops reading the blob). A message without an empty line is all header.
 */
export class DotStuffer {
  /** At the start of a line (initially, and after every LF). */
  private lineStart = true;
  /** The last byte seen was a CR (for a CRLF split across two chunks). */
  private prevCR = false;
  private inHeader: boolean;
  /** The current line is the empty line ending the header section. */
  private emptyLine = false;
  /** Body lines still to send: Infinity for RETR. */
  private left: number;
  done = false;

  constructor(bodyLines: number | null = null) {
    this.left = bodyLines ?? Infinity;
    this.inHeader = bodyLines !== null;
  }

  /** Transforms one chunk of the stored message; returns the bytes to send (maybe empty). */
  push(chunk: Buffer): Buffer {
    if (this.done || !chunk.length) return EMPTY;
    const out: Buffer[] = [];
    let from = 0; // start of the run of `chunk` not yet copied to `out`
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.lineStart) {
        const c = chunk[i]!;
        // CR at the very end of a chunk at the start of a header line: taken as the empty line.
        if (this.inHeader && (c === 10 || (c === 13 && (i + 1 >= n || chunk[i + 1] === 10)))) this.emptyLine = true;
        else if (c === 46) {
          out.push(chunk.subarray(from, i), DOT);
          from = i;
        }
        this.lineStart = false;
      }
      const lf = chunk.indexOf(10, i);
      if (lf < 0) {
        this.prevCR = chunk[n - 1] === 13;
        i = n;
        break;
      }
      const hasCR = lf > 0 ? chunk[lf - 1] === 13 : this.prevCR;
      if (!hasCR) {
        out.push(chunk.subarray(from, lf), CRLF);
        from = lf + 1;
      }
      i = lf + 1;
      this.prevCR = false;
      this.lineStart = true;
      if (this.inHeader) {
        if (this.emptyLine) {
          this.inHeader = false;
          this.emptyLine = false;
          if (this.left === 0) this.done = true;
        }
      } else if (--this.left === 0) this.done = true;
      if (this.done) break;
    }
    if (from < i) out.push(chunk.subarray(from, i));
    if (out.length === 1) return out[0]!;
    return out.length ? Buffer.concat(out) : EMPTY;
  }

  /** The end of the response: the missing line end if any, then ".CRLF". */
  end(): Buffer {
    if (this.lineStart) return TERMINATOR;
    return this.prevCR ? LF_TERMINATOR : CRLF_TERMINATOR;
  }
}

const EMPTY = Buffer.alloc(0);
const DOT = Buffer.from('.');
const CRLF = Buffer.from('\r\n');
const TERMINATOR = Buffer.from('.\r\n');
const LF_TERMINATOR = Buffer.from('\n.\r\n');
const CRLF_TERMINATOR = Buffer.from('\r\n.\r\n');
