import http from 'node:http';
import https from 'node:https';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { AcmeChallenges } from './acme.ts';
import type { TlsProvider } from './certificates.ts';
import { TLS_MIN_VERSION } from './tls.ts';
import { listenNet } from './listen.ts';

const CHALLENGE_PATH = '/.well-known/acme-challenge/';

export interface WebListeners {
  endpoints: Array<{ service: string; address: string }>;
  close(): Promise<void>;
}

/**
 * listen.http and listen.https. Until the web UI lands they only answer ACME
 * challenges: HTTP-01 at /.well-known/acme-challenge/TOKEN (RFC 8555 §8.3), and
 * TLS-ALPN-01 (RFC 8737): a client offering ALPN "acme-tls/1" for a name with a
 * pending challenge gets the challenge certificate. Everything else: 404.
 */
export async function startWebListeners(config: Config, log: Logger, tlsProvider: TlsProvider, challenges: AcmeChallenges): Promise<WebListeners> {
  const servers: Array<http.Server> = [];
  const endpoints: WebListeners['endpoints'] = [];
  const handler: http.RequestListener = (req, res) => {
    const url = req.url ?? '/';
    if (req.method === 'GET' && url.startsWith(CHALLENGE_PATH)) {
      const answer = challenges.http.get(url.slice(CHALLENGE_PATH.length));
      if (answer) {
        log.info({ client: req.socket.remoteAddress, token: url.slice(CHALLENGE_PATH.length) }, 'ACME: answered an HTTP-01 challenge');
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(answer);
        return;
      }
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  };
  const start = async (service: 'http' | 'https', addr: string, server: http.Server) => {
    try {
      endpoints.push(await listenNet(server, service, addr, log));
    } catch (err) {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      throw err;
    }
    servers.push(server);
  };
  if (config.listen.http) await start('http', config.listen.http, http.createServer(handler));
  if (config.listen.https) {
    const server = https.createServer(
      {
        ...tlsProvider.serverOptions(),
        // RFC 8737 §3: the validation connection offers only "acme-tls/1".
        ALPNProtocols: ['acme-tls/1', 'http/1.1'],
        SNICallback: (name, cb) => {
          const challenge = challenges.alpn.get(name.toLowerCase());
          if (challenge) return cb(null, challenge);
          tlsProvider.sniCallback(name, cb);
        },
      },
      handler,
    );
    tlsProvider.onChange(() => {
      const { key, cert } = tlsProvider.defaultMaterial();
      server.setSecureContext({ key, cert, minVersion: TLS_MIN_VERSION });
    });
    await start('https', config.listen.https, server);
  }
  return {
    endpoints,
    close: () => Promise.all(servers.map((s) => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r()))))).then(() => undefined),
  };
}
