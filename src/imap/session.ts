import type net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import type { Context } from '../core/context.ts';
import { MailError } from '../core/errors.ts';
import type { MessageSink } from '../core/ingest.ts';
import { upgradeToTls } from '../net/starttls.ts';
import { isLoopback } from '../net/ip.ts';
import { CommandReader, PRE_AUTH_LIMITS, authenticatedLimits, type Command, type ReaderEvent } from './parser.ts';
import { readerErrorResponse, status } from './writer.ts';
import { ImapError } from './errors.ts';
import type { SelectedMailbox } from './selected.ts';
import { COMMANDS, type ImapState } from './commands/index.ts';
import { MAX_MULTIAPPEND } from './commands/append.ts';
import type { MessageUid } from '../store/imap-model.ts';
import { DeflateStream } from './compress.ts';

/**
 * One IMAP connection (RFC 9051, RFC 3501): reads commands with the streaming
 * CommandReader, runs them one at a time in order (the reader is not asked for the
 * next command before the current one finished, so pipelined commands wait),
 * looks each up in the command table with the states it is allowed in, and maps
 * failures to tagged responses in one place (run()).
 */

export interface SessionOptions {
  /** TLS options for STARTTLS; null on an implicit-TLS listener or without certificates. */
  starttls: tls.TlsOptions | null;
  /** The connection is already inside TLS (IMAPS, RFC 8314). */
  secure: boolean;
  remoteAddress: string;
  /** Called once when the connection is gone (the listener releases its per-IP slot). */
  onClose?: () => void;
}

/** RFC 9051 §5.4: at least 30 minutes of inactivity before an autologout. */
const IDLE_TIMEOUT_MS = 30 * 60_000;
/** Bad commands before login that end the connection (DESIGN.md limits). */
const MAX_BAD_BEFORE_LOGIN = 3;

export class ImapSession {
  socket: net.Socket;
  state: ImapState = 'not-authenticated';
  account: { id: number; email: string } | null = null;
  selected: SelectedMailbox | null = null;
  /** ENABLEd extensions (RFC 5161): IMAP4REV2, CONDSTORE, QRESYNC, UTF8=ACCEPT. */
  readonly enabled = new Set<string>();
  secure: boolean;
  readonly log: Logger;
  reader = new CommandReader({ limits: PRE_AUTH_LIMITS });
  private busy = false;
  private closed = false;
  private badBeforeLogin = 0;
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  /** Set while a command waits for raw lines (AUTHENTICATE, IDLE). */
  private lineWaiter: ((line: Buffer | 'too-long' | null) => void) | null = null;
  /** IDLE (RFC 2177): pushes updates while it waits for DONE. */
  idling: (() => void) | null = null;

  constructor(
    readonly ctx: Context,
    socket: net.Socket,
    readonly opts: SessionOptions,
  ) {
    this.socket = socket;
    this.secure = opts.secure;
    this.log = ctx.log.child({ service: 'imap', client: opts.remoteAddress });
    this.attach(socket);
  }

  get utf8(): boolean {
    return this.enabled.has('UTF8=ACCEPT') || this.enabled.has('IMAP4REV2');
  }

  get rev2(): boolean {
    return this.enabled.has('IMAP4REV2');
  }

  /** Whether LOGIN/AUTHENTICATE may be used now (RFC 9051 §6.2.3: not in cleartext). */
  get authAllowed(): boolean {
    return this.secure || (this.ctx.config.auth.allow_plaintext_loopback && isLoopback(this.opts.remoteAddress));
  }

  capabilities(): string[] {
    const caps = ['IMAP4rev1', 'IMAP4rev2', 'LITERAL+', 'SASL-IR', 'ID', 'ENABLE', 'IDLE', 'NAMESPACE', 'UNSELECT', 'CHILDREN', 'SPECIAL-USE', 'UIDPLUS', 'MOVE', 'ESEARCH', 'SEARCHRES', 'WITHIN', 'MULTIAPPEND', 'CONDSTORE', 'QRESYNC'];
    if (this.state === 'not-authenticated') {
      if (!this.secure && this.opts.starttls) caps.push('STARTTLS');
      if (this.authAllowed) caps.push(...this.ctx.security.auth.mechanisms.map((m) => `AUTH=${m}`));
      else caps.push('LOGINDISABLED');
    } else {
      caps.push('UTF8=ACCEPT', `APPENDLIMIT=${this.ctx.config.smtp.max_message_size}`, 'LIST-EXTENDED', 'LIST-STATUS', 'STATUS=SIZE', 'CREATE-SPECIAL-USE');
      // RFC 5256, RFC 5957; RFC 9208; RFC 4978; RFC 3516
      caps.push('SORT', 'SORT=DISPLAY', 'THREAD=ORDEREDSUBJECT', 'THREAD=REFERENCES', 'QUOTA', 'QUOTA=RES-STORAGE', 'COMPRESS=DEFLATE', 'BINARY');
    }
    return caps;
  }

  greet(): void {
    this.write(`* OK [CAPABILITY ${this.capabilities().join(' ')}] ${this.ctx.config.hostname} Postern IMAP ready\r\n`);
    this.touch();
  }

  /**
   * Responses are coalesced: the first write of a turn of the event loop corks the
   * socket and the rest of the turn's writes join it, so a command's untagged lines
   * and its tagged status leave in one writev (a SELECT's nine lines were nine
   * write calls). setImmediate uncorks once the turn's I/O callbacks and promise
   * jobs are done: a response is delayed by less than one loop turn, and a writer
   * that waits for 'drain' gets it, the uncork coming regardless.
   */
  write(data: string | Buffer): void {
    if (this.closed) return;
    if (!this.corked) {
      this.corked = this.socket;
      this.corked.cork();
      setImmediate(this.uncork);
    }
    this.socket.write(data);
  }

  private corked: net.Socket | null = null;
  private readonly uncork = (): void => {
    const sock = this.corked;
    this.corked = null;
    sock?.uncork();
  };

  /** Sends what write() holds now: before the connection changes hands (STARTTLS, COMPRESS) or closes. */
  flushWrites(): void {
    this.uncork();
  }

  /** An untagged response line (without CRLF). */
  untagged(line: string): void {
    this.write(`${line}\r\n`);
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.touch();
      this.reader.push(chunk);
      this.pump();
    });
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
  }

  private touch(): void {
    if (this.timer) clearTimeout(this.timer);
    // IDLE may stay longer (RFC 2177 §3: clients re-issue it every 29 minutes).
    this.timer = setTimeout(() => {
      this.write('* BYE Autologout; idle for too long\r\n');
      this.close();
    }, this.idling ? IDLE_TIMEOUT_MS * 2 : IDLE_TIMEOUT_MS);
    this.timer.unref();
  }

  /** Runs what the reader has, one command at a time. */
  private pump(): void {
    if (this.closed) return;
    // A command waiting for a raw line (AUTHENTICATE, IDLE) is served while it runs.
    if (this.lineWaiter) {
      const line = this.reader.nextRawLine();
      if (line !== null) {
        const w = this.lineWaiter;
        this.lineWaiter = null;
        w(line);
      }
      return;
    }
    if (this.busy) return;
    this.busy = true;
    this.socket.pause();
    void this.drainEvents().finally(() => {
      this.busy = false;
      if (!this.closed && !this.lineWaiter) {
        this.socket.resume();
        if (this.reader.pendingBytes) this.pump();
      }
    });
  }

  /** Handles reader events one after the other, awaiting each (a command, a piece of an APPEND literal). */
  private async drainEvents(): Promise<void> {
    for (let ev = this.reader.next(); ev && !this.closed; ev = this.reader.next()) {
      if (ev.kind === 'command') {
        await this.run(ev.command);
        this.abortAppends();
      } else await this.readerEvent(ev);
    }
  }

  /**
   * APPEND literals are streamed (RFC 9051 §6.3.12; RFC 3502 MULTIAPPEND has several):
   * each goes into its own ingest sink as it arrives, and the APPEND command that
   * follows commits them by stream index; an error in the command aborts them.
   */
  readonly appendStreams = new Map<number, { sink: MessageSink; size: number }>();

  private abortAppends(): void {
    for (const a of this.appendStreams.values()) void a.sink.abort();
    this.appendStreams.clear();
  }

  private async readerEvent(ev: ReaderEvent): Promise<void> {
    if (ev.kind === 'continue') {
      this.write('+ Ready for literal data\r\n');
      return;
    }
    if (ev.kind === 'literal-start') {
      // No sink before login (APPEND is refused then) nor beyond MAX_MULTIAPPEND (APPEND answers NO [LIMIT]).
      if (this.state !== 'not-authenticated' && this.appendStreams.size < MAX_MULTIAPPEND) {
        this.appendStreams.set(ev.index, { sink: this.ctx.ingest.begin(), size: ev.size });
      }
      this.streaming = ev.index;
      return;
    }
    if (ev.kind === 'literal-data') {
      const a = this.streaming === null ? undefined : this.appendStreams.get(this.streaming);
      if (a) await a.sink.write(ev.data);
      return;
    }
    if (ev.kind === 'literal-end') {
      this.streaming = null;
      return;
    }
    this.abortAppends();
    const response = readerErrorResponse(ev);
    if (response) this.write(response);
    if (ev.kind === 'fatal') {
      this.close();
      return;
    }
    this.countBad();
  }

  private streaming: number | null = null;

  private countBad(): void {
    if (this.state !== 'not-authenticated') return;
    if (++this.badBeforeLogin >= MAX_BAD_BEFORE_LOGIN) {
      this.write('* BYE Too many invalid commands\r\n');
      this.close();
    }
  }

  /** Waits for the client's next raw line (SASL response, IDLE's DONE); null when the connection closed. */
  readLine(): Promise<Buffer | 'too-long' | null> {
    return new Promise((resolve) => {
      const line = this.reader.nextRawLine();
      if (line !== null) return resolve(line);
      this.lineWaiter = resolve;
      // IDLE sets `idling` first: the autologout timer restarts with the longer IDLE timeout.
      this.touch();
      this.socket.resume();
    });
  }

  private async run(cmd: Command): Promise<void> {
    const entry = COMMANDS.get(cmd.name);
    try {
      if (!entry) throw new ImapError('BAD', `Unknown command ${cmd.name.slice(0, 30)}`);
      if (!entry.states.includes(this.state)) {
        throw new ImapError('BAD', this.state === 'not-authenticated' ? `${cmd.name} needs a login first` : `${cmd.name} not allowed now`);
      }
      const text = await entry.run(this, cmd);
      if (text === null) return;
      await this.flushUpdates(entry.expungeSafe ?? true);
      if (!this.closed) this.write(status(cmd.tag, 'OK', text ?? `${cmd.name} completed`));
    } catch (err) {
      if (this.closed) return;
      if (err instanceof ImapError) {
        this.write(status(cmd.tag, err.kind, err.message, err.code));
        if (err.kind === 'BAD') this.countBad();
      } else if (err instanceof MailError) {
        const code = { NOT_FOUND: 'NONEXISTENT', ALREADY_EXISTS: 'ALREADYEXISTS', INVALID: 'CANNOT', OVER_QUOTA: 'OVERQUOTA', TEMP_FAILURE: 'UNAVAILABLE', READ_ONLY: 'READ-ONLY', HAS_CHILDREN: 'HASCHILDREN' }[err.code];
        this.write(status(cmd.tag, 'NO', err.message, code));
      } else {
        this.log.error({ err, command: cmd.name }, 'IMAP command failed');
        this.write(status(cmd.tag, 'NO', 'Internal error, try again later', 'SERVERBUG'));
      }
    }
  }

  /** Sends the selected mailbox's pending changes (RFC 9051 §7: at command completion). */
  async flushUpdates(expungeAllowed: boolean): Promise<void> {
    if (!this.selected || this.closed) return;
    const render = { flags: (m: MessageUid, seq: number) => this.flagsFetch(m, seq), vanished: this.enabled.has('QRESYNC') };
    for (const line of await this.selected.sync(this.ctx.data, expungeAllowed, render, !this.rev2)) this.untagged(line);
  }

  /** An unsolicited FETCH for a flag change (RFC 9051 §7.5.2), with MODSEQ once CONDSTORE is enabled (RFC 7162 §3.1.4). */
  flagsFetch(m: MessageUid, seq: number): string {
    const flags = this.flagList(m);
    return `* ${seq} FETCH (UID ${m.uid} FLAGS (${flags.join(' ')})${this.enabled.has('CONDSTORE') ? ` MODSEQ (${m.modseq})` : ''})`;
  }

  /** The flags to show: stored ones plus \Recent for rev1 clients (RFC 3501 §2.3.2; gone in rev2). */
  flagList(m: MessageUid): string[] {
    return !this.rev2 && this.selected?.isRecent(m.uid) ? [...m.flags, '\\Recent'] : m.flags;
  }

  /** After LOGIN/AUTHENTICATE. */
  loggedIn(account: { id: number; email: string }): void {
    this.account = account;
    this.state = 'authenticated';
    this.reader.setLimits(authenticatedLimits(this.ctx.config.smtp.max_message_size));
    this.unsubscribe = this.ctx.pubsub.subscribe(account.id, (ev) => {
      if (this.selected && (ev.mailboxId === null || ev.mailboxId === this.selected.info.id)) {
        this.selected.markDirty(ev.mailboxId === null ? undefined : ev.modseq);
        this.idling?.();
      }
    });
    this.log.info({ user: account.email }, 'login');
  }

  /** RFC 9051 §6.2.1: STARTTLS; plaintext the client pipelined behind it is discarded. */
  async startTls(): Promise<void> {
    if (!this.opts.starttls) throw new ImapError('NO', 'TLS is not available');
    const buffered = this.reader.pendingBytes;
    this.flushWrites();
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    const { socket, discarded } = await upgradeToTls(plain, this.opts.starttls, { bufferedPlaintext: buffered });
    if (discarded) this.log.warn({ discarded }, 'plaintext sent after STARTTLS discarded');
    // A fresh reader: nothing read before the handshake may count.
    this.reader = new CommandReader({ limits: PRE_AUTH_LIMITS });
    this.socket = socket;
    this.secure = true;
    this.attach(socket);
  }

  /** COMPRESS=DEFLATE is active (RFC 4978). */
  compressed = false;

  /**
   * RFC 4978 §3: called by COMPRESS right after it wrote its tagged OK, which goes
   * out uncompressed. From then on every byte read is inflated and every byte
   * written deflated (raw DEFLATE): `socket` becomes a DeflateStream over the
   * connection (TCP or TLS). The connection keeps its 'close'/'error' listeners
   * (they end the session either way); only reading moves to the new stream.
   */
  startCompression(): void {
    this.flushWrites();
    const raw = this.socket;
    raw.removeAllListeners('data');
    // A Duplex with the socket's stream interface (write/drain/pause/resume/end/destroy).
    this.socket = new DeflateStream(raw) as unknown as net.Socket;
    this.compressed = true;
    this.attach(this.socket);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.unsubscribe?.();
    this.lineWaiter?.(null);
    this.lineWaiter = null;
    this.abortAppends();
    this.flushWrites();
    this.socket.end();
    this.socket.destroySoon?.();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.opts.onClose?.();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
