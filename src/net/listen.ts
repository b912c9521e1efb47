import type net from 'node:net';
import type { Logger } from 'pino';
import { StartupError } from '../core/errors.ts';
import { splitHostPort } from '../config/load.ts';

/**
 * Starts a node listener (IMAP, POP3, ACME's HTTP/HTTPS) on `listen.<service>` = addr and
 * returns its endpoint for the start-up banner (the real port when addr asked for port 0).
 * A failure names the config key; later listener errors are logged, not thrown.
 */
export async function listenNet(server: net.Server, service: string, addr: string, log: Logger): Promise<{ service: string; address: string }> {
  const { host, port } = splitHostPort(addr);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    throw new StartupError(`cannot listen for ${service} on ${addr} (config key listen.${service}): ${(err as Error).message}`);
  }
  // After listen: a failed listen is reported once, by the error above.
  server.on('error', (err) => log.error({ err, service }, 'listener error'));
  const bound = server.address();
  return { service, address: `${host.includes(':') ? `[${host}]` : host}:${bound && typeof bound === 'object' ? bound.port : port}` };
}
