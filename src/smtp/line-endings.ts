/**
 * Normalises a message body's line endings to CRLF, chunk by chunk: a bare LF
 * becomes CRLF, a bare CR becomes CRLF (RFC 5321 §2.3.8 forbids both; Postfix 3.9
 * normalises them). This runs on the DATA stream AFTER smtp-server has found the
 * end of data, which only CRLF.CRLF ends (smuggling defence, CVE-2023-51764), so
 * normalising here cannot create a new end-of-data or a second message.
 */
export class LineEndingNormalizer {
  private lastWasCR = false;

  push(chunk: Buffer): Buffer {
    if (chunk.length === 0) return chunk;
    if (this.wellFormed(chunk)) {
      this.lastWasCR = chunk[chunk.length - 1] === 13;
      return chunk;
    }
    let extra = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      const prevCR = i === 0 ? this.lastWasCR : chunk[i - 1] === 13;
      if ((c === 10) !== prevCR) extra++; // bare LF, or CR not followed by LF
    }
    const out = Buffer.allocUnsafe(chunk.length + extra);
    let o = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      const prevCR = i === 0 ? this.lastWasCR : chunk[i - 1] === 13;
      if (prevCR && c !== 10) out[o++] = 10; // bare CR: complete it
      if (c === 10 && !prevCR) out[o++] = 13; // bare LF: add the CR
      out[o++] = c;
    }
    this.lastWasCR = chunk[chunk.length - 1] === 13;
    return out.subarray(0, o);
  }

  /**
   * The common case, checked with indexOf (native) instead of a JS loop over every
   * byte: each LF has a CR before it and each CR an LF after it.
   */
  private wellFormed(chunk: Buffer): boolean {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) {
      if (i === 0 ? !this.lastWasCR : chunk[i - 1] !== 13) return false;
    }
    if (this.lastWasCR && chunk[0] !== 10) return false;
    for (let i = chunk.indexOf(13); i !== -1; i = chunk.indexOf(13, i + 1)) {
      // A CR at the very end is completed (or not) by the next chunk.
      if (i + 1 < chunk.length && chunk[i + 1] !== 10) return false;
    }
    return true;
  }

  /** Call at the end: a trailing bare CR gets its LF. */
  end(): Buffer {
    const tail = this.lastWasCR ? Buffer.from('\n') : Buffer.alloc(0);
    this.lastWasCR = false;
    return tail;
  }
}
