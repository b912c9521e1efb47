/**
 * Collects the header section at the start of a message (CRLF line endings) so that
 * submission can check From and complete missing fields before any byte is stored.
 * Bounded: past `max` bytes without the blank line, what was collected is treated as
 * the header section.
 */
export class HeaderSection {
  private buf: Buffer = Buffer.alloc(0);
  done = false;

  constructor(private readonly max = 256 * 1024) {}

  /** Null while still collecting; then the header (ending in CRLF, or empty) and what followed it. */
  push(chunk: Buffer): { header: Buffer; rest: Buffer } | null {
    const from = Math.max(0, this.buf.length - 3);
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (this.buf.length >= 2 && this.buf[0] === 0x0d && this.buf[1] === 0x0a) return this.split(0);
    const end = this.buf.indexOf('\r\n\r\n', from, 'latin1');
    if (end >= 0) return this.split(end + 2);
    if (this.buf.length > this.max) return this.split(this.buf.length);
    return null;
  }

  /** At the end of the message: everything collected is the header section. */
  finish(): { header: Buffer; rest: Buffer } {
    return this.split(this.buf.length);
  }

  private split(at: number): { header: Buffer; rest: Buffer } {
    this.done = true;
    const r = { header: this.buf.subarray(0, at), rest: this.buf.subarray(at) };
    this.buf = Buffer.alloc(0);
    return r;
  }
}

/** Header fields by lower-case name, unfolded (RFC 5322 §2.2.3). */
export function headerFields(header: Buffer): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  for (const line of header.toString('utf8').split(/\r\n(?![ \t])/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).replace(/\r\n/g, '').trim();
    fields.set(name, [...(fields.get(name) ?? []), value]);
  }
  return fields;
}
