import net from 'node:net';
import tls from 'node:tls';

/** A reply read by raw(): untagged responses with literals as raw bytes. */
export interface RawReply {
  status: string;
  text: string;
  responses: Buffer[];
}

export interface ImapReply {
  /** OK, NO, BAD (or BYE when the server hung up). */
  status: string;
  /** The tagged line's text after the status. */
  text: string;
  /** Untagged and continuation lines before it; a literal's bytes are inlined after its "{n}" line. */
  lines: string[];
}

/**
 * A small IMAP client for protocol tests: one command at a time, literals in
 * responses read by their length (so a message body never ends a response early).
 */
export class ImapTestClient {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  private n = 0;
  closed = false;
  greeting = '';

  private constructor(public socket: net.Socket) {
    this.listen(socket);
  }

  private listen(socket: net.Socket): void {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** `localAddress`: a loopback source address (127.0.0.x), e.g. to be another client for the ban guard. */
  static async connect(port: number, opts: { tls?: boolean; host?: string; localAddress?: string } = {}): Promise<ImapTestClient> {
    const host = opts.host ?? '127.0.0.1';
    const plain = net.connect({ port, host, localAddress: opts.localAddress });
    await new Promise<void>((resolve, reject) => {
      plain.once('connect', () => resolve());
      plain.once('error', reject);
    });
    const socket = opts.tls ? tls.connect({ socket: plain, rejectUnauthorized: false }) : plain;
    if (opts.tls) {
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', () => resolve());
        socket.once('error', reject);
      });
    }
    const c = new ImapTestClient(socket);
    c.greeting = await c.line();
    return c;
  }

  /** Reads lines until one matches `re` (untagged pushes, IDLE): that line, the wait, and the lines skipped. */
  async waitFor(re: RegExp, timeoutMs = 3000): Promise<{ line: string; ms: number; skipped: string[] }> {
    const start = Date.now();
    const skipped: string[] = [];
    for (;;) {
      const left = timeoutMs - (Date.now() - start);
      if (left <= 0) throw new Error(`no line matching ${re} within ${timeoutMs} ms (got ${JSON.stringify(skipped)})`);
      const l = await this.line(left);
      if (re.test(l)) return { line: l, ms: Date.now() - start, skipped };
      skipped.push(l);
    }
  }

  /** The next line (without CRLF). */
  async line(timeoutMs = 10_000): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const i = this.buf.indexOf('\r\n');
      if (i >= 0) {
        const l = this.buf.subarray(0, i).toString('utf8');
        this.buf = this.buf.subarray(i + 2);
        return l;
      }
      if (this.closed) throw new Error('connection closed');
      if (Date.now() > end) throw new Error(`no line from the server within ${timeoutMs} ms (have: ${JSON.stringify(this.buf.toString().slice(0, 200))})`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  /** Exactly n bytes. */
  async bytes(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.closed) throw new Error('connection closed');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Reads responses until the tagged one. */
  async read(tag: string): Promise<ImapReply> {
    const lines: string[] = [];
    for (;;) {
      let l = await this.line();
      // Literals: "... {n}" then n bytes, and the line goes on after them.
      for (let m = /\{(\d+)\}$/.exec(l); m; m = /\{(\d+)\}$/.exec(l)) {
        const data = await this.bytes(Number(m[1]));
        l = `${l}\r\n${data.toString('utf8')}${await this.line()}`;
      }
      if (l.startsWith(`${tag} `)) {
        const [, st, text] = /^\S+ (\S+) ?(.*)$/.exec(l)!;
        return { status: st!, text: text!, lines };
      }
      lines.push(l);
      if (l.startsWith('* BYE') && this.closed) return { status: 'BYE', text: l, lines };
    }
  }

  /**
   * Sends a command and reads to the tagged reply keeping every untagged response
   * binary-safe: literals as raw bytes (for byte-exact FETCH checks).
   */
  async raw(command: string): Promise<RawReply> {
    const tag = this.nextTag();
    this.write(`${tag} ${command}\r\n`);
    const responses: Buffer[] = [];
    for (;;) {
      const parts: Buffer[] = [];
      let l = await this.line();
      for (;;) {
        parts.push(Buffer.from(l, 'utf8'));
        const m = /~?\{(\d+)\}$/.exec(l);
        if (!m) break;
        parts.push(Buffer.from('\r\n'), await this.bytes(Number(m[1])));
        l = await this.line();
      }
      const buf = Buffer.concat(parts);
      const s = buf.toString('latin1');
      if (s.startsWith(`${tag} `)) {
        const [, st, text] = /^\S+ (\S+) ?(.*)$/s.exec(s)!;
        return { status: st!, text: text!, responses };
      }
      responses.push(buf);
    }
  }

  /** Sends "tag command" and reads to the tagged reply. */
  async command(cmd: string): Promise<ImapReply> {
    const tag = `A${++this.n}`;
    this.write(`${tag} ${cmd}\r\n`);
    return this.read(tag);
  }

  nextTag(): string {
    return `A${++this.n}`;
  }

  async startTls(): Promise<void> {
    const r = await this.command('STARTTLS');
    if (r.status !== 'OK') throw new Error(`STARTTLS: ${r.status} ${r.text}`);
    this.socket.removeAllListeners('data');
    const secure = tls.connect({ socket: this.socket, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.socket = secure;
    this.buf = Buffer.alloc(0);
    this.listen(secure);
  }

  async login(user = 'alice@example.test', pass = 'secret'): Promise<ImapReply> {
    return this.command(`LOGIN "${user}" "${pass}"`);
  }

  close(): void {
    this.socket.destroy();
  }
}
