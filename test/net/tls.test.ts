import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { pino } from 'pino';
import { makeCert } from '../helpers/certs.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { StartupError } from '../../src/core/errors.ts';
import { createTlsProvider, type TlsProvider } from '../../src/net/certificates.ts';
import { TLS_MIN_VERSION } from '../../src/net/tls.ts';
import { tempDir } from '../helpers/server.ts';

/**
 * The TLS provider on its own, over a plain node:tls server built from
 * provider.serverOptions() (the IMAP/POP3/HTTPS way); certificates.test.ts covers
 * the same certificates on the SMTP listeners.
 */


function config(dir: string, tlsSection: ConfigInput['tls'] = {}) {
  return parseConfig({ hostname: 'mx.fallback.test', data_dir: dir, tls: tlsSection }, 'test');
}

/** A log that keeps its lines, for asserting on warnings and errors. */
function memoryLog() {
  const lines: Array<{ level: number; msg: string; [k: string]: unknown }> = [];
  const log = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  return { log, lines, text: () => lines.map((l) => JSON.stringify(l)).join('\n') };
}

/** A TLS server on loopback with the provider's options, holding connections open; every socket is closed with it. */
async function tlsServer(provider: TlsProvider): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = tls.createServer(provider.serverOptions(), () => {});
  server.on('connection', (s) => (sockets.add(s), s.on('close', () => sockets.delete(s))));
  server.on('tlsClientError', () => {});
  provider.onChange(() => {
    const { key, cert } = provider.defaultMaterial();
    server.setSecureContext({ key, cert, minVersion: TLS_MIN_VERSION });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** The presented certificate's CN and the negotiated version, or the handshake error. */
function handshake(port: number, opts: tls.ConnectionOptions = {}): Promise<{ cn: string; san: string; version: string | null }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts }, () => {
      const peer = s.getPeerCertificate();
      resolve({ cn: String(peer.subject?.CN ?? ''), san: peer.subjectaltname ?? '', version: s.getProtocol() });
      s.destroy();
    });
    s.on('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('SNI over a node:tls server: each host its certificate, wildcards one label, case-insensitive, unknown names the default', async () => {
  const dir = tempDir();
  const def = await makeCert(dir, 'default', ['mail.default.test']);
  const a = await makeCert(dir, 'a', ['imap.a.test', 'pop.a.test']);
  const b = await makeCert(dir, 'b', ['b-cert.test']);
  const provider = await createTlsProvider(
    config(dir, { cert: def.cert, key: def.key, certificate: [{ ...a }, { ...b, hosts: ['*.b.test', 'exact.other.test'] }] }),
    pino({ level: 'silent' }),
  );
  const server = await tlsServer(provider);
  try {
    assert.equal((await handshake(server.port)).cn, 'mail.default.test', 'no SNI: the default');
    assert.equal((await handshake(server.port, { servername: 'imap.a.test' })).cn, 'imap.a.test');
    const pop = await handshake(server.port, { servername: 'pop.a.test' });
    assert.equal(pop.cn, 'imap.a.test', 'every subjectAltName of a certificate without hosts');
    assert.match(pop.san, /DNS:pop\.a\.test/);
    assert.equal((await handshake(server.port, { servername: 'IMAP.A.Test' })).cn, 'imap.a.test', 'case-insensitive');
    assert.equal((await handshake(server.port, { servername: 'x.b.test' })).cn, 'b-cert.test', 'wildcard');
    assert.equal((await handshake(server.port, { servername: 'exact.other.test' })).cn, 'b-cert.test', 'configured hosts');
    assert.equal((await handshake(server.port, { servername: 'b-cert.test' })).cn, 'mail.default.test', 'configured hosts replace the names in the certificate');
    assert.equal((await handshake(server.port, { servername: 'b.test' })).cn, 'mail.default.test', '*.b.test does not cover b.test');
    assert.equal((await handshake(server.port, { servername: 'x.y.b.test' })).cn, 'mail.default.test', 'nor two labels');
    assert.equal((await handshake(server.port, { servername: 'unknown.test' })).cn, 'mail.default.test');
    assert.equal(provider.defaultMaterial().selfSigned, false);
  } finally {
    await server.close();
    provider.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('without tls.cert the first [[tls.certificate]] is the default', async () => {
  const dir = tempDir();
  const a = await makeCert(dir, 'a', ['first.test']);
  const b = await makeCert(dir, 'b', ['second.test']);
  const provider = await createTlsProvider(config(dir, { certificate: [{ ...a }, { ...b }] }), pino({ level: 'silent' }));
  const server = await tlsServer(provider);
  try {
    assert.equal((await handshake(server.port, { servername: 'nobody.test' })).cn, 'first.test');
    assert.equal((await handshake(server.port, { servername: 'second.test' })).cn, 'second.test');
    assert.equal(fs.existsSync(path.join(dir, 'tls', 'selfsigned.crt')), false, 'no self-signed fallback generated');
  } finally {
    await server.close();
    provider.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('reload: a replaced pair is served to new connections and onChange fires; a mismatched pair is refused, the previous kept', async () => {
  const dir = tempDir();
  const live = await makeCert(dir, 'live', ['one.test']);
  const sni = await makeCert(dir, 'sni', ['sni-one.test']);
  const { log, lines, text } = memoryLog();
  const provider = await createTlsProvider(
    config(dir, { cert: live.cert, key: live.key, certificate: [{ ...sni, hosts: ['sni.test'] }], reload_check: '100ms' }),
    log,
  );
  let changes = 0;
  provider.onChange(() => changes++);
  const server = await tlsServer(provider);
  try {
    assert.equal((await handshake(server.port)).cn, 'one.test');
    // An open connection keeps its certificate across the reload.
    const open = tls.connect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false });
    await new Promise((r) => open.once('secureConnect', r));

    const other = tempDir();
    const two = await makeCert(other, 'two', ['two.test']);
    fs.copyFileSync(two.key, live.key);
    fs.copyFileSync(two.cert, live.cert);
    const sniTwo = await makeCert(other, 'sni2', ['sni-two.test']);
    fs.copyFileSync(sniTwo.key, sni.key);
    fs.copyFileSync(sniTwo.cert, sni.cert);
    await sleep(350);
    assert.ok(changes >= 1, 'onChange fired');
    assert.equal((await handshake(server.port)).cn, 'two.test', 'the default certificate is the new one');
    assert.equal((await handshake(server.port, { servername: 'sni.test' })).cn, 'sni-two.test', 'an SNI certificate too');
    assert.equal(String(open.getPeerCertificate().subject?.CN), 'one.test', 'the open connection is untouched');
    assert.equal(open.destroyed, false);
    open.destroy();
    assert.ok(lines.some((l) => l.level === 30 && /reloaded/.test(l.msg)), 'logged at info');
    await assert.rejects(
      handshake(server.port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
      /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|protocol version/i,
      'still TLS 1.2 minimum after the reload',
    );

    // A new certificate whose key is not written yet: refused, two.test still served, an error names the key.
    const before = changes;
    const three = await makeCert(other, 'three', ['three.test']);
    fs.copyFileSync(three.cert, live.cert);
    await sleep(350);
    assert.equal((await handshake(server.port)).cn, 'two.test');
    assert.equal(changes, before, 'no change announced');
    assert.ok(lines.some((l) => l.level === 50 && /\btls\b/.test(JSON.stringify(l)) && /does not belong/.test(JSON.stringify(l))), text());
    fs.rmSync(other, { recursive: true, force: true });
  } finally {
    await server.close();
    provider.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('TLS 1.2 is the minimum: a TLS 1.1 client is refused by the server, 1.2 and 1.3 connect', async () => {
  const dir = tempDir();
  const c = await makeCert(dir, 'c', ['v.test']);
  const provider = await createTlsProvider(config(dir, { cert: c.cert, key: c.key, certificate: [{ ...(await makeCert(dir, 'd', ['sni.v.test'])) }] }), pino({ level: 'silent' }));
  const server = await tlsServer(provider);
  try {
    assert.equal(provider.serverOptions().minVersion, 'TLSv1.2');
    for (const servername of [undefined, 'sni.v.test']) {
      // SECLEVEL=0 lets this OpenSSL offer TLS 1.1 at all, so the refusal is the server's (protocol_version alert).
      await assert.rejects(
        handshake(server.port, { servername, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
        (err: NodeJS.ErrnoException) => /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|protocol version/i.test(`${err.code} ${err.message}`),
      );
      assert.equal((await handshake(server.port, { servername, maxVersion: 'TLSv1.2' })).version, 'TLSv1.2');
      assert.equal((await handshake(server.port, { servername })).version, 'TLSv1.3');
    }
  } finally {
    await server.close();
    provider.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('nothing configured: a self-signed certificate for hostname under data_dir/tls, with a warning naming the keys to set', async () => {
  const dir = tempDir();
  const { log, lines } = memoryLog();
  const provider = await createTlsProvider(config(dir), log);
  const server = await tlsServer(provider);
  try {
    const m = provider.defaultMaterial();
    assert.equal(m.selfSigned, true);
    assert.ok(fs.existsSync(path.join(dir, 'tls', 'selfsigned.crt')));
    assert.equal(fs.statSync(path.join(dir, 'tls', 'selfsigned.key')).mode & 0o777, 0o600);
    const warning = lines.find((l) => l.level === 40);
    assert.ok(warning, 'a warning');
    assert.match(warning.msg, /tls\.cert/);
    assert.match(warning.msg, /tls\.key/);
    const hs = await handshake(server.port, { servername: 'whatever.test' });
    assert.equal(hs.cn, 'mx.fallback.test');
    assert.match(hs.san, /DNS:mx\.fallback\.test/);
    provider.close();

    // The next start reuses it, without a new warning.
    const again = memoryLog();
    const p2 = await createTlsProvider(config(dir), again.log);
    assert.deepEqual(p2.defaultMaterial().cert, m.cert);
    assert.equal(again.lines.filter((l) => l.level === 40).length, 0);
    p2.close();
  } finally {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('start-up errors name the config key, the path and the reason', async () => {
  const dir = tempDir();
  const a = await makeCert(dir, 'a', ['a.test']);
  const b = await makeCert(dir, 'b', ['b.test']);
  const silent = pino({ level: 'silent' });
  const fails = async (t: ConfigInput['tls'], pattern: RegExp) => {
    await assert.rejects(createTlsProvider(config(dir, t), silent), (err: Error) => {
      assert.ok(err instanceof StartupError, 'a StartupError: one line, no stack');
      assert.match(err.message, pattern);
      return true;
    });
  };
  await fails({ cert: path.join(dir, 'nope.crt'), key: a.key }, /tls\.cert .*nope\.crt.*(ENOENT|no such file)/);
  await fails({ cert: a.cert, key: b.key }, /tls\.key .*b\.key.* does not belong to the certificate/);
  await fails({ certificate: [{ ...a }, { cert: b.cert, key: path.join(dir, 'missing.key') }] }, /tls\.certificate\[1\]\.key .*missing\.key/);
  await fails({ certificate: [{ cert: a.cert, key: b.key }] }, /tls\.certificate\[0\]\.key .*does not belong/);
  fs.writeFileSync(path.join(dir, 'junk.crt'), 'not a certificate\n');
  await fails({ cert: path.join(dir, 'junk.crt'), key: a.key }, /tls\.cert .*junk\.crt.* not a PEM certificate/);
  fs.rmSync(dir, { recursive: true, force: true });
});
