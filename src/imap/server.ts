import net from 'node:net';
import tls from 'node:tls';
import type { Context } from '../core/context.ts';
import type { TlsProvider } from '../net/certificates.ts';
import { ImapSession } from './session.ts';

/**
 * The IMAP listeners: `listen.imap` (STARTTLS, RFC 9051 §6.2.1; standard port 143)
 * and `listen.imaps` (implicit TLS, RFC 8314; standard port 993). Every connection
 * passes the shared connection guard first (bans, per-IP limits), like SMTP.
 */
export type ImapServer = net.Server & { closeSessions(): void };

export function createImapServer(ctx: Context, mode: 'imap' | 'imaps', tlsProvider: TlsProvider): ImapServer {
  const guard = ctx.security.connections;
  const sockets = new Set<net.Socket>();
  const log = ctx.log.child({ service: mode });
  const serve = (socket: net.Socket, secure: boolean) => {
    const ip = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    if (!secure) socket.pause();
    let closed = false;
    socket.once('close', () => {
      closed = true;
    });
    guard.admit(ip).then(
      (admission) => {
        if (!admission.ok) {
          log.warn({ client: ip, reason: admission.reason }, 'connection refused');
          // RFC 9051 §7.1.5: BYE as the greeting refuses the connection.
          socket.end(admission.reason === 'banned' ? '* BYE Too many failed logins from your address; try again later\r\n' : '* BYE Too many connections from your address\r\n');
          return;
        }
        if (closed) return guard.release(ip);
        const session = new ImapSession(ctx, socket, {
          starttls: mode === 'imap' ? tlsProvider.serverOptions() : null,
          secure,
          remoteAddress: ip,
          onClose: () => guard.release(ip),
        });
        session.greet();
        socket.resume();
      },
      (err: unknown) => {
        log.error({ err, client: ip }, 'connection check failed');
        socket.end('* BYE Temporary failure, try again later\r\n');
      },
    );
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
