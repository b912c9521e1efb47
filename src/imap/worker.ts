/**
 * An IMAP worker process (forked by src/imap/workers.ts through worker-boot.mjs): serves IMAP
 * sessions on sockets the main process accepted and admitted, with its own store connections,
 * so sessions use every core (`imap.processes`). Everything a session needs lives here too: the
 * authenticator (failed logins still reach the shared ban table), the store (SQLite WAL or
 * PostgreSQL: several processes share it as several nodes do), TLS for IMAPS and STARTTLS.
 * Changes committed here are relayed to the main process, which passes them on, so IDLE in any
 * process wakes for a change made in any other.
 */
import type net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { Context } from '../core/context.ts';
import { createContext } from '../server.ts';
import { createLogger } from '../log/logger.ts';
import { createTlsProvider, type TlsProvider } from '../net/certificates.ts';
import { LocalPubSub } from '../core/pubsub.ts';
import type { Stores } from '../store/open.ts';
import { serveImapConnection } from './server.ts';
import type { FromWorker, ToWorker } from './worker-messages.ts';

function send(m: FromWorker): void {
  // The channel is gone when the main process died: this worker ends with it (below).
  if (process.connected) process.send!(m);
}

let serving: { ctx: Context; log: Logger; tls: TlsProvider; context: tls.SecureContext } | null = null;
/** Every connection being served, for stop. */
const sockets = new Set<net.Socket>();
let stores: Stores | null = null;
let certs: TlsProvider | null = null;
let local: LocalPubSub | null = null;
/** Connections that arrived before start-up finished (none normally: the main process waits for ready). */
const early: Array<{ m: Extract<ToWorker, { t: 'conn' }>; socket: net.Socket }> = [];

async function init(m: Extract<ToWorker, { t: 'init' }>): Promise<void> {
  const log = createLogger(m.config.log).child({ worker: m.index });
  const built = await createContext(m.config, log, { worker: true });
  stores = built.stores;
  const ctx = built.ctx;
  if (ctx.pubsub instanceof LocalPubSub) {
    local = ctx.pubsub;
    local.addRelay((event) => send({ t: 'change', event }));
  }
  const provider = await createTlsProvider(m.config, log);
  certs = provider;
  // One secure context for every IMAPS handshake, as a tls.Server keeps one (SNI picks others).
  serving = { ctx, log: log.child({ service: 'imap' }), tls: provider, context: tls.createSecureContext(provider.serverOptions()) };
  provider.onChange(() => {
    if (serving) serving.context = tls.createSecureContext(provider.serverOptions());
  });
  for (const e of early.splice(0)) accept(e.m, e.socket);
}

/** How long an IMAPS client has for its TLS handshake (node's tls.Server allows 120 s). */
const HANDSHAKE_TIMEOUT_MS = 60_000;

function accept(m: Extract<ToWorker, { t: 'conn' }>, raw: net.Socket): void {
  if (!serving) {
    early.push({ m, socket: raw });
    return;
  }
  const s = serving;
  // The main process counts this connection against its address until told it ended, exactly once:
  // when the session ends (after STARTTLS the raw socket no longer reports its own close) or,
  // before there is a session, when the socket or the handshake fails.
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    sockets.delete(raw);
    send({ t: 'closed', id: m.id });
  };
  sockets.add(raw);
  raw.on('error', () => undefined);
  // The main process admitted it (bans, per-address limits): nothing to check again here.
  const guard = { admit: () => Promise.resolve({ ok: true as const }), release: finish };
  if (m.mode === 'imap') {
    raw.once('close', finish);
    serveImapConnection(s.ctx, raw, { mode: 'imap', secure: false, tlsProvider: s.tls, guard, log: s.log });
    return;
  }
  // IMAPS: the handshake happens here, as node's tls.Server would do it for a socket it accepted.
  const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: s.context, SNICallback: s.tls.sniCallback });
  const timer = setTimeout(() => secure.destroy(), HANDSHAKE_TIMEOUT_MS);
  const failed = () => {
    clearTimeout(timer);
    secure.destroy();
    finish();
  };
  secure.once('error', failed);
  secure.once('close', failed);
  secure.once('secure', () => {
    clearTimeout(timer);
    secure.off('error', failed);
    secure.off('close', failed);
    serveImapConnection(s.ctx, secure, { mode: 'imaps', secure: true, tlsProvider: s.tls, guard, log: s.log });
  });
}

async function stop(): Promise<void> {
  for (const s of sockets) s.destroy();
  certs?.close();
  await stores?.close();
  process.exit(0);
}

process.on('message', (m: ToWorker, handle?: net.Socket) => {
  switch (m.t) {
    case 'init':
      init(m).then(
        () => send({ t: 'ready' }),
        (err: unknown) => {
          send({ t: 'failed', message: (err as Error).message });
          process.exit(1);
        },
      );
      break;
    case 'conn':
      if (handle) accept(m, handle);
      break;
    case 'change':
      local?.deliver(m.event);
      break;
    case 'cert':
      certs?.addCertificate(m.key, m.certPath, m.keyPath, m.hosts);
      break;
    case 'stop':
      void stop();
      break;
  }
});
// Without the main process nobody admits or counts connections: end with it.
process.on('disconnect', () => void stop());
