/**
 * Tests of the SMTP/LMTP test client itself, against tiny scripted fake servers (node:net):
 * reply parsing (multiline, enhanced codes, UTF-8), replies split over packets and several in
 * one packet, timeouts and closes, dot-stuffing, LMTP DATA, sendMail, STARTTLS and implicit TLS,
 * unix sockets.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { SmtpTestClient } from './smtp-client.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Server side of one fake connection: read lines or bytes the client sent, write raw bytes. */
class FakeConn {
  buf = Buffer.alloc(0);
  all = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  ended = false;
  constructor(public sock: net.Socket) {
    this.listen(sock);
  }
  listen(sock: net.Socket): void {
    this.sock = sock;
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.all = Buffer.concat([this.all, d]);
      this.wake?.();
    });
    sock.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
    sock.on('error', () => {});
  }
  /** Bytes up to and including `marker`. */
  async readUntil(marker: string): Promise<Buffer> {
    for (;;) {
      const i = this.buf.indexOf(marker, 0, 'latin1');
      if (i >= 0) {
        const out = this.buf.subarray(0, i + marker.length);
        this.buf = this.buf.subarray(i + marker.length);
        return out;
      }
      if (this.ended) throw new Error(`fake server: client closed before ${JSON.stringify(marker)}`);
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }
  async line(): Promise<string> {
    return (await this.readUntil('\r\n')).toString('utf8').slice(0, -2);
  }
  write(s: string | Buffer): void {
    this.sock.write(s);
  }
}

type Script = (c: FakeConn) => Promise<void>;

/** A fake server on loopback running `script` for each connection; returns its port. */
async function fakeServer(script: Script, opts: { path?: string; tls?: { key: string; cert: string } } = {}) {
  const conns: FakeConn[] = [];
  const errors: unknown[] = [];
  const onSocket = (sock: net.Socket) => {
    const c = new FakeConn(sock);
    conns.push(c);
    script(c).catch((e) => {
      errors.push(e);
      sock.destroy();
    });
  };
  const server = opts.tls ? tls.createServer({ key: opts.tls.key, cert: opts.tls.cert }, onSocket) : net.createServer(onSocket);
  await new Promise<void>((r) => (opts.path ? server.listen(opts.path, r) : server.listen(0, '127.0.0.1', r)));
  const port = opts.path ? 0 : (server.address() as net.AddressInfo).port;
  return {
    port,
    conns,
    errors,
    async close() {
      for (const c of conns) c.sock.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

let pems: { key: string; cert: string };
before(async () => {
  const p = await generate([{ name: 'commonName', value: 'fake.test' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' } as Parameters<typeof generate>[1]);
  pems = { key: p.private, cert: p.cert };
});

test('greeting, multiline reply, enhanced codes stripped from lines', async () => {
  const s = await fakeServer(async (c) => {
    c.write('220 fake.test ESMTP ready\r\n');
    assert.equal(await c.line(), 'EHLO me.test');
    c.write('250-fake.test hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 ENHANCEDSTATUSCODES\r\n');
    assert.equal(await c.line(), 'RCPT TO:<x@y>');
    c.write('550-5.1.1 first line\r\n550-5.1.1 second line\r\n550 5.1.1 no such user\r\n');
    assert.equal(await c.line(), 'NOOP');
    c.write('250 2.0.0\r\n');
    assert.equal(await c.line(), 'HELP');
    c.write('214\r\n');
  });
  const c = await SmtpTestClient.connect({ port: s.port });
  assert.deepEqual(c.greeting, { code: 220, enhanced: null, lines: ['fake.test ESMTP ready'], text: 'fake.test ESMTP ready' });
  const e = await c.command('EHLO me.test');
  assert.equal(e.code, 250);
  assert.deepEqual(e.lines, ['fake.test hello', 'PIPELINING', 'SIZE 1000', 'ENHANCEDSTATUSCODES']);
  assert.equal(e.text, 'fake.test hello\nPIPELINING\nSIZE 1000\nENHANCEDSTATUSCODES');
  const r = await c.command('RCPT TO:<x@y>');
  assert.deepEqual(r, { code: 550, enhanced: '5.1.1', lines: ['first line', 'second line', 'no such user'], text: 'first line\nsecond line\nno such user' });
  const n = await c.command('NOOP');
  assert.deepEqual(n, { code: 250, enhanced: '2.0.0', lines: [''], text: '' });
  const h = await c.command('HELP');
  assert.deepEqual(h, { code: 214, enhanced: null, lines: [''], text: '' });
  c.destroy();
  await s.close();
  assert.deepEqual(s.errors, []);
});

test('an enhanced code of another class than the reply is left in the text', async () => {
  const s = await fakeServer(async (c) => {
    c.write('220 hi\r\n');
    await c.line();
    c.write('250 5.1.1 looks like a code\r\n');
  });
  const c = await SmtpTestClient.connect({ port: s.port });
  const r = await c.command('NOOP');
  assert.equal(r.enhanced, null);
  assert.equal(r.text, '5.1.1 looks like a code');
  c.destroy();
  await s.close();
});

test('replies split across packets, byte by byte and mid-CRLF', async () => {
  const s = await fakeServer(async (c) => {
    for (const part of ['2', '20 sl', 'ow gre', 'eting\r']) {
      c.write(part);
      await sleep(15);
    }
    c.write('\n');
    await c.line();
    const reply = Buffer.from('250-first\r\n250-séc\u00f6nd ünïcode\r\n250 last\r\n', 'utf8');
    // one byte at a time, splitting UTF-8 sequences too
    for (const b of reply) {
      c.write(Buffer.from([b]));
      await sleep(1);
    }
  });
  const c = await SmtpTestClient.connect({ port: s.port });
  assert.equal(c.greeting.code, 220);
  assert.equal(c.greeting.text, 'slow greeting');
  const r = await c.command('EHLO x');
  assert.deepEqual(r.lines, ['first', 'séc\u00f6nd ünïcode', 'last']);
  c.destroy();
  await s.close();
  assert.deepEqual(s.errors, []);
});

test('several replies in one packet (pipelining) are read in order, also with concurrent readReply()', async () => {
  const s = await fakeServer(async (c) => {
    c.write('220 hi\r\n');
    await c.readUntil('DATA\r\n');
    c.write('250 2.1.0 ok from\r\n250-2.1.5 ok\r\n250 2.1.5 to 1\r\n550 5.1.1 to 2\r\n354 go\r\n');
    await c.readUntil('NOOP\r\n');
    await c.readUntil('NOOP\r\n');
    c.write('250 one\r\n250 two\r\n');
  });
  const c = await SmtpTestClient.connect({ port: s.port });
  c.sendRaw('MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n');
  const first = await c.readReply();
  assert.equal(first.text, 'ok from');
  await sleep(20);
  assert.equal(c.bufferedReplies, 3);
  const rest = [await c.readReply(), await c.readReply(), await c.readReply()];
  assert.deepEqual(
    rest.map((r) => [r.code, r.enhanced, r.text]),
    [
      [250, '2.1.5', 'ok\nto 1'],
      [550, '5.1.1', 'to 2'],
      [354, null, 'go'],
    ],
  );
  c.send('NOOP');
  c.send('NOOP');
  const [a, b] = await Promise.all([c.readReply(), c.readReply()]);
  assert.equal(a.text, 'one');
  assert.equal(b.text, 'two');
  c.destroy();
  await s.close();
  assert.deepEqual(s.errors, []);
});

test('readReply rejects with a clear error on timeout, and the client still works after', async () => {
  const s = await fakeServer(async (c) => {
    c.write('220 hi\r\n');
    await c.line();
    c.write('250 partial'); // no CRLF yet
    await c.line();
    c.write(' now complete\r\n250 second\r\n');
  });
  const c = await SmtpTestClient.connect({ port: s.port, timeoutMs: 150 });
  const t0 = Date.now();
  await assert.rejects(c.command('NOOP'), (e: Error) => {
    assert.match(e.message, /timed out after 150 ms waiting for a reply/);
    assert.match(e.message, /250 partial/);
    return true;
  });
  assert.ok(Date.now() - t0 >= 140);
  // the late reply is not lost: the next readReply gets it
  c.send('NOOP');
  assert.equal((await c.readReply()).text, 'partial now complete');
  assert.equal((await c.readReply()).text, 'second');
  c.destroy();
  await s.close();
});

test('server closing mid-reply: pending and later readReply reject, closed() resolves', async () => {
  const s = await fakeServer(async (c) => {
    c.write('220 hi\r\n');
    await c.line();
    c.write('421-4.3.2 shutting down\r\n421-more');
    c.sock.end();
  });
  const c = await SmtpTestClient.connect({ port: s.port });
  await assert.rejects(c.command('NOOP'), /closed while waiting for a reply.*421-more/);
  await c.closed();
  assert.equal(c.isClosed, true);
  await assert.rejects(c.readReply(), /is closed, no reply to read/);
  await c.quit(); // does not throw
  await s.close();
});

test('a reply that arrives just before the close is still read', async () => {
  const s = await fakeServer(async (c) => {
    c.write('554 5.7.1 go away\r\n');
    c.sock.end();
  });
  const c = await SmtpTestClient.connect({ port: s.port });
  assert.equal(c.greeting.code, 554);
  assert.equal(c.greeting.enhanced, '5.7.1');
  await c.closed();
  await s.close();
});

test('closed() rejects when the server keeps the connection open', async () => {
  const s = await fakeServer(async (c) => {
    c.write('220 hi\r\n');
  });
  const c = await SmtpTestClient.connect({ port: s.port, timeoutMs: 100 });
  await assert.rejects(c.closed(), /did not close the connection within 100 ms/);
  c.destroy();
  await s.close();
});

test('connect errors are clear: refused, no greeting', async () => {
  const tmp = net.createServer();
  await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
  const port = (tmp.address() as net.AddressInfo).port;
  await new Promise<void>((r) => tmp.close(() => r()));
  await assert.rejects(SmtpTestClient.connect({ port }), /connect to 127\.0\.0\.1:\d+ failed/);
  const s = await fakeServer(async (c) => {
    c.sock.end();
  });
  await assert.rejects(SmtpTestClient.connect({ port: s.port }), /no greeting from .*closed/);
  await s.close();
});

test('malformed reply lines are reported', async () => {
  const s = await fakeServer(async (c) => {
    c.write('220 hi\r\n');
    await c.line();
    c.write('hello there\r\n');
  });
  const c = await SmtpTestClient.connect({ port: s.port });
  await assert.rejects(c.command('NOOP'), /malformed reply line.*hello there/);
  c.destroy();
  await s.close();
});

test('stuff(): dot-stuffing and terminator', () => {
  const st = (m: string) => SmtpTestClient.stuff(m).toString('latin1');
  assert.equal(st('a\r\nb\r\n'), 'a\r\nb\r\n.\r\n');
  assert.equal(st('a\r\nb'), 'a\r\nb\r\n.\r\n');
  assert.equal(st(''), '.\r\n');
  assert.equal(st('.x\r\n..y\r\n.\r\nz.\r\n'), '..x\r\n...y\r\n..\r\nz.\r\n.\r\n');
  assert.equal(st('a\r\n.'), 'a\r\n..\r\n.\r\n');
  assert.equal(st('a\n.b\n'), 'a\n.b\n\r\n.\r\n', 'bare LF is not a line end: sent as is');
  assert.equal(SmtpTestClient.stuff(Buffer.from('é\r\n.é', 'utf8')).toString('utf8'), 'é\r\n..é\r\n.\r\n');
});

test('data(): exact bytes on the wire, final reply returned; non-354 returned as is', async () => {
  const got: Buffer[] = [];
  const s = await fakeServer(async (c) => {
    c.write('220 hi\r\n');
    assert.equal(await c.line(), 'DATA');
    c.write('354 end with .\r\n');
    got.push(await c.readUntil('\r\n.\r\n'));
    c.write('250 2.0.0 queued as X1\r\n');
    assert.equal(await c.line(), 'DATA');
    c.write('503 5.5.1 need RCPT\r\n');
  });
  const c = await SmtpTestClient.connect({ port: s.port });
  const msg = 'Subject: t\r\n\r\n.leading\r\nmid . dot\r\n.\r\nlast';
  const r = await c.data(msg);
  assert.equal(r.code, 250);
  assert.equal(r.text, 'queued as X1');
  assert.equal(got[0]!.toString('latin1'), 'Subject: t\r\n\r\n..leading\r\nmid . dot\r\n..\r\nlast\r\n.\r\n');
  const r2 = await c.data('x\r\n');
  assert.equal(r2.code, 503);
  c.destroy();
  await s.close();
  assert.deepEqual(s.errors, []);
});

test('dataLmtp(): one reply per recipient; big messages', async () => {
  const big = ('y'.repeat(998) + '\r\n').repeat(2000);
  const s = await fakeServer(async (c) => {
    c.write('220 lmtp\r\n');
    assert.equal(await c.line(), 'LHLO me');
    c.write('250-lmtp\r\n250 PIPELINING\r\n');
    await c.readUntil('DATA\r\n');
    c.write('354 go\r\n');
    const body = await c.readUntil('\r\n.\r\n');
    assert.equal(body.length, big.length + 3);
    c.write('250 2.1.5 a ok\r\n');
    await sleep(10);
    c.write('452 4.2.2 b over quota\r\n');
  });
  const c = await SmtpTestClient.connect({ port: s.port });
  assert.equal((await c.command('LHLO me')).code, 250);
  const rs = await c.dataLmtp(big, 2);
  assert.deepEqual(
    rs.map((r) => [r.code, r.enhanced, r.text]),
    [
      [250, '2.1.5', 'a ok'],
      [452, '4.2.2', 'b over quota'],
    ],
  );
  c.destroy();
  await s.close();
  assert.deepEqual(s.errors, []);
});

test('sendMail(): EHLO once per connection, RSET when no recipient is accepted', async () => {
  const seen: string[] = [];
  const s = await fakeServer(async (c) => {
    c.write('220 hi\r\n');
    for (;;) {
      const l = await c.line();
      seen.push(l);
      if (l.startsWith('EHLO')) c.write('250-hi\r\n250 8BITMIME\r\n');
      else if (l.startsWith('RCPT TO:<bad')) c.write('550 5.1.1 unknown\r\n');
      else if (l === 'DATA') {
        c.write('354 go\r\n');
        await c.readUntil('\r\n.\r\n');
        c.write('250 2.0.0 ok\r\n');
      } else if (l === 'QUIT') {
        c.write('221 2.0.0 bye\r\n');
        c.sock.end();
        return;
      } else c.write('250 2.0.0 ok\r\n');
    }
  });
  const c = await SmtpTestClient.connect({ port: s.port });
  const a = await c.sendMail({ from: 'a@x', to: ['b@y', 'bad@y'], message: 'Subject: 1\r\n\r\nhi\r\n', ehlo: 'client.example' });
  assert.equal(a.mail.code, 250);
  assert.deepEqual(
    a.rcpts.map((r) => r.code),
    [250, 550],
  );
  assert.equal(a.data?.code, 250);
  const b = await c.sendMail({ from: 'a@x', to: ['bad@y'], message: 'Subject: 2\r\n\r\nhi\r\n' });
  assert.equal(b.data, null);
  await c.quit();
  assert.equal(c.isClosed, true);
  assert.deepEqual(seen, ['EHLO client.example', 'MAIL FROM:<a@x>', 'RCPT TO:<b@y>', 'RCPT TO:<bad@y>', 'DATA', 'MAIL FROM:<a@x>', 'RCPT TO:<bad@y>', 'RSET', 'QUIT']);
  await s.close();
  assert.deepEqual(s.errors, []);
});

test('STARTTLS upgrades the connection; EHLO is sent again afterwards; refusal leaves it plain', async () => {
  const seen: string[] = [];
  const s = await fakeServer(async (c) => {
    c.write('220 hi\r\n');
    assert.equal(await c.line(), 'EHLO plain');
    c.write('250-hi\r\n250 STARTTLS\r\n');
    assert.equal(await c.line(), 'STARTTLS');
    c.write('454 4.7.0 not now\r\n');
    assert.equal(await c.line(), 'STARTTLS');
    c.write('220 2.0.0 go ahead\r\n');
    const secure = new tls.TLSSocket(c.sock, { isServer: true, key: pems.key, cert: pems.cert });
    c.buf = Buffer.alloc(0);
    c.sock.removeAllListeners('data');
    c.listen(secure);
    for (;;) {
      const l = await c.line();
      seen.push(l);
      if (l.startsWith('EHLO')) c.write('250-secure hi\r\n250 SIZE 10\r\n');
      else if (l === 'DATA') {
        c.write('354 go\r\n');
        await c.readUntil('\r\n.\r\n');
        // the final reply split in two TLS records
        c.write('250 2.0.0');
        await sleep(10);
        c.write(' ok tls\r\n');
      } else c.write('250 ok\r\n');
    }
  });
  const c = await SmtpTestClient.connect({ port: s.port });
  assert.equal((await c.command('EHLO plain')).code, 250);
  assert.equal((await c.startTls()).code, 454);
  assert.equal(c.secure, false);
  const r = await c.startTls();
  assert.equal(r.code, 220);
  assert.equal(c.secure, true);
  const res = await c.sendMail({ from: 'a@x', to: ['b@y'], message: 'Subject: s\r\n\r\nx\r\n' });
  assert.equal(res.data?.text, 'ok tls');
  assert.deepEqual(seen.slice(0, 2), ['EHLO client.test', 'MAIL FROM:<a@x>']);
  c.destroy();
  await s.close();
  assert.deepEqual(s.errors, []);
});

test('implicit TLS and unix socket connections', async () => {
  const script: Script = async (c) => {
    c.write('220 hi\r\n');
    await c.line();
    c.write('250 pong\r\n');
  };
  const st = await fakeServer(script, { tls: pems });
  const c1 = await SmtpTestClient.connect({ port: st.port, tls: true });
  assert.equal(c1.secure, true);
  assert.equal((await c1.command('NOOP')).text, 'pong');
  c1.destroy();
  await st.close();

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-client-test-'));
  const sock = path.join(dir, 's.sock');
  const su = await fakeServer(script, { path: sock });
  const c2 = await SmtpTestClient.connect({ path: sock });
  assert.equal((await c2.command('NOOP')).text, 'pong');
  c2.destroy();
  await su.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
