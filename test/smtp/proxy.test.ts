import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { startTestServer, inbox, blobText, message, type TestServer } from '../helpers/server.ts';

// PROXY protocol v1/v2 on the SMTP and LMTP listeners (listen.proxy_protocol), over real sockets.
// Every test connects from 127.0.0.1, which is the trusted balancer of `t`.

let t: TestServer;
/** Trusts only 10.0.0.0/8: our 127.0.0.1 connections are ordinary clients there. */
let untrusted: TestServer;
/** max_connections_per_ip = 2, to see which address the limit counts. */
let limited: TestServer;

// `listen` replaces the helper's whole listen object; `local` is filled in by the helper.
const listen = (trusted: string[]) => ({ smtp: '127.0.0.1:0', lmtp: '127.0.0.1:0', proxy_protocol: trusted });

before(async () => {
  t = await startTestServer({ listen: listen(['127.0.0.1']) });
  untrusted = await startTestServer({ listen: listen(['10.0.0.0/8']) });
  limited = await startTestServer({ listen: listen(['::1', '127.0.0.0/8']), smtp: { max_connections_per_ip: 2 } });
});
after(async () => {
  await Promise.all([t.stop(), untrusted.stop(), limited.stop()]);
});

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function v1(src: string, sport = 40000): string {
  return `PROXY ${net.isIPv6(src) ? 'TCP6' : 'TCP4'} ${src} ${net.isIPv6(src) ? '::1' : '127.0.0.1'} ${sport} 25\r\n`;
}

/** A v2 PROXY (or LOCAL) header over TCP for an IPv4 or IPv6 source. */
function v2(src: string, opts: { local?: boolean } = {}): Buffer {
  const six = net.isIPv6(src);
  const addr = (a: string) => (six ? ipv6Bytes(a) : Buffer.from(a.split('.').map(Number)));
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(40001, 0);
  ports.writeUInt16BE(25, 2);
  const body = Buffer.concat([addr(src), addr(six ? '::1' : '127.0.0.1'), ports]);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(body.length);
  return Buffer.concat([SIG, Buffer.from([opts.local ? 0x20 : 0x21, six ? 0x21 : 0x11]), len, body]);
}

function ipv6Bytes(a: string): Buffer {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - tl.length).fill('0'), ...tl];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

/**
 * A stand-in for HAProxy: accepts connections and relays each to `target`, prefixed with
 * `header`, so SmtpTestClient can talk to the server through it exactly as through a balancer.
 */
async function fakeBalancer(target: number, header: string | Buffer): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(s);
      });
    }
    upstream.write(header);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close() {
      for (const s of sockets) s.destroy();
      srv.close();
    },
  };
}

async function deliver(server: TestServer, port: number, subject: string, lmtp = false): Promise<string> {
  const c = await SmtpTestClient.connect({ port });
  assert.equal(c.greeting.code, 220, c.greeting.text);
  if (lmtp) {
    assert.equal((await c.command('LHLO mta.example.test')).code, 250);
    assert.equal((await c.command('MAIL FROM:<sender@remote.test>')).code, 250);
    assert.equal((await c.command('RCPT TO:<alice@example.test>')).code, 250);
    assert.deepEqual((await c.dataLmtp(message(subject), 1)).map((r) => r.code), [250]);
  } else {
    const res = await c.sendMail({ from: 'sender@remote.test', to: ['alice@example.test'], message: message(subject) });
    assert.equal(res.data?.code, 250, res.data?.text);
  }
  await c.quit();
  const m = (await inbox(server, 'alice@example.test')).find((x) => x.subject === subject);
  assert.ok(m, `${subject} stored`);
  return blobText(server, m.blobHash);
}

/** Raw connection straight to the server: what it sends, and when it closes. */
function rawConnect(port: number): Promise<{ socket: net.Socket; received: () => string; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => {});
    const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now())));
    socket.once('connect', () => resolve({ socket, received: () => got, closed }));
    socket.once('error', reject);
  });
}

test('SMTP behind a v1 balancer: the Received header names the client from the header', async () => {
  const lb = await fakeBalancer(t.smtpPort, v1('192.0.2.10'));
  try {
    const raw = await deliver(t, lb.port, 'proxy-v1');
    assert.match(raw, /^Return-Path: <sender@remote\.test>\r\nReceived: from client\.test \(\[192\.0\.2\.10\]\)\r\n\tby mx\.example\.test \(Postern\) with ESMTP id /);
    assert.doesNotMatch(raw.split('\r\n\r\n')[0]!, /127\.0\.0\.1/);
  } finally {
    lb.close();
  }
});

test('SMTP behind a v2 balancer, IPv4 and IPv6 clients', async () => {
  const lb4 = await fakeBalancer(t.smtpPort, v2('198.51.100.77'));
  const lb6 = await fakeBalancer(t.smtpPort, v2('2001:db8::25'));
  try {
    assert.match(await deliver(t, lb4.port, 'proxy-v2-4'), /^Return-Path: [^\r]*\r\nReceived: from client\.test \(\[198\.51\.100\.77\]\)\r\n/);
    assert.match(await deliver(t, lb6.port, 'proxy-v2-6'), /^Return-Path: [^\r]*\r\nReceived: from client\.test \(\[2001:db8::25\]\)\r\n/);
  } finally {
    lb4.close();
    lb6.close();
  }
});

test('STARTTLS through a balancer: the session keeps the proxied address', async () => {
  const lb = await fakeBalancer(t.smtpPort, v2('192.0.2.44'));
  try {
    const c = await SmtpTestClient.connect({ port: lb.port });
    assert.equal((await c.command('EHLO client.test')).code, 250);
    assert.equal((await c.startTls()).code, 220);
    const res = await c.sendMail({ from: 'sender@remote.test', to: ['alice@example.test'], message: message('proxy-tls') });
    assert.equal(res.data?.code, 250);
    await c.quit();
    const m = (await inbox(t, 'alice@example.test')).find((x) => x.subject === 'proxy-tls');
    assert.ok(m);
    assert.match(await blobText(t, m.blobHash), /\r\nReceived: from client\.test \(\[192\.0\.2\.44\]\)\r\n\t\(using TLS\)\r\n\tby mx\.example\.test \(Postern\) with ESMTPS id /);
  } finally {
    lb.close();
  }
});

test('v2 LOCAL (balancer health check) and v1 UNKNOWN: the session is the balancer itself', async () => {
  const local = await fakeBalancer(t.smtpPort, v2('203.0.113.9', { local: true }));
  const unknown = await fakeBalancer(t.smtpPort, 'PROXY UNKNOWN\r\n');
  try {
    assert.match(await deliver(t, local.port, 'proxy-local'), /\r\nReceived: from client\.test \(\[127\.0\.0\.1\]\)\r\n/);
    assert.match(await deliver(t, unknown.port, 'proxy-unknown'), /\r\nReceived: from client\.test \(\[127\.0\.0\.1\]\)\r\n/);
  } finally {
    local.close();
    unknown.close();
  }
});

test('LMTP behind a balancer (v1 and v2)', async () => {
  const a = await fakeBalancer(t.lmtpPort, v1('2001:db8::c0de'));
  const b = await fakeBalancer(t.lmtpPort, v2('192.0.2.99'));
  try {
    assert.match(await deliver(t, a.port, 'proxy-lmtp-v1', true), /\r\nReceived: from mta\.example\.test \(\[2001:db8::c0de\]\)\r\n\tby mx\.example\.test \(Postern\) with LMTP id /);
    assert.match(await deliver(t, b.port, 'proxy-lmtp-v2', true), /\r\nReceived: from mta\.example\.test \(\[192\.0\.2\.99\]\)\r\n/);
  } finally {
    a.close();
    b.close();
  }
});

test('bytes after the header in the same segment reach the SMTP session', async () => {
  // A client that talks before the greeting: the session sees its command (and, as on a
  // direct connection, answers an early talker with 421), so nothing after the header is lost.
  const c = await rawConnect(t.smtpPort);
  c.socket.write(v1('192.0.2.11') + 'NOOP\r\n');
  await c.closed;
  assert.match(c.received(), /^421 4\.4\.2 mx\.example\.test You talk too soon\r\n$/);
});

test('a trusted connection with a garbage header is closed without a 220; the listener keeps serving', async () => {
  for (const garbage of ['EHLO client.test\r\n', 'PROXY TCP4 not-an-ip 127.0.0.1 1 25\r\n', Buffer.concat([SIG, Buffer.from([0x21, 0x11, 0xff, 0xff])]), 'PROXY UNKNOWN ' + 'x'.repeat(500)]) {
    const c = await rawConnect(t.smtpPort);
    c.socket.write(garbage);
    await c.closed;
    assert.equal(c.received(), '', `nothing sent back for ${JSON.stringify(garbage.toString().slice(0, 30))}`);
  }
  const lb = await fakeBalancer(t.smtpPort, v1('192.0.2.12'));
  try {
    const c = await SmtpTestClient.connect({ port: lb.port });
    assert.equal(c.greeting.code, 220);
    await c.quit();
  } finally {
    lb.close();
  }
});

test('a trusted connection without a complete header is closed after 5 s, without a reply', async () => {
  const c = await rawConnect(t.smtpPort);
  const started = Date.now();
  c.socket.write('PROXY TCP4 192.0.2.1');
  const closedAt = await c.closed;
  assert.equal(c.received(), '');
  const waited = closedAt - started;
  assert.ok(waited >= 4500 && waited < 9000, `closed after ${waited} ms`);
});

test('an address that is not a trusted balancer is served normally, and its PROXY line is just a bad command', async () => {
  const raw = await deliver(untrusted, untrusted.smtpPort, 'untrusted-plain');
  assert.match(raw, /\r\nReceived: from client\.test \(\[127\.0\.0\.1\]\)\r\n/);
  const c = await SmtpTestClient.connect({ port: untrusted.smtpPort });
  assert.equal(c.greeting.code, 220);
  const r = await c.command('PROXY TCP4 192.0.2.66 127.0.0.1 1 25');
  assert.ok(r.code >= 500, `${r.code} ${r.text}`);
  const res = await c.sendMail({ from: 'sender@remote.test', to: ['alice@example.test'], message: message('untrusted-proxy-line') });
  assert.equal(res.data?.code, 250);
  await c.quit();
  const m = (await inbox(untrusted, 'alice@example.test')).find((x) => x.subject === 'untrusted-proxy-line');
  assert.ok(m);
  assert.match(await blobText(untrusted, m.blobHash), /\r\nReceived: from client\.test \(\[127\.0\.0\.1\]\)\r\n/);
});

test('smtp.max_connections_per_ip counts the proxied client, not the balancer', async () => {
  const same = await fakeBalancer(limited.smtpPort, v1('192.0.2.50'));
  const other = await fakeBalancer(limited.smtpPort, v2('192.0.2.51'));
  const open: SmtpTestClient[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const c = await SmtpTestClient.connect({ port: same.port });
      assert.equal(c.greeting.code, 220, `connection ${i + 1} from 192.0.2.50`);
      open.push(c);
    }
    const third = await SmtpTestClient.connect({ port: same.port });
    assert.equal(third.greeting.code, 421, 'third connection from 192.0.2.50');
    await third.closed().catch(() => {});
    third.destroy();
    // Same balancer (127.0.0.1), another client: not limited.
    for (let i = 0; i < 2; i++) {
      const c = await SmtpTestClient.connect({ port: other.port });
      assert.equal(c.greeting.code, 220, `connection ${i + 1} from 192.0.2.51`);
      open.push(c);
    }
    // Closing a session frees its client's slot.
    await open.shift()!.quit();
    await new Promise((r) => setTimeout(r, 100));
    const again = await SmtpTestClient.connect({ port: same.port });
    assert.equal(again.greeting.code, 220);
    open.push(again);
  } finally {
    await Promise.all(open.map((c) => c.quit()));
    same.close();
    other.close();
  }
});
