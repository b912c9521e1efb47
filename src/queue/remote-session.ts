import SMTPConnection from 'nodemailer/lib/smtp-connection';
import net from 'node:net';
import type { RouteHost } from './routing.ts';

/**
 * One SMTP (or LMTP) client connection to a remote host, over nodemailer's
 * smtp-connection, with the parts the delivery agent needs as promises: connect
 * (EHLO, STARTTLS by the route's TLS policy, AUTH for relays), one transaction with
 * per-recipient results, RSET between transactions, QUIT.
 */

export interface SessionOptions {
  /** Our host name for EHLO. */
  hostname: string;
  connectTimeout: number;
  commandTimeout: number;
  dataTimeout: number;
}

/** The reply one recipient got. `code` 0: no reply (connection problem, our own verdict). */
export interface RecipientReply {
  recipient: string;
  code: number;
  /** The remote reply text, one line. */
  reply: string;
}

export interface TransactionResult {
  replies: RecipientReply[];
  /** The session cannot carry another transaction (dropped, timed out, desynchronised). */
  broken: boolean;
}

export interface TransactionEnvelope {
  from: string;
  to: string[];
  size: number;
  eightBit: boolean;
  /** The message was received with SMTPUTF8 (RFC 6531 §3.4): say so again. */
  smtputf8: boolean;
  dsn?: { ret?: 'FULL' | 'HDRS' | null; envid?: string | null; notify?: string | null; orcpt?: string | null };
}

/** A failure to set up the session: `code` the remote reply code if there was one. */
export class SessionError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

/** What nodemailer's connection keeps that we read (not in its typings). */
interface ConnectionInternals {
  _supportedExtensions: string[];
  _sendCommand(str: string): void;
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').trim().slice(0, 500);
}

function replyOf(err: SMTPConnection.SMTPError): { code: number; reply: string } {
  const code = err.responseCode ?? 0;
  return { code, reply: oneLine(err.response || err.message) };
}

/** Connection problems (no reply from the server) mean the session is gone. */
function isConnectionError(err: SMTPConnection.SMTPError): boolean {
  return !err.responseCode && ['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'ETLS', 'EPROTOCOL', 'ESTREAM', 'EDNS'].includes(err.code ?? '');
}

export class RemoteSession {
  private broken = false;
  private closed = false;

  private constructor(
    private readonly conn: SMTPConnection,
    readonly host: RouteHost,
  ) {
    conn.on('error', () => {
      this.broken = true;
    });
    conn.on('end', () => {
      this.broken = true;
      this.closed = true;
    });
  }

  /** "mx.example.org[192.0.2.1]:25", as in Postfix's relay= field. */
  get label(): string {
    return `${this.host.name}[${this.host.address}]:${this.host.port}`;
  }

  get usable(): boolean {
    return !this.broken && !this.closed;
  }

  get secure(): boolean {
    return this.conn.secure;
  }

  private get extensions(): string[] {
    return (this.conn as unknown as ConnectionInternals)._supportedExtensions ?? [];
  }

  supports(ext: string): boolean {
    return this.extensions.includes(ext);
  }

  /** Connects, says EHLO (LHLO), upgrades with STARTTLS as the route says, logs in when the route has credentials. */
  static async open(host: RouteHost, opts: SessionOptions): Promise<RemoteSession> {
    const conn = new SMTPConnection({
      host: host.address,
      port: host.port,
      name: opts.hostname,
      lmtp: host.lmtp,
      secure: false,
      ignoreTLS: host.tls === 'none',
      requireTLS: host.tls === 'required',
      opportunisticTLS: host.tls === 'may',
      // Opportunistic TLS (RFC 3207 §4.1, RFC 7435): encrypt without verifying, as
      // Postfix's "may" and "encrypt" levels do; MTA-STS/DANE verification is not done.
      tls: { rejectUnauthorized: false, servername: net.isIP(host.name) ? undefined : host.name, minVersion: 'TLSv1.2' },
      connectionTimeout: opts.connectTimeout,
      greetingTimeout: opts.commandTimeout,
      socketTimeout: opts.dataTimeout,
      logger: false,
    });
    const session = new RemoteSession(conn, host);
    try {
      // nodemailer reports a failed connect as an 'error' event, not through the callback.
      await new Promise<void>((resolve, reject) => {
        const fail = (err: Error) => reject(err);
        conn.once('error', fail);
        conn.once('end', () => reject(Object.assign(new Error('connection closed during the greeting'), { code: 'ECONNECTION' })));
        conn.connect((err) => {
          conn.off('error', fail);
          if (err) reject(err);
          else resolve();
        });
      });
      if (host.auth) {
        const auth = host.auth;
        await new Promise<void>((resolve, reject) => conn.login({ user: auth.user, pass: auth.pass }, (err) => (err ? reject(err) : resolve())));
      }
    } catch (e) {
      session.close();
      const err = e as SMTPConnection.SMTPError;
      const { code, reply } = replyOf(err);
      const what = err.code === 'EAUTH' ? 'authentication failed' : err.code === 'ETLS' ? 'STARTTLS failed' : 'connect failed';
      throw new SessionError(`${what}: ${reply}`, code);
    }
    return session;
  }

  /**
   * One transaction. Every recipient gets a reply: its RCPT reply when refused,
   * else the final reply to the data (per recipient with LMTP), or code 0 with the
   * reason when the connection failed before an answer.
   */
  async send(env: TransactionEnvelope, message: Buffer): Promise<TransactionResult> {
    const internals = this.conn as unknown as ConnectionInternals;
    const passUtf8 = env.smtputf8 && this.supports('SMTPUTF8');
    const original = internals._sendCommand;
    if (passUtf8) {
      // nodemailer adds SMTPUTF8 only for non-ASCII addresses; a message received with
      // SMTPUTF8 (UTF-8 headers) must be passed on with it too (RFC 6531 §3.4).
      internals._sendCommand = function (this: ConnectionInternals, str: string) {
        return original.call(this, /^MAIL FROM:/i.test(str) && !/ SMTPUTF8\b/i.test(str) ? `${str} SMTPUTF8` : str);
      };
    }
    const dsn = env.dsn
      ? {
          ...(env.dsn.ret ? { ret: env.dsn.ret as 'HDRS' } : {}),
          ...(env.dsn.envid ? { envid: env.dsn.envid } : {}),
          ...(env.dsn.notify ? { notify: env.dsn.notify.split(',') as SMTPConnection.DSNOption[] } : {}),
          ...(env.dsn.orcpt ? { orcpt: env.dsn.orcpt } : {}),
        }
      : undefined;
    try {
      const info = await new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) =>
        this.conn.send({ from: env.from, to: env.to, size: env.size, use8BitMime: env.eightBit, ...(dsn ? { dsn } : {}) }, message, (err, i) => (err ? reject(err) : resolve(i))),
      );
      const refused = new Map<string, RecipientReply>();
      for (const e of info.rejectedErrors ?? []) {
        const r = (e as SMTPConnection.SMTPError & { recipient?: string }).recipient ?? '';
        refused.set(r, { recipient: r, ...replyOf(e) });
      }
      const final = { code: Number(info.response.slice(0, 3)) || 250, reply: oneLine(info.response) };
      return { replies: env.to.map((r) => refused.get(r) ?? { recipient: r, ...final }), broken: false };
    } catch (e) {
      const err = e as SMTPConnection.SMTPError & { rejectedErrors?: Array<SMTPConnection.SMTPError & { recipient?: string }> };
      if (isConnectionError(err) || !this.usable) {
        this.broken = true;
        // RFC 5321 §6.1: no reply to the data means we cannot know; the only safe
        // verdict is a temporary failure (the message may arrive twice, never lost).
        return { replies: env.to.map((r) => ({ recipient: r, code: 0, reply: oneLine(`lost connection with ${this.label}: ${err.message}`) })), broken: true };
      }
      const refused = new Map<string, RecipientReply>();
      for (const re of err.rejectedErrors ?? []) if (re.recipient) refused.set(re.recipient, { recipient: re.recipient, ...replyOf(re) });
      const whole = replyOf(err);
      if (err.code === 'EMESSAGE' && !err.responseCode) {
        // nodemailer refused before sending (SIZE above the server's limit, RFC 1870).
        return { replies: env.to.map((r) => ({ recipient: r, code: 552, reply: `552 5.3.4 message size ${env.size} exceeds the limit of ${this.label}` })), broken: false };
      }
      return { replies: env.to.map((r) => refused.get(r) ?? { recipient: r, ...whole }), broken: false };
    } finally {
      if (passUtf8) internals._sendCommand = original;
    }
  }

  /** RSET after a failed transaction so the session can carry the next one; false when it cannot. */
  async reset(): Promise<boolean> {
    if (!this.usable) return false;
    try {
      await new Promise<void>((resolve, reject) => this.conn.reset((err) => (err ? reject(err) : resolve())));
      return true;
    } catch {
      this.broken = true;
      return false;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.broken) this.conn.quit();
      else this.conn.close();
    } catch {
      this.conn.close();
    }
  }
}
