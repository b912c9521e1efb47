import net from 'node:net';
import tls from 'node:tls';

/** One SMTP/LMTP reply: code, RFC 3463 enhanced code (if any), text lines without the code. */
export interface Reply {
  code: number;
  enhanced: string | null;
  lines: string[];
  text: string;
}

/**
 * Our own SMTP/LMTP protocol test client: raw bytes over real sockets, replies
 * parsed from a buffer so pipelined and split replies are read correctly.
 */
export class SmtpTestClient {
  greeting!: Reply;
  private socket: net.Socket;
  private buf = '';
  private waiters: Array<() => void> = [];
  private ended = false;
  private ehloDone = false;
  private timeoutMs: number;

  private constructor(socket: net.Socket, timeoutMs: number) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    this.attach(socket);
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', () => {
      this.ended = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static async connect(opts: { port: number; host?: string; path?: string; tls?: boolean; timeoutMs?: number }): Promise<SmtpTestClient> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = opts.path
        ? net.connect(opts.path)
        : opts.tls
          ? tls.connect({ port: opts.port, host: opts.host ?? '127.0.0.1', rejectUnauthorized: false })
          : net.connect(opts.port, opts.host ?? '127.0.0.1');
      s.once(opts.tls ? 'secureConnect' : 'connect', () => resolve(s));
      s.once('error', reject);
    });
    const c = new SmtpTestClient(socket, opts.timeoutMs ?? 10_000);
    c.greeting = await c.readReply();
    return c;
  }

  /** Takes one complete reply out of the buffer, or null. */
  private take(): Reply | null {
    const lines: string[] = [];
    let pos = 0;
    for (;;) {
      const nl = this.buf.indexOf('\n', pos);
      if (nl < 0) return null;
      const line = this.buf.slice(pos, nl).replace(/\r$/, '');
      pos = nl + 1;
      lines.push(line);
      if (!/^\d{3}-/.test(line)) break;
    }
    this.buf = this.buf.slice(pos);
    const code = Number(lines[0]!.slice(0, 3));
    let enhanced: string | null = null;
    const texts = lines.map((l) => {
      let t = l.slice(4);
      const m = /^([245]\.\d{1,3}\.\d{1,3}) /.exec(t);
      if (m) {
        enhanced ??= m[1]!;
        t = t.slice(m[0].length);
      }
      return t;
    });
    return { code, enhanced, lines: texts, text: texts.join('\n') };
  }

  async readReply(): Promise<Reply> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const r = this.take();
      if (r) return r;
      if (this.ended) throw new Error(`connection closed while waiting for a reply (buffer: ${JSON.stringify(this.buf)})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a reply (buffer: ${JSON.stringify(this.buf)})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  send(line: string): void {
    this.socket.write(Buffer.from(line + '\r\n', 'utf8'));
  }

  sendRaw(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }

  async command(line: string): Promise<Reply> {
    this.send(line);
    const r = await this.readReply();
    if (/^(EHLO|LHLO|HELO) /i.test(line) && r.code === 250) this.ehloDone = true;
    return r;
  }

  async startTls(): Promise<Reply> {
    const r = await this.command('STARTTLS');
    if (r.code !== 220) return r;
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    this.socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: plain, rejectUnauthorized: false }, () => resolve(s));
      s.once('error', reject);
    });
    this.attach(this.socket);
    this.ehloDone = false;
    return r;
  }

  /** Dot-stuffs the message and ends it with CRLF.CRLF (RFC 5321 §4.5.2). */
  static stuff(message: string | Buffer): Buffer {
    let s = typeof message === 'string' ? Buffer.from(message, 'utf8').toString('latin1') : message.toString('latin1');
    s = s.replace(/(^|\r\n)\./g, '$1..');
    if (!s.endsWith('\r\n')) s += '\r\n';
    return Buffer.from(s + '.\r\n', 'latin1');
  }

  async data(message: string | Buffer): Promise<Reply> {
    const r = await this.command('DATA');
    if (r.code !== 354) return r;
    this.sendRaw(SmtpTestClient.stuff(message));
    return this.readReply();
  }

  async dataLmtp(message: string | Buffer, rcptCount: number): Promise<Reply[]> {
    const r = await this.command('DATA');
    if (r.code !== 354) return [r];
    this.sendRaw(SmtpTestClient.stuff(message));
    const out: Reply[] = [];
    for (let i = 0; i < rcptCount; i++) out.push(await this.readReply());
    return out;
  }

  async sendMail(o: { from: string; to: string[]; message: string | Buffer; ehlo?: string }): Promise<{ mail: Reply; rcpts: Reply[]; data: Reply | null }> {
    if (!this.ehloDone) await this.command(`EHLO ${o.ehlo ?? 'client.test'}`);
    const mail = await this.command(`MAIL FROM:<${o.from}>`);
    const rcpts: Reply[] = [];
    for (const t of o.to) rcpts.push(await this.command(`RCPT TO:<${t}>`));
    if (mail.code !== 250 || !rcpts.some((r) => r.code === 250)) {
      await this.command('RSET');
      return { mail, rcpts, data: null };
    }
    return { mail, rcpts, data: await this.data(o.message) };
  }

  closed(): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  async quit(): Promise<void> {
    try {
      await this.command('QUIT');
    } catch {
      /* already closed */
    }
    this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
