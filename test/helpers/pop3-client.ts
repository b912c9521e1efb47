import net from 'node:net';
import tls from 'node:tls';
import type { ConfigInput } from '../../src/config/schema.ts';
import { startTestServer, type TestServer } from './server.ts';

/** A multi-line reply: the status line and the lines after it, dot-unstuffed, without the final ".". */
export interface MultiReply {
  status: string;
  lines: string[];
  /** The bytes between the status line and the terminating ".CRLF", as sent (still dot-stuffed). */
  raw: Buffer;
}

/**
 * A small POP3 client for protocol tests: replies are read from a byte buffer, so a
 * test sees exactly what the server sent (CRLFs, dot-stuffing), and commands can be
 * pipelined by writing several before reading.
 */
export class Pop3TestClient {
  /** Received bytes not yet read: store[start, end), grown by doubling (a 20 MB reply arrives in thousands of chunks). */
  private store: Buffer = Buffer.alloc(64 * 1024);
  private start = 0;
  private end = 0;
  /** How far readMulti already searched for the terminator (so a large reply is scanned once). */
  private scanned = 0;
  private waiters: Array<() => void> = [];
  closed = false;
  greeting = '';

  private constructor(public socket: net.Socket) {
    this.listen(socket);
  }

  private listen(socket: net.Socket): void {
    socket.on('data', (d: Buffer) => {
      this.append(d);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  private get buf(): Buffer {
    return this.store.subarray(this.start, this.end);
  }

  private append(d: Buffer): void {
    if (this.end + d.length > this.store.length) {
      const live = this.end - this.start;
      const next = live + d.length > this.store.length / 2 ? Buffer.alloc(Math.max(this.store.length * 2, live + d.length)) : this.store;
      this.store.copy(next, 0, this.start, this.end);
      this.store = next;
      this.start = 0;
      this.end = live;
    }
    d.copy(this.store, this.end);
    this.end += d.length;
  }

  /** Takes `n` bytes off the front, as a copy (the store's bytes move when it is compacted). */
  private take(n: number, skip = 0): Buffer {
    const out = Buffer.from(this.store.subarray(this.start, this.start + n));
    this.start += n + skip;
    this.scanned = 0;
    return out;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private wait(deadline: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const left = deadline - Date.now();
      if (left <= 0) return reject(new Error(`timeout; buffered: ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`));
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        reject(new Error(`timeout; buffered: ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`));
      }, left);
      const done = () => {
        clearTimeout(t);
        resolve();
      };
      this.waiters.push(done);
    });
  }

  /** `localAddress`: a loopback source address (127.0.0.x), to be another client for the ban guard. */
  static async connect(port: number, opts: { tls?: boolean; localAddress?: string } = {}): Promise<Pop3TestClient> {
    const plain = net.connect({ port, host: '127.0.0.1', localAddress: opts.localAddress });
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
    const c = new Pop3TestClient(socket);
    c.greeting = await c.line();
    return c;
  }

  /** The next line without CRLF; '' and closed=true when the server hung up. */
  async line(timeoutMs = 10_000): Promise<string> {
    return (await this.lineBytes(timeoutMs)).toString('utf8');
  }

  async lineBytes(timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.buf.indexOf('\r\n');
      if (i >= 0) return this.take(i, 2);
      if (this.closed) {
        if (this.buf.length) throw new Error(`connection closed inside a line: ${JSON.stringify(this.buf.toString('latin1'))}`);
        return Buffer.alloc(0);
      }
      await this.wait(deadline);
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Sends one command line and reads a one-line reply. */
  async cmd(line: string, timeoutMs?: number): Promise<string> {
    this.write(`${line}\r\n`);
    return this.line(timeoutMs);
  }

  /** Reads a multi-line reply (its status line first; an -ERR has no lines). */
  async readMulti(timeoutMs = 30_000): Promise<MultiReply> {
    const status = await this.line(timeoutMs);
    if (!status.startsWith('+OK')) return { status, lines: [], raw: Buffer.alloc(0) };
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // The end: ".CRLF" at the start of the body or after a CRLF.
      const buf = this.buf;
      const end = buf.subarray(0, 3).equals(Buffer.from('.\r\n')) ? 0 : buf.indexOf('\r\n.\r\n', Math.max(0, this.scanned - 4));
      if (end < 0) this.scanned = buf.length;
      else {
        const raw = end === 0 ? this.take(0, 3) : this.take(end + 2, 3);
        const text = raw.toString('latin1');
        const lines = text === '' ? [] : text.slice(0, -2).split('\r\n').map((l) => (l.startsWith('.') ? l.slice(1) : l));
        return { status, lines, raw };
      }
      if (this.closed) throw new Error(`connection closed inside a multi-line reply (${this.buf.length} bytes)`);
      await this.wait(deadline);
    }
  }

  async multi(line: string, timeoutMs?: number): Promise<MultiReply> {
    this.write(`${line}\r\n`);
    return this.readMulti(timeoutMs);
  }

  /** RETR: the message as the client gets it (dot-stuffing undone, CRLF line ends). */
  async retr(n: number): Promise<{ status: string; message: Buffer; raw: Buffer }> {
    const r = await this.multi(`RETR ${n}`);
    return { status: r.status, message: unstuff(r.raw), raw: r.raw };
  }

  /** USER + PASS; returns the PASS reply. */
  async login(user = 'alice@example.test', password = 'secret'): Promise<string> {
    const u = await this.cmd(`USER ${user}`);
    if (!u.startsWith('+OK')) return u;
    return this.cmd(`PASS ${password}`);
  }

  /** STLS, then the TLS handshake over the same connection. */
  async stls(): Promise<string> {
    const r = await this.cmd('STLS');
    if (!r.startsWith('+OK')) return r;
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('close');
    const secure = tls.connect({ socket: this.socket, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    this.start = this.end = this.scanned = 0;
    this.socket = secure;
    this.listen(secure);
    return r;
  }

  /** Resolves when the server has closed the connection. */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) await this.wait(deadline);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Undoes RFC 1939 §3 byte-stuffing of a multi-line body. */
export function unstuff(raw: Buffer): Buffer {
  const s = raw.toString('latin1');
  return Buffer.from(s.replace(/(^|\r\n)\./g, '$1'), 'latin1');
}

export interface Pop3TestServer extends TestServer {
  pop3Port: number;
  pop3sPort: number;
}

/** A test server (test/helpers/server.ts) with the pop3 and pop3s listeners on OS-picked ports, IMAP and a local socket too. */
export async function startPop3TestServer(overrides: Partial<ConfigInput> = {}, opts: Parameters<typeof startTestServer>[1] = {}): Promise<Pop3TestServer> {
  const t = await startTestServer(
    {
      auth: { failure_delay: '10ms' },
      ...overrides,
      listen: { imap: '127.0.0.1:0', imaps: '127.0.0.1:0', pop3: '127.0.0.1:0', pop3s: '127.0.0.1:0', ...overrides.listen },
    },
    opts,
  );
  const port = (svc: string) => Number(t.server.endpoints.find((e) => e.service === svc)?.address.split(':').pop() ?? 0);
  return Object.assign(t, { pop3Port: port('pop3'), pop3sPort: port('pop3s') });
}

/** Puts a message straight into a user's mailbox through the one write path (as SMTP delivery does). */
export async function deliver(t: TestServer, email: string, data: string | Buffer, opts: { flags?: string[]; internalDate?: number; mailbox?: string } = {}): Promise<void> {
  const acct = await t.server.ctx.data.getAccount(email);
  if (!acct) throw new Error(`no account ${email}`);
  await t.server.ctx.ingest.ingestBuffer(Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8'), {
    deliveries: [{ accountId: acct.id, flags: opts.flags ?? [], mailbox: opts.mailbox }],
    queue: null,
    internalDate: opts.internalDate ?? Date.now(),
  });
}
