import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { SMTPServer } from 'smtp-server';
import { PROXY_HEADER_TIMEOUT_MS, readProxyHeader, type ProxyHeaderError, type TrustedProxies } from '../net/proxy-protocol.ts';

/** What smtp-server's _handleProxy hands to connect(): the session id and the client's address. */
type SocketOptions = NonNullable<Parameters<Parameters<SMTPServer['_handleProxy']>[1]>[1]>;

/**
 * Makes an SMTP/LMTP listener accept PROXY protocol v1 and v2 headers from the trusted
 * balancers (config listen.proxy_protocol), so the session, the per-IP limit, the logs
 * and the Received header see the real client.
 *
 * smtp-server's own `useProxy` reads v1 only, answers a bad header with "* BAD" and
 * waits the whole idle timeout for it. So we replace its two per-socket hooks on this
 * instance (both are declared in its typings; checked against smtp-server 3.21.6):
 * - `_expectsProxyHeader`: true for trusted peers. smtp-server then guards the socket
 *   until connect() — it counts against maxClients and server.close() destroys it.
 * - `_handleProxy`: reads and strips the header ourselves (src/net/proxy-protocol.ts),
 *   then passes remoteAddress/remotePort in the socket options to connect(), the way
 *   smtp-server's own v1 reader does; SMTPConnection takes the client's address from there.
 * Peers not in the list go through smtp-server's code unchanged: no header expected.
 */
export function useProxyProtocol(server: SMTPServer, trusted: TrustedProxies, log: Logger, timeoutMs = PROXY_HEADER_TIMEOUT_MS): void {
  const original = server._handleProxy.bind(server);
  server._expectsProxyHeader = (socket) => trusted.matches(socket.remoteAddress);
  server._handleProxy = (socket, callback) => {
    const proxy = socket.remoteAddress;
    if (!trusted.matches(proxy)) return original(socket, callback);
    readProxyHeader(socket, { timeoutMs })
      .then(
        (header) => {
          const opts: SocketOptions = { id: sessionId() };
          if (header.source) {
            opts.remoteAddress = header.source.address;
            opts.remotePort = header.source.port;
          }
          log.debug({ proxy, client: header.source?.address ?? proxy, version: header.version, command: header.command, family: header.family }, 'PROXY header');
          callback(null, opts);
        },
        (err: ProxyHeaderError) => {
          // readProxyHeader has already closed the socket; smtp-server drops it on an error.
          // A bare TCP health check (connect, close) is routine; a bad or missing header means a misconfigured balancer.
          const level = err.kind === 'closed' ? 'debug' : 'warn';
          log[level]({ proxy, reason: err.message }, 'connection from trusted proxy closed: no valid PROXY header');
          callback(err);
        },
      )
      .catch((err: unknown) => {
        // A throw from smtp-server's connect() must not become an unhandled rejection (that ends the process).
        log.error({ err, proxy }, 'starting a proxied session failed');
        socket.destroy();
      });
  };
}

/** Same shape as smtp-server's session ids (16 base-32 digits), so logs look alike either way. */
function sessionId(): string {
  return BigInt('0x' + crypto.randomBytes(10).toString('hex'))
    .toString(32)
    .padStart(16, '0');
}
