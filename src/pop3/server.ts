import net from 'node:net';
import tls from 'node:tls';
import type { Context } from '../core/context.ts';
import type { TlsProvider } from '../net/certificates.ts';
import { Pop3Session } from './session.ts';
import type { MaildropLocks } from './lock.ts';

/**
 * The POP3 listeners: `listen.pop3` (STLS, RFC 2595; standard port 110) and
 * `listen.pop3s` (implicit TLS, RFC 8314; standard port 995). Every connection
 * passes the shared connection guard first (bans, per-IP limits), like SMTP and IMAP.
 * Both listeners share one MaildropLocks (the IN-USE lock).
 */
export type Pop3Server = net.Server & { closeSessions(): void };

export function createPop3Server(ctx: Context, mode: 'pop3' | 'pop3s', tlsProvider: TlsProvider, locks: MaildropLocks): Pop3Server {
  const guard = ctx.security.connections;
  const sockets = new Set<net.Socket>();
  const log = ctx.log.child({ service: mode });
  const serve = (socket: net.Socket, secure: boolean) => {
    const ip = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // Nothing is read before the guard answered (a client talking first waits).
    socket.pause();
    let closed = false;
    socket.once('close', () => {
      closed = true;
    });
    guard.admit(ip).then(
      (admission) => {
        if (!admission.ok) {
          log.warn({ client: ip, reason: admission.reason }, 'connection refused');
          // A -ERR greeting refuses the connection (as Dovecot does).
          socket.end(admission.reason === 'banned' ? '-ERR [SYS/TEMP] Too many failed logins from your address; try again later\r\n' : '-ERR [SYS/TEMP] Too many connections from your address\r\n');
          return;
        }
        if (closed) return guard.release(ip);
        const session = new Pop3Session(ctx, socket, {
          starttls: mode === 'pop3' ? tlsProvider.serverOptions() : null,
          secure,
          remoteAddress: ip,
          locks,
          onClose: () => guard.release(ip),
        });
        session.greet();
        socket.resume();
      },
      (err: unknown) => {
        log.error({ err, client: ip }, 'connection check failed');
        socket.end('-ERR [SYS/TEMP] Temporary failure, try again later\r\n');
      },
    );
  };
  const closeSessions = () => {
    for (const s of sockets) s.destroy();
  };
  if (mode === 'pop3s') {
    const server = tls.createServer({ ...tlsProvider.serverOptions() }, (socket) => serve(socket, true));
    tlsProvider.onChange(() => server.setSecureContext(tlsProvider.serverOptions()));
    server.on('tlsClientError', () => undefined);
    return Object.assign(server, { closeSessions });
  }
  return Object.assign(net.createServer((socket) => serve(socket, false)), { closeSessions });
}
