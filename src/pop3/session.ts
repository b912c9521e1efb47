import type net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import type { Context } from '../core/context.ts';
import { MailError } from '../core/errors.ts';
import { upgradeToTls } from '../net/starttls.ts';
import { isLoopback } from '../net/ip.ts';
import { normalizeMailboxName } from '../store/imap-model.ts';
import { LineReader, type LineEvent } from './line-reader.ts';
import { parseCommand, type Command } from './parser.ts';
import { Pop3Error, badCommand, err, errLine } from './errors.ts';
import { Maildrop } from './maildrop.ts';
import type { MaildropLease, MaildropLocks } from './lock.ts';
import { COMMANDS } from './commands/index.ts';

/**
 * One POP3 connection (RFC 1939 §3–§6): AUTHORIZATION → TRANSACTION → UPDATE.
 * Commands are read with the bounded LineReader and run one at a time in order
 * (RFC 2449 PIPELINING: the socket is paused while a command runs, so pipelined
 * commands wait in at most a few buffered chunks); each is parsed into a typed
 * Command, looked up in the command table with the states it is allowed in, and
 * failures become one -ERR line here (run()).
 */
export type Pop3State = 'authorization' | 'transaction' | 'update';

export interface SessionOptions {
  /** TLS options for STLS; null on the implicit-TLS listener or without certificates. */
  starttls: tls.TlsOptions | null;
  /** Already inside TLS (POP3S, RFC 8314). */
  secure: boolean;
  remoteAddress: string;
  locks: MaildropLocks;
  /** Called once when the connection is gone (the listener releases its per-IP slot). */
  onClose?: () => void;
}

/**
 * RFC 2449 §4 limits a command line to 255 octets; we accept more (AUTH PLAIN with a
 * long passphrase as initial response, SASL responses) but never an unbounded line.
 */
export const MAX_LINE = 4096;
/** Bad commands that end the connection: before login (DESIGN.md, Dovecot) and after. */
const MAX_BAD_BEFORE_LOGIN = 3;
const MAX_BAD = 20;

export class Pop3Session {
  socket: net.Socket;
  state: Pop3State = 'authorization';
  secure: boolean;
  readonly log: Logger;
  /** USER given, waiting for PASS. */
  user: string | null = null;
  account: { id: number; email: string } | null = null;
  maildrop: Maildrop | null = null;
  /** RFC 6856 UTF8 command given. */
  utf8 = false;
  /** For the log line at the end (like Dovecot's "top=…, retr=…, del=…"). */
  readonly stats = { top: 0, retr: 0, retrBytes: 0, deleted: 0 };
  private reader = new LineReader(MAX_LINE);
  private lease: MaildropLease | null = null;
  private busy = false;
  private closed = false;
  /** The idle timer fired: the lock is being released, no further command is read. */
  private timedOut = false;
  private bad = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Set while a command (AUTH) waits for the client's next line. */
  private waiter: ((ev: LineEvent | null) => void) | null = null;

  constructor(
    readonly ctx: Context,
    socket: net.Socket,
    readonly opts: SessionOptions,
  ) {
    this.socket = socket;
    this.secure = opts.secure;
    this.log = ctx.log.child({ service: 'pop3', client: opts.remoteAddress });
    this.attach(socket);
  }

  get cfg() {
    return this.ctx.config.pop3;
  }

  /** Whether USER/PASS and AUTH may be used now: inside TLS, or from loopback when configured (RFC 2595 §2.2). */
  get authAllowed(): boolean {
    return this.secure || (this.ctx.config.auth.allow_plaintext_loopback && isLoopback(this.opts.remoteAddress));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  greet(): void {
    // RFC 1939 §4; no APOP timestamp (APOP is not offered).
    this.write(`+OK ${this.ctx.config.hostname} Postern POP3 ready\r\n`);
    this.touch();
  }

  write(data: string | Buffer): boolean {
    if (this.closed) return false;
    return this.socket.write(data);
  }

  /** Writes and waits until the socket takes more (backpressure), or the connection is gone. */
  async send(data: string | Buffer): Promise<void> {
    if (this.write(data) || this.closed) return;
    const socket = this.socket;
    await new Promise<void>((resolve) => {
      const done = () => {
        socket.off('drain', done);
        socket.off('close', done);
        resolve();
      };
      socket.on('drain', done);
      socket.on('close', done);
    });
    // A slow reader of a large RETR is not idle.
    this.touch();
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.touch();
      this.reader.push(chunk);
      if (this.waiter) {
        const ev = this.reader.next();
        if (ev) {
          const w = this.waiter;
          this.waiter = null;
          this.socket.pause();
          w(ev);
        }
        return;
      }
      this.pump();
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  /** RFC 1939 §3: an inactivity autologout timer of at least 10 minutes (pop3.idle_timeout). */
  touch(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.log.info({ user: this.account?.email }, 'idle timeout');
      // No UPDATE state: nothing marked with DELE is deleted (RFC 1939 §6). The lock goes
      // before the -ERR, so a client that sees the close and logs in again is not refused
      // with IN-USE; no command is read meanwhile.
      this.timedOut = true;
      this.socket.pause();
      void this.releaseMaildrop().finally(() => {
        if (this.closed) return;
        this.write('-ERR Disconnected for inactivity\r\n');
        this.close();
      });
    }, this.cfg.idle_timeout);
    this.timer.unref();
  }

  private pump(): void {
    if (this.busy || this.closed || this.timedOut) return;
    this.busy = true;
    this.socket.pause();
    void this.drain()
      .catch((e: unknown) => {
        this.log.error({ err: e }, 'POP3 session failed');
        this.close();
      })
      .finally(() => {
        this.busy = false;
        if (!this.closed && !this.timedOut) this.socket.resume();
      });
  }

  private async drain(): Promise<void> {
    for (let ev = this.reader.next(); ev && !this.closed && !this.timedOut; ev = this.reader.next()) {
      if (ev.kind === 'too-long') {
        this.write(errLine(`Line too long (at most ${MAX_LINE} octets)`));
        this.countBad();
        continue;
      }
      let cmd: Command;
      try {
        cmd = parseCommand(ev.line);
      } catch (e) {
        this.fail(e);
        continue;
      }
      await this.run(cmd);
    }
  }

  /** The client's next line, for a SASL exchange; null when the connection closed. */
  readLine(): Promise<LineEvent | null> {
    const ev = this.reader.next();
    if (ev) return Promise.resolve(ev);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.waiter = resolve;
      this.socket.resume();
    });
  }

  private async run(cmd: Command): Promise<void> {
    const entry = COMMANDS[cmd.name];
    try {
      if (!entry.states.includes(this.state)) {
        throw badCommand(this.state === 'authorization' ? `${cmd.name} needs a login first` : `${cmd.name} is only allowed before login`);
      }
      await entry.run(this, cmd as never);
    } catch (e) {
      this.fail(e, cmd.name);
    }
  }

  /** Errors are mapped in one place: user errors with their code, store errors as SYS/*, anything else logged. */
  private fail(e: unknown, command?: string): void {
    if (this.closed) return;
    if (e instanceof Pop3Error) {
      this.write(errLine(e.message, e.code));
      if (e.bad) this.countBad();
    } else if (e instanceof MailError) {
      const temp = e.code === 'TEMP_FAILURE';
      if (temp) this.log.warn({ err: e, command }, 'POP3 command failed temporarily');
      this.write(errLine(e.message, temp ? 'SYS/TEMP' : 'SYS/PERM'));
    } else {
      this.log.error({ err: e, command }, 'POP3 command failed');
      this.write(errLine('Internal error, try again later', 'SYS/TEMP'));
    }
  }

  private countBad(): void {
    if (++this.bad >= (this.state === 'authorization' ? MAX_BAD_BEFORE_LOGIN : MAX_BAD)) {
      this.write(errLine('Too many invalid commands, closing the connection'));
      this.close();
    }
  }

  /**
   * After a successful login: the lock (pop3.in_use), the login delay, then the
   * maildrop snapshot (RFC 1939 §4: "the POP3 server then acquires an exclusive-access
   * lock on the maildrop"). Throws a Pop3Error with IN-USE, LOGIN-DELAY or SYS/*; the
   * session stays in the AUTHORIZATION state then.
   */
  async openMaildrop(account: { id: number; email: string }): Promise<void> {
    const key = String(account.id);
    if (this.cfg.login_delay > 0 && (await this.ctx.data.getState('pop3-login', key, this.ctx.now()))) {
      throw err(`Logins are allowed every ${Math.ceil(this.cfg.login_delay / 1000)} seconds`, 'LOGIN-DELAY');
    }
    const lease = this.cfg.in_use === 'refuse' ? await this.opts.locks.acquire(account.id) : null;
    if (this.cfg.in_use === 'refuse' && !lease) {
      this.log.info({ user: account.email }, 'maildrop in use');
      throw err('Mailbox is in use by another POP3 session', 'IN-USE');
    }
    try {
      const name = normalizeMailboxName(this.cfg.mailbox);
      const info = await this.ctx.data.getMailbox(account.id, name);
      if (!info) throw err(`Mailbox ${name} does not exist (pop3.mailbox)`, 'SYS/PERM');
      this.maildrop = new Maildrop(info, await this.ctx.data.listMessageUids(info.id));
      if (this.cfg.login_delay > 0) await this.ctx.data.putState('pop3-login', key, 1, this.ctx.now() + this.cfg.login_delay);
    } catch (e) {
      this.maildrop = null;
      await lease?.release();
      throw e;
    }
    if (this.closed) {
      await lease?.release();
      return;
    }
    this.lease = lease;
    this.account = account;
    this.user = null;
    this.state = 'transaction';
  }

  /** Lets the next session in (QUIT awaits this before its +OK). */
  async releaseMaildrop(): Promise<void> {
    const l = this.lease;
    this.lease = null;
    await l?.release();
  }

  /** RFC 2595 §4: STLS; plaintext the client pipelined behind it is discarded, never read as commands. */
  async startTls(): Promise<void> {
    if (!this.opts.starttls) throw err('TLS is not available');
    const buffered = this.reader.pending;
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    plain.on('error', () => undefined);
    let upgraded;
    try {
      upgraded = await upgradeToTls(plain, this.opts.starttls, { bufferedPlaintext: buffered });
    } catch (e) {
      this.log.info({ err: e }, 'STLS handshake failed');
      this.close();
      return;
    }
    if (upgraded.discarded) this.log.warn({ discarded: upgraded.discarded }, 'plaintext sent after STLS discarded');
    // A fresh reader and a fresh AUTHORIZATION state: nothing from before the handshake counts.
    this.reader = new LineReader(MAX_LINE);
    this.user = null;
    this.socket = upgraded.socket;
    this.secure = true;
    this.attach(upgraded.socket);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.waiter?.(null);
    this.waiter = null;
    void this.releaseMaildrop();
    if (this.account) {
      this.log.info({ user: this.account.email, quit: this.state === 'update', ...this.stats }, 'disconnected');
    }
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.opts.onClose?.();
  }
}
