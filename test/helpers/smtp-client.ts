import net from 'node:net';
import tls from 'node:tls';

/**
 * One SMTP/LMTP reply (RFC 5321 §4.2). `lines` are the text parts of every line without the
 * three-digit code and separator, and without the RFC 3463 enhanced status code when the line
 * carries one; `text` is `lines` joined by '\n'. `enhanced` is the first line's enhanced code
 * ("5.1.1"), or null.
 */
export interface Reply {
  code: number;
  enhanced: string | null;
  lines: string[];
  text: string;
}

export interface ConnectOptions {
  /** TCP port (ignored when `path` is given). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Unix domain socket instead of TCP. */
  path?: string;
  /** Implicit TLS from the first byte (SMTPS, port 465 style); certificates are not verified. */
  tls?: boolean;
  /** Local address to connect from, e.g. "127.0.0.2" to be another client on loopback. */
  localAddress?: string;
  /** Applies to connecting, every readReply(), startTls() and closed(). Default 10000. */
  timeoutMs?: number;
}

type Waiter = { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };
type Item = { reply: Reply } | { error: Error };

const LF = 0x0a;
const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)/;

/** Shows received bytes in error messages, shortened. */
function preview(s: string, max = 300): string {
  return JSON.stringify(s.length > max ? s.slice(0, max) + '…' : s);
}

/**
 * Our own SMTP/LMTP protocol test client: raw bytes over real sockets (TCP, unix socket,
 * implicit TLS, STARTTLS). Incoming bytes are parsed incrementally into a queue of complete
 * replies, so replies split over several packets and several replies in one packet (pipelining)
 * are both read correctly, in order.
 */
export class SmtpTestClient {
  /** The server's greeting, read during connect() (may be a 421/554: connect() still resolves). */
  greeting!: Reply;
  /** Plaintext bytes the server sent after its 220 to STARTTLS and before the handshake (discarded). */
  leftoverBeforeTls = '';

  private socket: net.Socket;
  private readonly timeoutMs: number;
  private residual: Buffer = Buffer.alloc(0);
  private current: string[] = [];
  private queue: Item[] = [];
  private waiters: Waiter[] = [];
  private closeWaiters: Array<() => void> = [];
  private ended = false;
  private socketError: Error | null = null;
  private ehloDone = false;
  private readonly label: string;

  private constructor(socket: net.Socket, timeoutMs: number, label: string) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    this.label = label;
    this.attach(socket);
  }

  static async connect(opts: ConnectOptions): Promise<SmtpTestClient> {
    const host = opts.host ?? '127.0.0.1';
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const label = opts.path ?? `${host}:${opts.port}`;
    if (!opts.path && !opts.port) throw new Error('SmtpTestClient.connect: port or path required');
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      let s: net.Socket;
      if (opts.tls) {
        const common = { rejectUnauthorized: false, ...(net.isIP(host) ? {} : { servername: host }) };
        s = opts.path ? tls.connect({ path: opts.path, ...common }) : tls.connect({ port: opts.port!, host, ...common, ...(opts.localAddress ? ({ localAddress: opts.localAddress } as object) : {}) });
      } else {
        s = opts.path ? net.connect(opts.path) : net.connect({ port: opts.port!, host, localAddress: opts.localAddress });
      }
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect to ${label} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      s.once(opts.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        s.removeListener('error', onError);
        resolve(s);
      });
      const onError = (e: Error) => {
        clearTimeout(timer);
        reject(new Error(`connect to ${label} failed: ${e.message}`));
      };
      s.once('error', onError);
    });
    socket.setNoDelay(true);
    const c = new SmtpTestClient(socket, timeoutMs, label);
    try {
      c.greeting = await c.readReply();
    } catch (e) {
      c.destroy();
      throw new Error(`no greeting from ${label}: ${(e as Error).message}`);
    }
    return c;
  }

  // ---- incoming bytes -------------------------------------------------------------------------

  private attach(socket: net.Socket): void {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (e: Error) => {
      this.socketError ??= e;
    });
    socket.on('close', () => this.onClose());
  }

  private onData(d: Buffer): void {
    const buf = this.residual.length ? Buffer.concat([this.residual, d]) : d;
    let pos = 0;
    for (;;) {
      const nl = buf.indexOf(LF, pos);
      if (nl < 0) break;
      const end = nl > pos && buf[nl - 1] === 0x0d ? nl - 1 : nl;
      this.onLine(buf.toString('utf8', pos, end));
      pos = nl + 1;
    }
    this.residual = pos === 0 ? buf : pos < buf.length ? Buffer.from(buf.subarray(pos)) : Buffer.alloc(0);
    this.deliver();
  }

  private onLine(line: string): void {
    if (!/^\d{3}([ -]|$)/.test(line)) {
      this.current = [];
      this.queue.push({ error: new Error(`malformed reply line from ${this.label}: ${preview(line)}`) });
      return;
    }
    this.current.push(line);
    if (line[3] === '-') return; // continuation: "250-..."
    const raw = this.current;
    this.current = [];
    const code = Number(raw[0]!.slice(0, 3));
    const klass = raw[0]![0];
    let enhanced: string | null = null;
    const lines = raw.map((l, i) => {
      let t = l.slice(4);
      const m = ENHANCED.exec(t);
      if (m && m[1] === klass) {
        if (i === 0) enhanced = `${m[1]}.${m[2]}.${m[3]}`;
        t = t.slice(m[0].length);
      }
      return t;
    });
    this.queue.push({ reply: { code, enhanced, lines, text: lines.join('\n') } });
  }

  private deliver(): void {
    while (this.queue.length && this.waiters.length) {
      const item = this.queue.shift()!;
      const w = this.waiters.shift()!;
      clearTimeout(w.timer);
      if ('reply' in item) w.resolve(item.reply);
      else w.reject(item.error);
    }
  }

  private onClose(): void {
    this.ended = true;
    this.deliver();
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new Error(`connection to ${this.label} closed while waiting for a reply${this.pendingDescription()}`));
    }
    for (const f of this.closeWaiters.splice(0)) f();
  }

  private pendingDescription(): string {
    const parts: string[] = [];
    if (this.socketError) parts.push(`socket error: ${this.socketError.message}`);
    const partial = [...this.current, this.residual.toString('utf8')].filter(Boolean).join('\\r\\n');
    if (partial) parts.push(`unparsed bytes: ${preview(partial)}`);
    return parts.length ? ` (${parts.join('; ')})` : '';
  }

  // ---- API ------------------------------------------------------------------------------------

  /** Whether the connection is closed. */
  get isClosed(): boolean {
    return this.ended;
  }

  /** Replies already received but not yet read. */
  get bufferedReplies(): number {
    return this.queue.length;
  }

  /**
   * The next reply, in order. Several calls may be outstanding (pipelining). Rejects with a
   * descriptive error on timeout, on a malformed line or when the connection closes first.
   */
  readReply(timeoutMs = this.timeoutMs): Promise<Reply> {
    const item = this.waiters.length === 0 ? this.queue.shift() : undefined;
    if (item) return 'reply' in item ? Promise.resolve(item.reply) : Promise.reject(item.error);
    if (this.ended) return Promise.reject(new Error(`connection to ${this.label} is closed, no reply to read${this.pendingDescription()}`));
    return new Promise<Reply>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for a reply from ${this.label}${this.pendingDescription()}`));
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  /** Sends one command line; CRLF is appended. */
  send(line: string): void {
    this.socket.write(line + '\r\n', 'utf8');
  }

  /** Sends exactly these bytes (strings as UTF-8). */
  sendRaw(data: string | Buffer): void {
    if (typeof data === 'string') this.socket.write(data, 'utf8');
    else this.socket.write(data);
  }

  /** send() + readReply(). */
  async command(line: string): Promise<Reply> {
    this.send(line);
    const r = await this.readReply();
    if (/^(EHLO|LHLO|HELO)\b/i.test(line) && r.code === 250) this.ehloDone = true;
    return r;
  }

  /**
   * STARTTLS (RFC 3207); on 220 upgrades this connection to TLS (certificate not verified) and
   * resolves with the 220. Any other reply is returned as is and the connection stays plain.
   * Bytes the server sent in plaintext after the 220 are discarded (see leftoverBeforeTls), and
   * the EHLO state is reset: the client must EHLO again.
   */
  /**
   * STARTTLS and the handshake. `inject`: plaintext sent in the same packet right behind
   * "STARTTLS\r\n" (the CVE-2011-0411 command injection); a correct server discards it.
   */
  async startTls(opts: { servername?: string; inject?: string } = {}): Promise<Reply> {
    let r: Reply;
    if (opts.inject) {
      this.sendRaw(`STARTTLS\r\n${opts.inject}`);
      r = await this.readReply();
    } else r = await this.command('STARTTLS');
    if (r.code !== 220) return r;
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    plain.on('error', () => {});
    this.leftoverBeforeTls = [
      ...this.queue.map((i) => ('reply' in i ? `${i.reply.code} ${i.reply.text}` : i.error.message)),
      ...this.current,
      this.residual.toString('utf8'),
    ]
      .filter(Boolean)
      .join('\n');
    this.queue = [];
    this.current = [];
    this.residual = Buffer.alloc(0);
    this.ehloDone = false;
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: plain, rejectUnauthorized: false, ...(opts.servername ? { servername: opts.servername } : {}) });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`TLS handshake with ${this.label} timed out after ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      s.once('secureConnect', () => {
        clearTimeout(timer);
        s.removeListener('error', onError);
        resolve(s);
      });
      const onError = (e: Error) => {
        clearTimeout(timer);
        reject(new Error(`TLS handshake with ${this.label} failed: ${e.message}`));
      };
      s.once('error', onError);
    });
    this.socket = secure;
    this.attach(secure);
    return r;
  }

  /** The server's certificate (TLS only). */
  peerCertificate(): tls.PeerCertificate | null {
    return this.socket instanceof tls.TLSSocket ? this.socket.getPeerCertificate() : null;
  }

  /** Whether the connection is TLS (implicit or after STARTTLS). */
  get secure(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  /**
   * The DATA payload for a message: lines starting with "." get another "." (RFC 5321 §4.5.2;
   * a line starts at the beginning and after CRLF), CRLF is appended unless the message ends with
   * one, then ".\r\n". Line endings are not changed. An empty message becomes just ".\r\n".
   */
  static stuff(message: string | Buffer): Buffer {
    const b = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
    const parts: Buffer[] = [];
    let start = 0;
    if (b.length > 0 && b[0] === 0x2e) {
      parts.push(Buffer.from('.'));
    }
    let i = b.indexOf('\r\n.', 0, 'latin1');
    while (i >= 0) {
      parts.push(b.subarray(start, i + 2), Buffer.from('.'));
      start = i + 2;
      i = b.indexOf('\r\n.', start, 'latin1');
    }
    parts.push(b.subarray(start));
    const endsCrlf = b.length >= 2 && b[b.length - 2] === 0x0d && b[b.length - 1] === 0x0a;
    parts.push(Buffer.from(b.length === 0 || endsCrlf ? '.\r\n' : '\r\n.\r\n'));
    return Buffer.concat(parts);
  }

  /** DATA; on 354 sends the dot-stuffed message and its terminator and returns the final reply. */
  async data(message: string | Buffer): Promise<Reply> {
    const r = await this.command('DATA');
    if (r.code !== 354) return r;
    this.sendRaw(SmtpTestClient.stuff(message));
    return this.readReply();
  }

  /** LMTP DATA (RFC 2033 §4.2): one reply per accepted recipient, in RCPT order. */
  async dataLmtp(message: string | Buffer, rcptCount: number): Promise<Reply[]> {
    const r = await this.command('DATA');
    if (r.code !== 354) return [r];
    this.sendRaw(SmtpTestClient.stuff(message));
    const out: Reply[] = [];
    for (let i = 0; i < rcptCount; i++) out.push(await this.readReply());
    return out;
  }

  /**
   * One SMTP transaction: EHLO (only once per connection, and again after STARTTLS), MAIL, RCPT
   * for each address, DATA when MAIL and at least one RCPT succeeded (else RSET, data null).
   */
  async sendMail(o: { from: string; to: string[]; message: string | Buffer; ehlo?: string }): Promise<{ mail: Reply; rcpts: Reply[]; data: Reply | null }> {
    if (!this.ehloDone) {
      const e = await this.command(`EHLO ${o.ehlo ?? 'client.test'}`);
      if (e.code !== 250) throw new Error(`EHLO refused by ${this.label}: ${e.code} ${e.text}`);
    }
    const mail = await this.command(`MAIL FROM:<${o.from}>`);
    const rcpts: Reply[] = [];
    if (mail.code === 250) for (const t of o.to) rcpts.push(await this.command(`RCPT TO:<${t}>`));
    if (mail.code !== 250 || !rcpts.some((r) => r.code === 250 || r.code === 251)) {
      await this.command('RSET');
      return { mail, rcpts, data: null };
    }
    return { mail, rcpts, data: await this.data(o.message) };
  }

  /** Resolves when the server closes the connection; rejects if it has not within the timeout. */
  closed(timeoutMs = this.timeoutMs): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const i = this.closeWaiters.indexOf(done);
        if (i >= 0) this.closeWaiters.splice(i, 1);
        reject(new Error(`${this.label} did not close the connection within ${timeoutMs} ms`));
      }, timeoutMs);
      this.closeWaiters.push(done);
    });
  }

  /** QUIT, read the 221 if the connection is still open, then close our side and wait for the close. Never throws. */
  async quit(): Promise<void> {
    if (!this.ended) {
      try {
        await this.command('QUIT');
      } catch {
        /* already closed or no reply: fine */
      }
    }
    this.socket.destroy();
    await this.closed().catch(() => {});
  }

  /** Closes the socket at once, without QUIT. */
  destroy(): void {
    this.socket.destroy();
  }
}
