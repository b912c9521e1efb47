import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import acme from 'acme-client';
import { pino } from 'pino';
import { generate } from 'selfsigned';
import { loadConfig, parseConfig } from '../../src/config/load.ts';
import { writeConfig } from '../helpers/cli.ts';
import { execFileSync } from 'node:child_process';
import { startServer, type RunningServer } from '../../src/server.ts';
import { tempDir } from '../helpers/server.ts';
import { dropTestStore, testStore } from '../helpers/backend.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';

/**
 * A fake ACME CA (RFC 8555) on loopback: it does not verify JWS signatures, but it
 * really validates the challenge against our listeners — HTTP-01 by fetching the key
 * authorization, TLS-ALPN-01 (RFC 8737) by a TLS handshake with ALPN "acme-tls/1"
 * checking the acmeIdentifier extension — and issues a certificate for the CSR's names.
 */
class FakeAcme {
  requests = 0;
  validations: string[] = [];
  private server: http.Server;
  private base = '';
  private jwk: Record<string, string> | null = null;
  private nonce = 0;
  private orders = new Map<string, { status: string; identifiers: Array<{ type: string; value: string }>; authz: string[]; cert?: string }>();
  private authzs = new Map<string, { status: string; value: string; challenges: Array<{ type: string; token: string; status: string; id: string }> }>();

  constructor(private target: { httpPort: number; httpsPort: number }) {
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
    return `${this.base}/dir`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  private thumbprint(): string {
    const j = this.jwk!;
    const canonical = j.kty === 'EC' ? { crv: j.crv, kty: j.kty, x: j.x, y: j.y } : { e: j.e, kty: j.kty, n: j.n };
    return crypto.createHash('sha256').update(JSON.stringify(canonical)).digest('base64url');
  }

  private reply(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
    res.writeHead(status, { 'content-type': 'application/json', 'replay-nonce': `n${++this.nonce}`, ...headers });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse) {
    this.requests++;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = req.url ?? '';
    if (url === '/dir') return this.reply(res, 200, { newNonce: `${this.base}/nonce`, newAccount: `${this.base}/acct`, newOrder: `${this.base}/order`, meta: { termsOfService: `${this.base}/tos` } });
    if (url === '/nonce') return this.reply(res, 200, '');
    const jws = JSON.parse(Buffer.concat(chunks).toString() || '{}') as { protected: string; payload: string };
    const header = JSON.parse(Buffer.from(jws.protected, 'base64url').toString()) as { jwk?: Record<string, string> };
    const payload = jws.payload ? (JSON.parse(Buffer.from(jws.payload, 'base64url').toString()) as Record<string, unknown>) : null;
    if (url === '/acct') {
      this.jwk = header.jwk!;
      assert.equal(payload?.termsOfServiceAgreed, true, 'the account agrees to the terms');
      return this.reply(res, 201, { status: 'valid' }, { location: `${this.base}/acct/1` });
    }
    if (url === '/order') {
      const id = String(this.orders.size + 1);
      const identifiers = payload!.identifiers as Array<{ type: string; value: string }>;
      const authz = identifiers.map((idf, i) => {
        const aid = `${id}-${i}`;
        this.authzs.set(aid, {
          status: 'pending',
          value: idf.value,
          challenges: ['http-01', 'tls-alpn-01'].map((type) => ({ type, token: crypto.randomBytes(16).toString('base64url'), status: 'pending', id: `${aid}-${type}` })),
        });
        return `${this.base}/authz/${aid}`;
      });
      this.orders.set(id, { status: 'pending', identifiers, authz });
      return this.reply(res, 201, this.orderBody(id), { location: `${this.base}/order/${id}` });
    }
    let m = /^\/authz\/(.+)$/.exec(url);
    if (m) return this.reply(res, 200, this.authzBody(m[1]!));
    const cm = /^\/chall\/(\d+-\d+)-(http-01|tls-alpn-01)$/.exec(url);
    if (cm) {
      const a = this.authzs.get(cm[1]!)!;
      const ch = a.challenges.find((c) => c.type === cm[2])!;
      if (payload && ch.status === 'pending') {
        const ok = await this.validate(ch.type, a.value, `${ch.token}.${this.thumbprint()}`);
        ch.status = a.status = ok ? 'valid' : 'invalid';
        this.validations.push(`${ch.type}:${a.value}:${ch.status}`);
      }
      return this.reply(res, 200, { type: ch.type, url: `${this.base}${url}`, token: ch.token, status: ch.status });
    }
    m = /^\/order\/(\d+)$/.exec(url);
    if (m) return this.reply(res, 200, this.orderBody(m[1]!));
    m = /^\/finalize\/(\d+)$/.exec(url);
    if (m) {
      const o = this.orders.get(m[1]!)!;
      const der = Buffer.from(payload!.csr as string, 'base64url');
      const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
      const { commonName, altNames } = acme.crypto.readCsrDomains(pem);
      const names = [...new Set([commonName, ...altNames].filter((n): n is string => !!n))];
      assert.deepEqual(names.sort(), o.identifiers.map((i) => i.value).sort(), 'the CSR names the ordered hosts');
      o.cert = signCsr(pem, names);
      o.status = 'valid';
      return this.reply(res, 200, this.orderBody(m[1]!));
    }
    m = /^\/cert\/(\d+)$/.exec(url);
    if (m) {
      res.writeHead(200, { 'content-type': 'application/pem-certificate-chain', 'replay-nonce': `n${++this.nonce}` });
      return res.end(this.orders.get(m[1]!)!.cert);
    }
    this.reply(res, 404, { type: 'urn:ietf:params:acme:error:malformed', detail: `no ${url}` });
  }

  private orderBody(id: string) {
    const o = this.orders.get(id)!;
    if (o.status === 'pending' && o.authz.every((u) => this.authzs.get(u.split('/').pop()!)!.status === 'valid')) o.status = 'ready';
    return {
      status: o.status,
      identifiers: o.identifiers,
      authorizations: o.authz,
      finalize: `${this.base}/finalize/${id}`,
      ...(o.cert ? { certificate: `${this.base}/cert/${id}` } : {}),
    };
  }

  private authzBody(id: string) {
    const a = this.authzs.get(id)!;
    return {
      status: a.status,
      identifier: { type: 'dns', value: a.value },
      challenges: a.challenges.map((c) => ({ type: c.type, url: `${this.base}/chall/${c.id}`, token: c.token, status: c.status })),
    };
  }

  private async validate(type: string, host: string, keyAuthorization: string): Promise<boolean> {
    if (type === 'http-01') {
      const token = keyAuthorization.split('.')[0];
      const r = await fetch(`http://127.0.0.1:${this.target.httpPort}/.well-known/acme-challenge/${token}`, { signal: AbortSignal.timeout(5000) }).catch(() => null);
      return !!r && r.status === 200 && (await r.text()) === keyAuthorization;
    }
    // RFC 8737 §3: ALPN acme-tls/1, SNI the host, a certificate with the critical acmeIdentifier = SHA-256(keyAuthorization).
    const digest = crypto.createHash('sha256').update(keyAuthorization).digest();
    const oid = Buffer.from([0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f]);
    return new Promise<boolean>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: this.target.httpsPort, servername: host, ALPNProtocols: ['acme-tls/1'], rejectUnauthorized: false }, () => {
        const raw = s.getPeerCertificate().raw;
        resolve(s.alpnProtocol === 'acme-tls/1' && raw.includes(oid) && raw.includes(digest));
        s.destroy();
      });
      s.on('error', () => resolve(false));
      s.on('close', () => resolve(false));
      s.setTimeout(5000, () => s.destroy());
    });
  }
}

/** A test CA, made once: the fake ACME server signs CSRs with it (openssl x509 -req). */
const caDir = tempDir('postern-fake-ca-');
const caReady = generate([{ name: 'commonName', value: 'Fake ACME CA' }], {
  keyType: 'ec',
  curve: 'P-256',
  extensions: [{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, critical: true }],
} as Parameters<typeof generate>[1]).then((ca) => {
  fs.writeFileSync(path.join(caDir, 'ca.crt'), ca.cert);
  fs.writeFileSync(path.join(caDir, 'ca.key'), ca.private);
});

function signCsr(csrPem: string, names: string[]): string {
  const csr = path.join(caDir, `${crypto.randomUUID()}.csr`);
  const ext = `${csr}.ext`;
  fs.writeFileSync(csr, csrPem);
  fs.writeFileSync(ext, `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\n`);
  const cert = execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', path.join(caDir, 'ca.crt'), '-CAkey', path.join(caDir, 'ca.key'), '-set_serial', String(Date.now()), '-days', '90', '-extfile', ext], { stdio: ['ignore', 'pipe', 'pipe'] });
  return cert.toString() + fs.readFileSync(path.join(caDir, 'ca.crt'), 'utf8');
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function presentedCn(server: RunningServer, servername: string): Promise<string> {
  const port = Number(server.endpoints.find((e) => e.service === 'submission')!.address.split(':').pop());
  const c = await SmtpTestClient.connect({ port });
  await c.command('EHLO client.test');
  await c.startTls({ servername });
  const cn = String(c.peerCertificate()?.subject?.CN ?? '');
  await c.quit();
  return cn;
}

for (const challenge of ['http-01', 'tls-alpn-01'] as const) {
  test(`ACME with ${challenge}: the challenge is answered, the certificate stored and served, not requested again while valid`, async () => {
    const dir = tempDir();
    const pg = testStore();
    const ports = { httpPort: await freePort(), httpsPort: await freePort() };
    await caReady;
    const ca = new FakeAcme(ports);
    const directory = await ca.start();
    const config = parseConfig(
      {
        hostname: 'mail.acme.test',
        data_dir: dir,
        domains: ['acme.test'],
        listen: {
          submission: '127.0.0.1:0',
          local: path.join(dir, 'postern.sock'),
          ...(challenge === 'http-01' ? { http: `127.0.0.1:${ports.httpPort}` } : { https: `127.0.0.1:${ports.httpsPort}` }),
        },
        tls: { acme: { enabled: true, accept_terms: true, directory, email: 'admin@acme.test', hosts: ['mail.acme.test', 'smtp.acme.test'], challenge } },
        store: { ...pg },
      },
      'test',
    );
    let server = await startServer(config, pino({ level: 'silent' }));
    try {
      await server.acme!.check();
      assert.deepEqual(ca.validations.sort(), [`${challenge}:mail.acme.test:valid`, `${challenge}:smtp.acme.test:valid`]);
      const files = server.acme!.files;
      assert.ok(fs.existsSync(files.certPath));
      assert.equal(fs.statSync(files.keyPath).mode & 0o777, 0o600, 'the key is private');
      assert.equal(fs.statSync(path.join(dir, 'tls', 'acme', 'account.key')).mode & 0o777, 0o600);
      assert.equal(await presentedCn(server, 'mail.acme.test'), 'mail.acme.test', 'served at once, no restart');
      await server.stop();

      const before = ca.requests;
      server = await startServer(config, pino({ level: 'silent' }));
      await server.acme!.check();
      assert.equal(ca.requests, before, 'a valid stored certificate is not requested again');
      assert.equal(await presentedCn(server, 'smtp.acme.test'), 'mail.acme.test', 'served for its hosts');
      assert.equal(await presentedCn(server, 'other.test'), 'mail.acme.test', 'and as the default (no tls.cert configured)');
    } finally {
      await server.stop();
      await ca.close();
      await dropTestStore(pg);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('ACME failures are logged and retried, never fatal; the server keeps serving with the fallback certificate', async () => {
  const dir = tempDir();
  const pg = testStore();
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
  // A CA that answers 404 (network errors and 5xx would be retried by acme-client for over a minute).
  const broken = http.createServer((_req, res) => res.writeHead(404).end());
  await new Promise<void>((r) => broken.listen(0, '127.0.0.1', r));
  const config = parseConfig(
    {
      hostname: 'mail.acme.test',
      data_dir: dir,
      listen: { submission: '127.0.0.1:0', http: '127.0.0.1:0', local: path.join(dir, 'postern.sock') },
      tls: { acme: { enabled: true, accept_terms: true, directory: `http://127.0.0.1:${(broken.address() as net.AddressInfo).port}/dir` } },
      store: { ...pg },
    },
    'test',
  );
  const server = await startServer(config, log);
  try {
    await server.acme!.check();
    assert.ok(lines.some((l) => l.includes('ACME: could not get a certificate (tls.acme)') && l.includes('retry_in_min":60')), 'logged with the config section');
    assert.equal(await presentedCn(server, 'mail.acme.test'), 'mail.acme.test', 'self-signed fallback');
  } finally {
    await server.stop();
    broken.close();
    await dropTestStore(pg);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('tls.acme needs accept_terms and the listener of its challenge', () => {
  const dir = tempDir();
  const noTerms = writeConfig(dir, `[tls.acme]\nenabled = true\n`);
  assert.throws(() => loadConfig(noTerms), /tls\.acme\.accept_terms/);
  const noHttp = writeConfig(dir, `[tls.acme]\nenabled = true\naccept_terms = true\n`);
  assert.throws(() => loadConfig(noHttp), /needs listen\.http/);
  fs.rmSync(dir, { recursive: true, force: true });
});
