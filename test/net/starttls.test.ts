import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { upgradeToTls } from '../../src/net/starttls.ts';
import { TLS_MIN_VERSION } from '../../src/net/tls.ts';

/**
 * The shared in-band TLS upgrade (for IMAP STARTTLS / POP3 STLS), driven by a minimal
 * line protocol: "STARTTLS" upgrades, any other line is echoed back as "ECHO line".
 */
async function lineServer(): Promise<{ port: number; discarded: number[]; close(): Promise<void> }> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', curve: 'P-256' } as Parameters<typeof generate>[1]);
  const discarded: number[] = [];
  const server = net.createServer((plain) => {
    const serve = (sock: net.Socket, secure: boolean) => {
      let buf = '';
      const onData = (d: Buffer) => {
        buf += d.toString('latin1');
        for (let nl; (nl = buf.indexOf('\r\n')) >= 0; ) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 2);
          if (line === 'STARTTLS' && !secure) {
            sock.off('data', onData);
            sock.write('OK begin TLS\r\n');
            // Whatever followed STARTTLS in plaintext is thrown away, never parsed.
            void upgradeToTls(sock, { key: pems.private, cert: pems.cert, minVersion: TLS_MIN_VERSION }, { bufferedPlaintext: buf.length }).then(
              (r) => {
                discarded.push(r.discarded);
                serve(r.socket, true);
              },
              () => undefined,
            );
            return;
          }
          sock.write(`ECHO ${line}\r\n`);
        }
      };
      sock.on('data', onData);
      sock.on('error', () => undefined);
    };
    serve(plain, false);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    discarded,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

function readLines(sock: net.Socket): { lines: string[]; next(): Promise<string> } {
  const lines: string[] = [];
  let buf = '';
  let waiter: ((l: string) => void) | null = null;
  sock.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    for (let nl; (nl = buf.indexOf('\r\n')) >= 0; ) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 2);
    }
    if (waiter && lines.length) waiter(lines.shift()!);
  });
  return {
    lines,
    next: () => (lines.length ? Promise.resolve(lines.shift()!) : new Promise((r) => (waiter = r))),
  };
}

test('commands pipelined behind STARTTLS are discarded, not run inside TLS (CVE-2011-0411 class)', async () => {
  const s = await lineServer();
  try {
    const plain = net.connect(s.port, '127.0.0.1');
    await new Promise((r) => plain.once('connect', r));
    const reader = readLines(plain);
    plain.write('STARTTLS\r\nINJECTED 1\r\nINJECTED 2\r\n');
    assert.equal(await reader.next(), 'OK begin TLS');
    plain.removeAllListeners('data');
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false });
    await new Promise((r) => secure.once('secureConnect', r));
    const r2 = readLines(secure);
    secure.write('HELLO\r\n');
    assert.equal(await r2.next(), 'ECHO HELLO', 'the first reply inside TLS answers our own command');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(r2.lines, [], 'no replies to injected commands');
    assert.equal(s.discarded[0], 'INJECTED 1\r\nINJECTED 2\r\n'.length);
    secure.destroy();
  } finally {
    await s.close();
  }
});

test('TLS 1.1 is refused by the upgrade (RFC 8996)', async () => {
  const s = await lineServer();
  try {
    const plain = net.connect(s.port, '127.0.0.1');
    await new Promise((r) => plain.once('connect', r));
    const reader = readLines(plain);
    plain.write('STARTTLS\r\n');
    assert.equal(await reader.next(), 'OK begin TLS');
    plain.removeAllListeners('data');
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' });
    const err = await new Promise<Error | null>((r) => {
      secure.once('secureConnect', () => r(null));
      secure.once('error', r);
    });
    assert.ok(err, 'handshake must fail');
    secure.destroy();
  } finally {
    await s.close();
  }
});
