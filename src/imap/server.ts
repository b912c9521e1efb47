import net from 'node:net';
import tls from 'node:tls';
import type { Context } from '../core/context.ts';
import type { TlsProvider } from '../net/certificates.ts';
import type { Admission } from '../net/connection-guard.ts';
import type { Logger } from 'pino';
import { ImapSession } from './session.ts';

/**
 * The IMAP listeners: `listen.imap` (STARTTLS, RFC 9051 §6.2.1; standard port 143)
 * and `listen.imaps` (implicit TLS, RFC 8314; standard port 993). Every connection
 * passes the shared connection guard first (bans, per-IP limits), like SMTP.
 */
export type ImapServer = net.Server & { closeSessions(): void };

/** Who admits connections: the connection guard, or, in a worker process, the main process (which already did). */
export interface Admitter {
  admit(address: string): Promise<Admission>;
  release(address: string): void;
}

export interface ServeOptions {
  mode: 'imap' | 'imaps';
  /** Whether the connection is already inside TLS (IMAPS). */
  secure: boolean;
  tlsProvider: TlsProvider;
  guard: Admitter;
  log: Logger;
}

/**
 * One accepted connection (already through its TLS handshake on IMAPS): admission, then the
 * session. Listeners here call it, and so does an IMAP worker process for the connections the
 * main process hands it (src/imap/worker.ts).
 */
export function serveImapConnection(ctx: Context, socket: net.Socket, o: ServeOptions): void {
  const ip = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
  socket.on('error', () => undefined);
  socket.setNoDelay(true);
  if (!o.secure) socket.pause();
  let closed = false;
  socket.once('close', () => {
    closed = true;
  });
  o.guard.admit(ip).then(
    (admission) => {
      if (!admission.ok) {
        o.log.warn({ client: ip, reason: admission.reason }, 'connection refused');
        // RFC 9051 §7.1.5: BYE as the greeting refuses the connection.
        socket.end(admission.reason === 'banned' ? '* BYE Too many failed logins from your address; try again later\r\n' : '* BYE Too many connections from your address\r\n');
        return;
      }
      if (closed) return o.guard.release(ip);
      const session = new ImapSession(ctx, socket, {
        starttls: o.mode === 'imap' ? o.tlsProvider.serverOptions() : null,
        secure: o.secure,
        remoteAddress: ip,
        onClose: () => o.guard.release(ip),
      });
      session.greet();
      socket.resume();
    },
    (err: unknown) => {
      o.log.error({ err, client: ip }, 'connection check failed');
      socket.end('* BYE Temporary failure, try again later\r\n');
    },
  );
}

export function createImapServer(ctx: Context, mode: 'imap' | 'imaps', tlsProvider: TlsProvider): ImapServer {
  const sockets = new Set<net.Socket>();
  const log = ctx.log.child({ service: mode });
  const guard = ctx.security.connections;
  const serve = (socket: net.Socket, secure: boolean) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    serveImapConnection(ctx, socket, { mode, secure, tlsProvider, guard, log });
  };
  const closeSessions = () => {
    for (const s of sockets) s.destroy();
  };
  if (mode === 'imaps') {
    const server = tls.createServer({ ...tlsProvider.serverOptions() }, (socket) => serve(socket, true));
    tlsProvider.onChange(() => server.setSecureContext(tlsProvider.serverOptions()));
    server.on('tlsClientError', () => undefined);
    return Object.assign(server, { closeSessions });
  }
  return Object.assign(net.createServer((socket) => serve(socket, false)), { closeSessions });
}
