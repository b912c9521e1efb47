import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import type { TlsProvider } from '../net/certificates.ts';
import { fork, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import type { Context } from '../core/context.ts';
import { LocalPubSub, type ChangeEvent } from '../core/pubsub.ts';
import type { FromWorker, ToWorker } from './worker-messages.ts';
import type { ImapServer } from './server.ts';

const BOOT = new URL('./worker-boot.mjs', import.meta.url);
/** How long a worker may take to open its stores and certificates. */
const START_TIMEOUT_MS = 60_000;
/** A worker that dies is started again after this, doubling while it keeps dying young. */
const RESTART_DELAY_MS = 500;
const MAX_RESTART_DELAY_MS = 30_000;
/** A worker that lived this long before dying starts again after the first delay. */
const HEALTHY_AFTER_MS = 60_000;

interface Worker {
  index: number;
  child: ChildProcess;
  ready: boolean;
  startedAt: number;
  /** Connection id → client address, for the connection guard's per-address slots. */
  conns: Map<number, string>;
}

/**
 * The IMAP worker processes (`imap.processes`, issue #6: one event loop is one core). The main
 * process keeps the listening sockets and the connection guard (bans, per-address limits, one
 * count for the whole server); each admitted connection goes, still unread, to the worker with
 * the fewest connections, which serves the whole session (TLS included) with its own store
 * connections. Committed changes are relayed between the processes so IDLE wakes anywhere.
 * A worker that dies takes its sessions with it (clients reconnect) and is started again.
 */
export class ImapWorkers {
  private readonly workers: Array<Worker | null>;
  private readonly log: Logger;
  private nextId = 1;
  private stopping = false;
  private restartDelay = RESTART_DELAY_MS;
  private readonly certs: Array<Extract<ToWorker, { t: 'cert' }>> = [];
  private unrelay: (() => void) | null = null;

  constructor(
    private readonly ctx: Context,
    count: number,
  ) {
    this.workers = Array.from({ length: count }, () => null);
    this.log = ctx.log.child({ service: 'imap' });
  }

  /** Starts every worker; resolves when all serve, rejects with the first failure. */
  async start(): Promise<void> {
    if (this.ctx.pubsub instanceof LocalPubSub) {
      // Changes committed here (SMTP/LMTP deliveries, the queue) reach every worker.
      this.unrelay = this.ctx.pubsub.addRelay((event) => this.broadcast({ t: 'change', event }));
    }
    await Promise.all(this.workers.map((_, i) => this.spawn(i)));
  }

  /** Hands an admitted connection (unread: pauseOnConnect) to the least loaded worker. */
  dispatch(mode: 'imap' | 'imaps', socket: net.Socket, address: string): boolean {
    let best: Worker | null = null;
    for (const w of this.workers) if (w?.ready && w.child.connected && (!best || w.conns.size < best.conns.size)) best = w;
    if (!best) return false;
    const id = this.nextId++;
    best.conns.set(id, address);
    const m: ToWorker = { t: 'conn', id, mode, address };
    best.child.send(m, socket, (err) => {
      if (!err) return;
      // The worker went away in between: its exit handler released the slot (or does so now).
      if (best.conns.delete(id)) this.ctx.security.connections.release(address);
      socket.destroy();
    });
    return true;
  }

  /** An ACME certificate for every worker, now and after restarts. */
  addCertificate(key: string, certPath: string, keyPath: string, hosts: string[]): void {
    const m = { t: 'cert' as const, key, certPath, keyPath, hosts };
    const i = this.certs.findIndex((c) => c.key === key);
    if (i >= 0) this.certs[i] = m;
    else this.certs.push(m);
    this.broadcast(m);
  }

  /** Connections being served, per worker. */
  connections(): number[] {
    return this.workers.map((w) => w?.conns.size ?? 0);
  }

  /** The workers' process ids (0: not running). */
  pids(): number[] {
    return this.workers.map((w) => (w?.ready ? (w.child.pid ?? 0) : 0));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.unrelay?.();
    await Promise.all(
      this.workers.map(async (w) => {
        if (!w || w.child.exitCode !== null || w.child.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => w.child.once('exit', () => resolve()));
        if (w.child.connected) w.child.send({ t: 'stop' } satisfies ToWorker);
        else w.child.kill('SIGTERM');
        const timer = setTimeout(() => w.child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  private broadcast(m: ToWorker, except?: Worker): void {
    for (const w of this.workers) if (w && w !== except && w.ready && w.child.connected) w.child.send(m);
  }

  private spawn(index: number): Promise<void> {
    // execArgv: the boot file registers tsx itself; the main process's flags (--test, --cpu-prof …) are not the worker's.
    const child = fork(BOOT, [], { execArgv: [], serialization: 'advanced' });
    const w: Worker = { index, child, ready: false, startedAt: Date.now(), conns: new Map() };
    this.workers[index] = w;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`IMAP worker ${index} did not start within ${START_TIMEOUT_MS / 1000} s`));
        child.kill('SIGKILL');
      }, START_TIMEOUT_MS);
      child.on('message', (m: FromWorker) => {
        switch (m.t) {
          case 'ready':
            clearTimeout(timer);
            w.ready = true;
            for (const c of this.certs) child.send(c);
            resolve();
            break;
          case 'failed':
            clearTimeout(timer);
            reject(new Error(`IMAP worker ${index} could not start: ${m.message}`));
            break;
          case 'closed': {
            const address = w.conns.get(m.id);
            if (address !== undefined) {
              w.conns.delete(m.id);
              this.ctx.security.connections.release(address);
            }
            break;
          }
          case 'change':
            this.relayed(m.event, w);
            break;
        }
      });
      child.on('error', (err) => this.log.error({ err, worker: index }, 'IMAP worker process error'));
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        for (const address of w.conns.values()) this.ctx.security.connections.release(address);
        const lost = w.conns.size;
        w.conns.clear();
        w.ready = false;
        if (this.stopping) return;
        if (!w.startedAt || Date.now() - w.startedAt > HEALTHY_AFTER_MS) this.restartDelay = RESTART_DELAY_MS;
        this.log.error({ worker: index, code, signal, sessions: lost }, `IMAP worker ${index} exited; its ${lost} sessions were dropped; starting it again in ${this.restartDelay} ms`);
        const delay = this.restartDelay;
        this.restartDelay = Math.min(this.restartDelay * 2, MAX_RESTART_DELAY_MS);
        setTimeout(() => {
          if (this.stopping) return;
          this.spawn(index).catch((err: unknown) => this.log.error({ err, worker: index }, 'IMAP worker did not start again'));
        }, delay).unref();
        reject(new Error(`IMAP worker ${index} exited (${code ?? signal}) while starting`));
      });
      child.send({ t: 'init', config: this.ctx.config, index } satisfies ToWorker);
    });
  }

  /** A worker's change: this process's subscribers and the other workers. */
  private relayed(event: ChangeEvent, from: Worker): void {
    if (this.ctx.pubsub instanceof LocalPubSub) this.ctx.pubsub.deliver(event);
    this.broadcast({ t: 'change', event }, from);
  }
}

/** `imap.processes`: "auto" is one worker per core on a machine with more than one. */
export function imapProcesses(config: Context['config']): number {
  const p = config.imap.processes;
  if (p !== 'auto') return p;
  const cores = os.availableParallelism();
  return cores > 1 ? cores : 0;
}

/**
 * The IMAP listener with workers: admits each connection here (bans, per-address limits, one count
 * for the whole server) and hands it on unread. Refusals are answered here, as the in-process
 * listener answers them (RFC 9051 §7.1.5: BYE as the greeting).
 */
export function createImapDispatcher(ctx: Context, mode: 'imap' | 'imaps', workers: ImapWorkers, tlsProvider: TlsProvider): ImapServer {
  const guard = ctx.security.connections;
  const log = ctx.log.child({ service: mode });
  const waiting = new Set<net.Socket>();
  const refuse = (socket: net.Socket, bye: string) => {
    if (mode === 'imap') return socket.end(bye);
    // IMAPS: the BYE is only readable inside TLS, so this refusal does the handshake here.
    const secure = new tls.TLSSocket(socket, { isServer: true, ...tlsProvider.serverOptions() });
    secure.on('error', () => socket.destroy());
    secure.once('secure', () => secure.end(bye));
    setTimeout(() => socket.destroy(), 10_000).unref();
  };
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    const ip = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    socket.on('error', () => undefined);
    waiting.add(socket);
    let closed = false;
    socket.once('close', () => {
      closed = true;
      waiting.delete(socket);
    });
    guard.admit(ip).then(
      (admission) => {
        waiting.delete(socket);
        if (!admission.ok) {
          log.warn({ client: ip, reason: admission.reason }, 'connection refused');
          refuse(socket, admission.reason === 'banned' ? '* BYE Too many failed logins from your address; try again later\r\n' : '* BYE Too many connections from your address\r\n');
          return;
        }
        if (closed) return guard.release(ip);
        if (!workers.dispatch(mode, socket, ip)) {
          guard.release(ip);
          log.error({ client: ip }, 'no IMAP worker process is running; connection refused (see the errors above)');
          refuse(socket, '* BYE Temporary failure, try again later\r\n');
        }
      },
      (err: unknown) => {
        waiting.delete(socket);
        log.error({ err, client: ip }, 'connection check failed');
        refuse(socket, '* BYE Temporary failure, try again later\r\n');
      },
    );
  });
  return Object.assign(server, {
    closeSessions: () => {
      for (const s of waiting) s.destroy();
    },
  });
}
