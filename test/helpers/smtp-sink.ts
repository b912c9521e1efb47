import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerAddress } from 'smtp-server';

/** One transaction as the sink saw it. */
export interface SinkTransaction {
  connection: number;
  from: string;
  fromArgs: Record<string, unknown>;
  rcpts: Array<{ address: string; args: Record<string, unknown> }>;
  data: Buffer;
  /** The transaction ran inside TLS (STARTTLS). */
  secure: boolean;
  /** The user the client logged in as, if it did. */
  user: string | null;
}

export interface SinkOptions {
  /** Reply to a recipient: undefined accepts; a string "550 5.1.1 no such user" refuses. */
  rcpt?: (address: string) => string | undefined;
  /** Reply after the data; undefined accepts. May wait (a slow server). */
  data?: (t: SinkTransaction) => Promise<string | undefined> | string | undefined;
  port?: number;
  /** Advertise STARTTLS (with smtp-server's built-in test certificate). */
  tls?: boolean;
  /** Require AUTH (PLAIN/LOGIN, only after STARTTLS) with these credentials, like a provider's smarthost. */
  auth?: { user: string; pass: string };
  /**
   * Called for every command line a client sends (not the message data), before it
   * is handled, with the connection's number (as in SinkTransaction.connection):
   * tells what came after a reply, e.g. whether a client sent anything after a 250.
   */
  command?: (connection: number, line: string) => void;
  /** Called when a connection is gone (QUIT or not), with its number. */
  closed?: (connection: number) => void;
}

function replyError(text: string): Error & { responseCode: number } {
  const code = Number(text.slice(0, 3));
  return Object.assign(new Error(text.slice(4)), { responseCode: code });
}

/**
 * A remote SMTP server for delivery tests (nodemailer's smtp-server, a library, not
 * our code): records every connection and transaction, answers as told.
 */
export class SmtpSink {
  readonly transactions: SinkTransaction[] = [];
  connections = 0;
  private server: SMTPServer;
  port = 0;

  constructor(private readonly opts: SinkOptions = {}) {
    this.server = new SMTPServer({
      disabledCommands: opts.auth ? [] : opts.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      authOptional: !opts.auth,
      authMethods: ['PLAIN', 'LOGIN'],
      onAuth: (auth, _session, cb) => {
        if (opts.auth && auth.username === opts.auth.user && auth.password === opts.auth.pass) cb(null, { user: auth.username });
        else cb(Object.assign(new Error('5.7.8 Authentication credentials invalid'), { responseCode: 535 }));
      },
      hideDSN: false,
      logger: false,
      size: 50 * 1024 * 1024,
      onConnect: (session, cb) => {
        this.connections++;
        (session as unknown as { n: number }).n = this.connections;
        cb();
      },
      onClose: (session) => {
        const n = (session as unknown as { n?: number }).n;
        if (n !== undefined) opts.closed?.(n);
      },
      onRcptTo: (address: SMTPServerAddress, _session, cb) => {
        const r = opts.rcpt?.(address.address);
        cb(r ? replyError(r) : undefined);
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const t: SinkTransaction = {
            connection: (session as unknown as { n: number }).n,
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            fromArgs: (session.envelope.mailFrom && (session.envelope.mailFrom.args as Record<string, unknown>)) || {},
            rcpts: session.envelope.rcptTo.map((r) => ({ address: r.address, args: (r.args as Record<string, unknown>) || {} })),
            data: Buffer.concat(chunks),
            secure: session.secure,
            user: typeof session.user === 'string' ? session.user : null,
          };
          void Promise.resolve(opts.data?.(t)).then((r) => {
            if (r) return cb(replyError(r));
            this.transactions.push(t);
            cb(null, 'Ok: sunk');
          });
        });
      },
    });
    this.server.on('error', () => undefined);
    if (opts.command) {
      const hook = opts.command;
      // smtp-server has no per-command hook: wrap each connection's command
      // dispatcher (SMTPConnection#_onCommand, called once per command line).
      type Conn = { session: { n?: number }; _onCommand(line: Buffer | string, cb?: () => void): void };
      const server = this.server as unknown as { connect(socket: unknown, options: unknown): void; connections: Set<Conn> };
      const connect = server.connect.bind(server);
      server.connect = (socket, options) => {
        const before = new Set(server.connections);
        connect(socket, options);
        for (const c of server.connections) {
          if (before.has(c)) continue;
          const dispatch = c._onCommand.bind(c);
          c._onCommand = (line, cb) => {
            if (c.session.n !== undefined) hook(c.session.n, String(line ?? ''));
            dispatch(line, cb);
          };
        }
      };
    }
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(this.opts.port ?? 0, '127.0.0.1', resolve));
    this.port = ((this.server as unknown as { server: import('node:net').Server }).server.address() as AddressInfo).port;
    return this.port;
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }

  /** Waits until `n` transactions arrived (or fails after `ms`). */
  async waitFor(n: number, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (this.transactions.length < n) {
      if (Date.now() > end) throw new Error(`sink: ${this.transactions.length} of ${n} transactions after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** A loopback port with nothing listening on it (a remote that is down). */
export async function closedPort(): Promise<number> {
  const net = await import('node:net');
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}
