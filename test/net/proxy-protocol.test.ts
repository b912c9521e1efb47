import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  parseProxyHeader,
  readProxyHeader,
  ProxyHeaderError,
  TrustedProxies,
  isAddressOrCidr,
  V1_MAX_LENGTH,
  V2_MAX_PAYLOAD,
  type ProxyParseResult,
} from '../../src/net/proxy-protocol.ts';
import { parseConfig, ConfigError } from '../../src/config/load.ts';

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 header: signature, version 2 + command, family/transport byte, then `body` (addresses + TLVs). */
function v2(command: 0 | 1 | number, fam: number, body: Buffer | number[] = []): Buffer {
  const b = Buffer.from(body);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([SIG, Buffer.from([0x20 | command, fam]), len, b]);
}

function v2Inet(src: number[], dst: number[], sport: number, dport: number, extra: number[] = []): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sport, 0);
  ports.writeUInt16BE(dport, 2);
  return v2(1, src.length === 4 ? 0x11 : 0x21, Buffer.concat([Buffer.from(src), Buffer.from(dst), ports, Buffer.from(extra)]));
}

function complete(r: ProxyParseResult) {
  assert.equal(r.state, 'complete', JSON.stringify(r));
  return r as Extract<ProxyParseResult, { state: 'complete' }>;
}

function invalid(r: ProxyParseResult, re?: RegExp): void {
  assert.equal(r.state, 'invalid', JSON.stringify(r));
  if (re) assert.match((r as { reason: string }).reason, re);
}

// ---- v1 -------------------------------------------------------------------------------------

test('v1 TCP4: addresses and ports; the length covers exactly the header line', () => {
  const line = 'PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r\n';
  const r = complete(parseProxyHeader(Buffer.from(line + 'EHLO x\r\n')));
  assert.equal(r.length, line.length);
  assert.deepEqual(r.header, {
    version: 1,
    command: 'proxy',
    family: 'tcp4',
    source: { address: '192.0.2.10', port: 56324 },
    destination: { address: '198.51.100.1', port: 25 },
  });
});

test('v1 TCP6: addresses come out in RFC 5952 form; an IPv4-mapped source is the IPv4 client', () => {
  const r = complete(parseProxyHeader(Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:1 2001:db8::2 65535 0\r\n')));
  assert.deepEqual(r.header.source, { address: '2001:db8::1', port: 65535 });
  assert.deepEqual(r.header.destination, { address: '2001:db8::2', port: 0 });
  assert.equal(r.header.family, 'tcp6');
  const mapped = complete(parseProxyHeader(Buffer.from('PROXY TCP6 ::ffff:192.0.2.7 ::1 1000 25\r\n')));
  assert.equal(mapped.header.source?.address, '192.0.2.7');
});

test('v1 UNKNOWN: the connection endpoints apply; whatever follows UNKNOWN is ignored', () => {
  for (const line of ['PROXY UNKNOWN\r\n', 'PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n']) {
    const r = complete(parseProxyHeader(Buffer.from(line)));
    assert.equal(r.length, line.length);
    assert.deepEqual(r.header, { version: 1, command: 'proxy', family: 'unknown', source: null, destination: null });
  }
});

test('v1 at the maximum length of 107 bytes is accepted', () => {
  const a = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
  const line = `PROXY UNKNOWN ${a} ${a} 65535 65535\r\n`;
  assert.equal(line.length, V1_MAX_LENGTH);
  assert.equal(complete(parseProxyHeader(Buffer.from(line))).length, 107);
});

test('v1 malformed headers are invalid', () => {
  const bad: Array<[string, RegExp]> = [
    ['PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\n', /CRLF/],
    ['PROXY TCP5 192.0.2.10 198.51.100.1 56324 25\r\n', /protocol/],
    ['PROXY tcp4 192.0.2.10 198.51.100.1 56324 25\r\n', /protocol/],
    ['PROXY TCP4 192.0.2.10 198.51.100.1 56324\r\n', /exactly/],
    ['PROXY TCP4 192.0.2.10  198.51.100.1 56324 25\r\n', /exactly/],
    ['PROXY TCP4 192.0.2.10 198.51.100.1 56324 25 extra\r\n', /exactly/],
    ['PROXY TCP4 2001:db8::1 198.51.100.1 56324 25\r\n', /IPv4/],
    ['PROXY TCP6 192.0.2.10 2001:db8::1 56324 25\r\n', /IPv6/],
    ['PROXY TCP4 192.0.2.256 198.51.100.1 56324 25\r\n', /IPv4/],
    ['PROXY TCP4 mail.example.org 198.51.100.1 56324 25\r\n', /IPv4/],
    ['PROXY TCP6 fe80::1%eth0 2001:db8::1 56324 25\r\n', /IPv6/],
    ['PROXY TCP4 192.0.2.10 198.51.100.1 65536 25\r\n', /port/],
    ['PROXY TCP4 192.0.2.10 198.51.100.1 -1 25\r\n', /port/],
    ['PROXY TCP4 192.0.2.10 198.51.100.1 1a 25\r\n', /port/],
    ['PROXY TCP4 192.0.2.10\t198.51.100.1 1 25\r\n', /control/],
    ['PROXY \r\n', /protocol/],
  ];
  for (const [line, re] of bad) invalid(parseProxyHeader(Buffer.from(line)), re);
});

test('v1 without CRLF within 107 bytes is invalid (never waits for more)', () => {
  invalid(parseProxyHeader(Buffer.from('PROXY UNKNOWN ' + 'x'.repeat(200))), /longer than 107/);
  invalid(parseProxyHeader(Buffer.from('PROXY UNKNOWN ' + 'x'.repeat(V1_MAX_LENGTH - 14))), /longer than 107/);
  // One byte short of the limit, no line end yet: could still be a header.
  assert.equal(parseProxyHeader(Buffer.from('PROXY UNKNOWN ' + 'x'.repeat(V1_MAX_LENGTH - 15))).state, 'incomplete');
  // A CRLF beyond byte 107 does not make an over-long line valid.
  invalid(parseProxyHeader(Buffer.from('PROXY UNKNOWN ' + 'x'.repeat(100) + '\r\n')), /longer than 107/);
});

test('no header at all (an SMTP client, TLS, HTTP) is invalid from the first differing byte', () => {
  for (const s of ['EHLO client.test\r\n', 'E', 'PROXZ', 'GET / HTTP/1.1\r\n', '\x16\x03\x01']) invalid(parseProxyHeader(Buffer.from(s)), /not a PROXY/);
  invalid(parseProxyHeader(Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x01])), /not a PROXY/);
});

// ---- v2 -------------------------------------------------------------------------------------

test('v2 PROXY over IPv4', () => {
  const h = v2Inet([192, 0, 2, 10], [198, 51, 100, 1], 56324, 25);
  const r = complete(parseProxyHeader(Buffer.concat([h, Buffer.from('EHLO x\r\n')])));
  assert.equal(r.length, 16 + 12);
  assert.deepEqual(r.header, {
    version: 2,
    command: 'proxy',
    family: 'tcp4',
    source: { address: '192.0.2.10', port: 56324 },
    destination: { address: '198.51.100.1', port: 25 },
  });
});

test('v2 PROXY over IPv6, with TLVs after the addresses (skipped)', () => {
  const src = [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 0x01];
  const dst = [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 0x02];
  // PP2_TYPE_AUTHORITY "mx.example.test", then PP2_TYPE_NOOP.
  const tlv = [0x02, 0x00, 15, ...Buffer.from('mx.example.test'), 0x04, 0x00, 0x00];
  const h = v2Inet(src, dst, 40000, 2025, tlv);
  const r = complete(parseProxyHeader(h));
  assert.equal(r.length, 16 + 36 + tlv.length);
  assert.deepEqual(r.header.source, { address: '2001:db8::1', port: 40000 });
  assert.deepEqual(r.header.destination, { address: '2001:db8::2', port: 2025 });
  assert.equal(r.header.family, 'tcp6');
  // An IPv4-mapped source is the IPv4 client.
  const mapped = complete(parseProxyHeader(v2Inet([...Array(10).fill(0), 0xff, 0xff, 192, 0, 2, 7], dst, 1, 2)));
  assert.equal(mapped.header.source?.address, '192.0.2.7');
});

test('v2 LOCAL: the connection endpoints apply, whatever the address block says', () => {
  for (const h of [v2(0, 0x00), v2(0, 0x11, Array(12).fill(1)), v2(0, 0x21, [1, 2, 3])]) {
    const r = complete(parseProxyHeader(h));
    assert.equal(r.length, h.length);
    assert.deepEqual(r.header, { version: 2, command: 'local', family: 'unknown', source: null, destination: null });
  }
});

test('v2 PROXY with UNSPEC or AF_UNIX: the connection endpoints apply', () => {
  assert.equal(complete(parseProxyHeader(v2(1, 0x00))).header.source, null);
  assert.equal(complete(parseProxyHeader(v2(1, 0x31, Array(216).fill(0)))).header.source, null);
});

test('v2 malformed headers are invalid', () => {
  invalid(parseProxyHeader(Buffer.concat([SIG, Buffer.from([0x11, 0x11, 0, 12]), Buffer.alloc(12)])), /version 1/);
  invalid(parseProxyHeader(Buffer.concat([SIG, Buffer.from([0x31])])), /version 3/);
  invalid(parseProxyHeader(v2(2, 0x11, Array(12).fill(0))), /command 2/);
  invalid(parseProxyHeader(v2(1, 0x11, Array(11).fill(0))), /too short for IPv4/);
  invalid(parseProxyHeader(v2(1, 0x21, Array(35).fill(0))), /too short for IPv6/);
  invalid(parseProxyHeader(v2(1, 0x12, Array(12).fill(0))), /0x12/); // UDP
  invalid(parseProxyHeader(v2(1, 0x41, Array(12).fill(0))), /0x41/); // undefined family
});

test('v2 over the size cap is refused from its fixed part, before the payload arrives', () => {
  const fixed = Buffer.concat([SIG, Buffer.from([0x21, 0x11, 0xff, 0xff])]);
  invalid(parseProxyHeader(fixed), /over our limit/);
  const justOver = Buffer.concat([SIG, Buffer.from([0x21, 0x11]), Buffer.from([(V2_MAX_PAYLOAD + 1) >> 8, (V2_MAX_PAYLOAD + 1) & 0xff])]);
  invalid(parseProxyHeader(justOver), /over our limit/);
  const atCap = v2Inet([192, 0, 2, 1], [192, 0, 2, 2], 1, 2, Array(V2_MAX_PAYLOAD - 12).fill(0));
  assert.equal(complete(parseProxyHeader(atCap)).length, 16 + V2_MAX_PAYLOAD);
});

// ---- incremental parsing --------------------------------------------------------------------

test('every proper prefix of a header is incomplete, and the whole is complete (split across TCP chunks)', () => {
  const headers = [
    Buffer.from('PROXY TCP4 192.0.2.10 198.51.100.1 56324 25\r\n'),
    Buffer.from('PROXY UNKNOWN\r\n'),
    v2Inet([192, 0, 2, 10], [198, 51, 100, 1], 56324, 25),
    v2(0, 0x00),
  ];
  for (const h of headers) {
    for (let i = 0; i < h.length; i++) assert.equal(parseProxyHeader(h.subarray(0, i)).state, 'incomplete', `${h.toString('latin1')} cut at ${i}`);
    assert.equal(complete(parseProxyHeader(h)).length, h.length);
  }
});

// ---- reading from a socket ------------------------------------------------------------------

/** A connected pair of real TCP sockets on loopback: [client, server side]. */
async function socketPair(): Promise<[net.Socket, net.Socket, () => void]> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  client.on('error', () => {});
  client.setNoDelay(true);
  const server = await accepted;
  return [client, server, () => srv.close()];
}

const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

/** Reads what is left on the socket after the header until `n` bytes are in. */
function readN(socket: net.Socket, n: number): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.length >= n) resolve(got);
    });
  });
}

test('readProxyHeader: header split over several TCP segments; bytes after it stay on the socket', async () => {
  const [client, server, done] = await socketPair();
  try {
    const header = v2Inet([203, 0, 113, 5], [127, 0, 0, 1], 4242, 25);
    const reading = readProxyHeader(server, { timeoutMs: 2000 });
    for (const part of [header.subarray(0, 3), header.subarray(3, 13), header.subarray(13, 20)]) {
      client.write(part);
      await tick();
    }
    client.write(Buffer.concat([header.subarray(20), Buffer.from('EHLO early\r\n')]));
    const h = await reading;
    assert.deepEqual(h.source, { address: '203.0.113.5', port: 4242 });
    assert.equal(await readN(server, 12), 'EHLO early\r\n');
  } finally {
    client.destroy();
    server.destroy();
    done();
  }
});

test('readProxyHeader: v1 one byte at a time', async () => {
  const [client, server, done] = await socketPair();
  try {
    const reading = readProxyHeader(server, { timeoutMs: 5000 });
    for (const ch of 'PROXY TCP6 2001:db8::7 ::1 1 25\r\n') {
      client.write(ch);
      await tick(2);
    }
    assert.deepEqual((await reading).source, { address: '2001:db8::7', port: 1 });
  } finally {
    client.destroy();
    server.destroy();
    done();
  }
});

test('readProxyHeader: garbage closes the connection without a reply', async () => {
  const [client, server, done] = await socketPair();
  try {
    let received = '';
    client.on('data', (d: Buffer) => (received += d.toString()));
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    const reading = readProxyHeader(server, { timeoutMs: 2000 });
    client.write('EHLO client.test\r\n');
    await assert.rejects(reading, (e: unknown) => e instanceof ProxyHeaderError && e.kind === 'invalid' && /not a PROXY/.test(e.message));
    await closed;
    assert.equal(received, '');
    assert.ok(server.destroyed);
  } finally {
    client.destroy();
    done();
  }
});

test('readProxyHeader: a header that never completes times out; an oversized one is refused at once', async () => {
  const [client, server, done] = await socketPair();
  try {
    const started = Date.now();
    const reading = readProxyHeader(server, { timeoutMs: 300 });
    client.write('PROXY TCP4 1.2.3.4');
    await assert.rejects(reading, (e: unknown) => e instanceof ProxyHeaderError && e.kind === 'timeout' && /within 300 ms/.test(e.message));
    assert.ok(Date.now() - started >= 250);
    assert.ok(server.destroyed);
  } finally {
    client.destroy();
    done();
  }
  const [c2, s2, done2] = await socketPair();
  try {
    const reading = readProxyHeader(s2, { timeoutMs: 5000 });
    // A v1 line that never ends: refused once 107 bytes are in, not after the timeout.
    c2.write('PROXY UNKNOWN ' + 'x'.repeat(5000));
    await assert.rejects(reading, /longer than 107/);
  } finally {
    c2.destroy();
    done2();
  }
});

test('readProxyHeader: the peer closing first rejects', async () => {
  const [client, server, done] = await socketPair();
  try {
    const reading = readProxyHeader(server, { timeoutMs: 2000 });
    client.end('PROXY TCP4');
    await assert.rejects(reading, (e: unknown) => e instanceof ProxyHeaderError && e.kind === 'closed' && /before the PROXY header was complete/.test(e.message));
  } finally {
    done();
  }
});

// ---- trusted addresses and config -----------------------------------------------------------

test('TrustedProxies: single addresses and CIDRs, IPv4 and IPv6, IPv4-mapped peers', () => {
  const t = new TrustedProxies(['127.0.0.1', '10.0.0.0/8', '2001:db8::/32', '::ffff:192.168.0.0/112']);
  for (const a of ['127.0.0.1', '::ffff:127.0.0.1', '10.1.2.3', '::ffff:10.255.0.1', '2001:db8:1::5', '192.168.3.4']) assert.ok(t.matches(a), a);
  for (const a of ['127.0.0.2', '11.0.0.1', '2001:db9::1', '::1', '', undefined, 'localhost', '192.169.0.1']) assert.ok(!t.matches(a), String(a));
  assert.ok(!new TrustedProxies([]).matches('127.0.0.1'));
  assert.throws(() => new TrustedProxies(['10.0.0.0/33']));
});

test('isAddressOrCidr', () => {
  for (const v of ['127.0.0.1', '10.0.0.0/8', '0.0.0.0/0', '::1', '2001:db8::/32', '::/0', '::ffff:10.0.0.0/104']) assert.ok(isAddressOrCidr(v), v);
  for (const v of ['', 'localhost', '10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/8/8', '10.0.0/8', 'fe80::1%eth0', '10.0.0.0/-1', '10.0.0.0/ 8']) assert.ok(!isAddressOrCidr(v), v);
});

test('config: listen.proxy_protocol defaults to empty and rejects what is not an address or CIDR', () => {
  assert.deepEqual(parseConfig({}, 'test').listen.proxy_protocol, []);
  assert.deepEqual(parseConfig({ listen: { smtp: '127.0.0.1:25' } }, 'test').listen.proxy_protocol, []);
  assert.deepEqual(parseConfig({ listen: { proxy_protocol: ['10.0.0.0/8', '::1'] } }, 'test').listen.proxy_protocol, ['10.0.0.0/8', '::1']);
  assert.throws(
    () => parseConfig({ listen: { proxy_protocol: ['haproxy.internal'] } }, 'test'),
    (e: unknown) => e instanceof ConfigError && /listen\.proxy_protocol\.0: expected an IP address or CIDR/.test(e.message),
  );
});
