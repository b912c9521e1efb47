import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { startTestServer, inbox, blobText, message, type TestServer } from '../helpers/server.ts';

let t: TestServer;
before(async () => {
  t = await startTestServer();
  const d = t.server.ctx.data;
  await d.addAlias('team@example.test', ['alice@example.test', 'bob@example.test', 'carol@remote.test']);
  await d.addDomain('catch.test');
  await d.addAlias('@catch.test', ['bob@example.test']);
});
after(async () => t.stop());

const connect = () => SmtpTestClient.connect({ port: t.smtpPort });

test('greeting and EHLO advertise the extensions (RFC 5321, 1870, 2920, 6152, 6531, 2034)', async () => {
  const c = await connect();
  assert.equal(c.greeting.code, 220);
  assert.match(c.greeting.text, /mx\.example\.test/);
  const r = await c.command('EHLO client.test');
  assert.equal(r.code, 250);
  for (const ext of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'STARTTLS']) assert.ok(r.lines.some((l) => l.startsWith(ext)), ext);
  assert.ok(r.lines.includes(`SIZE ${25 * 1024 * 1024}`));
  await c.quit();
});

test('delivers to a local user with Return-Path and Received prepended', async () => {
  const c = await connect();
  const res = await c.sendMail({ from: 'sender@remote.test', to: ['alice@example.test'], message: message('hello-1') });
  assert.equal(res.data?.code, 250);
  assert.match(res.data!.text, /queued as/);
  await c.quit();
  const msgs = await inbox(t, 'alice@example.test');
  const m = msgs.find((x) => x.subject === 'hello-1');
  assert.ok(m, 'message stored');
  const raw = await blobText(t, m.blobHash);
  assert.match(raw, /^Return-Path: <sender@remote\.test>\r\nReceived: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.example\.test \(Postern\) with ESMTP id \w+\r\n\tfor <alice@example\.test>; /);
  assert.equal(m.size, Buffer.byteLength(raw, 'latin1'));
  assert.equal(m.from, 'Sender <sender@remote.test>');
});

test('unknown local user: 550 5.1.1', async () => {
  const c = await connect();
  await c.command('EHLO client.test');
  assert.equal((await c.command('MAIL FROM:<a@remote.test>')).code, 250);
  const r = await c.command('RCPT TO:<nobody@example.test>');
  assert.equal(r.code, 550);
  assert.equal(r.enhanced, '5.1.1');
  await c.quit();
});

test('relay is denied with 554 5.7.1, including the classic tricks', async () => {
  const queued = await t.server.ctx.data.countQueued();
  const c = await connect();
  await c.command('EHLO client.test');
  await c.command('MAIL FROM:<a@remote.test>');
  for (const rcpt of ['<victim@remote.test>', '<u%remote.test@example.test>', '<"u@remote.test"@example.test>', '<u@remote.test@example.test>', '<@a.test,@b.test:u@remote.test>', '<u@remote.test.>']) {
    const r = await c.command(`RCPT TO:${rcpt}`);
    assert.ok(r.code >= 500, `${rcpt} refused (got ${r.code} ${r.text})`);
  }
  const r = await c.command('RCPT TO:<victim@remote.test>');
  assert.equal(r.code, 554);
  assert.equal(r.enhanced, '5.7.1');
  // Nothing was accepted: DATA has no valid recipient.
  assert.ok((await c.command('DATA')).code >= 500);
  await c.quit();
  assert.equal(await t.server.ctx.data.countQueued(), queued, 'nothing queued for relay');
});

test('plus-addressing delivers to the user; aliases fan out; catch-all; remote alias targets are queued', async () => {
  const c = await connect();
  assert.equal((await c.sendMail({ from: 'x@remote.test', to: ['alice+news@example.test'], message: message('plus-1') })).data?.code, 250);
  const queuedBefore = await t.server.ctx.data.countQueued();
  assert.equal((await c.sendMail({ from: 'x@remote.test', to: ['team@example.test'], message: message('alias-1') })).data?.code, 250);
  assert.equal((await c.sendMail({ from: 'x@remote.test', to: ['anything@catch.test'], message: message('catch-1') })).data?.code, 250);
  await c.quit();
  assert.ok((await inbox(t, 'alice@example.test')).some((m) => m.subject === 'plus-1'));
  assert.ok((await inbox(t, 'alice@example.test')).some((m) => m.subject === 'alias-1'));
  assert.ok((await inbox(t, 'bob@example.test')).some((m) => m.subject === 'alias-1'));
  assert.ok((await inbox(t, 'bob@example.test')).some((m) => m.subject === 'catch-1'));
  assert.equal(await t.server.ctx.data.countQueued(), queuedBefore + 1, 'carol@remote.test queued for outbound delivery');
});

test('one message to two users is stored once per user with its own UID', async () => {
  const c = await connect();
  const res = await c.sendMail({ from: 'x@remote.test', to: ['alice@example.test', 'bob@example.test'], message: message('two-1') });
  assert.equal(res.data?.code, 250);
  await c.quit();
  const a = (await inbox(t, 'alice@example.test')).filter((m) => m.subject === 'two-1');
  const b = (await inbox(t, 'bob@example.test')).filter((m) => m.subject === 'two-1');
  assert.equal(a.length, 1);
  assert.equal(b.length, 1);
  assert.equal(a[0]!.blobHash, b[0]!.blobHash, 'one blob shared');
  assert.doesNotMatch(await blobText(t, a[0]!.blobHash), /\tfor </, 'no "for" clause with several recipients');
});

test('SIZE over the limit is refused at MAIL (552), an oversized body at end of DATA (552)', async () => {
  const small = await startTestServer({ smtp: { max_message_size: 100_000 } });
  try {
    const c = await SmtpTestClient.connect({ port: small.smtpPort });
    await c.command('EHLO client.test');
    const r = await c.command('MAIL FROM:<a@remote.test> SIZE=200000');
    assert.equal(r.code, 552);
    assert.equal((await c.command('MAIL FROM:<a@remote.test>')).code, 250);
    assert.equal((await c.command('RCPT TO:<alice@example.test>')).code, 250);
    const big = message('big', ('x'.repeat(998) + '\r\n').repeat(200));
    const d = await c.data(big);
    assert.equal(d.code, 552);
    // The session goes on normally.
    const ok = await c.sendMail({ from: 'a@remote.test', to: ['alice@example.test'], message: message('after-big') });
    assert.equal(ok.data?.code, 250);
    await c.quit();
    const msgs = await inbox(small, 'alice@example.test');
    assert.deepEqual(msgs.map((m) => m.subject), ['after-big']);
  } finally {
    await small.stop();
  }
});

test('more than the recipient limit: 452', async () => {
  const s = await startTestServer({ smtp: { max_recipients: 5 } });
  try {
    const c = await SmtpTestClient.connect({ port: s.smtpPort });
    await c.command('EHLO client.test');
    await c.command('MAIL FROM:<a@remote.test>');
    for (let i = 0; i < 5; i++) assert.equal((await c.command(`RCPT TO:<alice+${i}@example.test>`)).code, 250);
    const r = await c.command('RCPT TO:<bob@example.test>');
    assert.equal(r.code, 452);
    await c.quit();
  } finally {
    await s.stop();
  }
});

test('default recipient limit is 1000 (DESIGN.md)', async () => {
  const c = await connect();
  await c.command('EHLO client.test');
  await c.command('MAIL FROM:<a@remote.test>');
  let lines = '';
  for (let i = 0; i < 1001; i++) lines += `RCPT TO:<alice+${i}@example.test>\r\n`;
  c.sendRaw(lines);
  const codes: number[] = [];
  for (let i = 0; i < 1001; i++) codes.push((await c.readReply()).code);
  assert.equal(codes.filter((x) => x === 250).length, 1000);
  assert.equal(codes[1000], 452);
  await c.command('RSET');
  await c.quit();
});

test('SMTP smuggling: bare LF / CR end-of-data look-alikes never split a message (CVE-2023-51764)', async () => {
  const variants = ['\n.\n', '\n.\r\n', '\r\n.\n', '\r.\r\n', '\r\n.\r'];
  for (const [i, v] of variants.entries()) {
    const c = await connect();
    await c.command('EHLO client.test');
    await c.command('MAIL FROM:<a@remote.test>');
    await c.command('RCPT TO:<alice@example.test>');
    assert.equal((await c.command('DATA')).code, 354);
    const smuggled = `MAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled-${i}\r\n\r\nevil\r\n`;
    c.sendRaw(`Subject: outer-${i}\r\n\r\nbody${v}${smuggled}.\r\n`);
    const r = await c.readReply();
    assert.equal(r.code, 250, `variant ${JSON.stringify(v)}`);
    await c.quit();
    assert.ok(!(await inbox(t, 'bob@example.test')).some((m) => m.subject === `smuggled-${i}`), `no smuggled message for ${JSON.stringify(v)}`);
    const outer = (await inbox(t, 'alice@example.test')).filter((m) => m.subject === `outer-${i}`);
    assert.equal(outer.length, 1);
    const raw = await blobText(t, outer[0]!.blobHash);
    assert.doesNotMatch(raw.replace(/\r\n/g, ''), /[\r\n]/, 'every line ending normalised to CRLF');
  }
});

test('bare LF line endings in the body are stored as CRLF', async () => {
  const c = await connect();
  await c.command('EHLO client.test');
  await c.command('MAIL FROM:<a@remote.test>');
  await c.command('RCPT TO:<alice@example.test>');
  await c.command('DATA');
  c.sendRaw('Subject: lf-1\n\nline one\nline two\n\r\n.\r\n');
  assert.equal((await c.readReply()).code, 250);
  await c.quit();
  const m = (await inbox(t, 'alice@example.test')).find((x) => x.subject === 'lf-1')!;
  assert.match(await blobText(t, m.blobHash), /Subject: lf-1\r\n\r\nline one\r\nline two\r\n\r\n$/);
});

test('dot-stuffed lines are unstuffed', async () => {
  const c = await connect();
  const res = await c.sendMail({ from: 'a@remote.test', to: ['alice@example.test'], message: message('dots-1', '.leading dot\r\n..two\r\n.\r\nend\r\n') });
  assert.equal(res.data?.code, 250);
  await c.quit();
  const m = (await inbox(t, 'alice@example.test')).find((x) => x.subject === 'dots-1')!;
  assert.match(await blobText(t, m.blobHash), /\r\n\r\n\.leading dot\r\n\.\.two\r\n\.\r\nend\r\n$/);
});

test('more than 50 Received headers: rejected as a loop (554 5.4.6)', async () => {
  const c = await connect();
  const hops = Array.from({ length: 51 }, (_, i) => `Received: from hop${i}.test by hop${i + 1}.test; Sat, 28 Nov 2026 05:00:00 +0000\r\n`).join('');
  const res = await c.sendMail({ from: 'a@remote.test', to: ['alice@example.test'], message: hops + message('loop-1') });
  assert.equal(res.data?.code, 554);
  assert.equal(res.data?.enhanced, '5.4.6');
  const hops50 = hops.split('\r\n').slice(0, 50).join('\r\n') + '\r\n';
  const ok = await c.sendMail({ from: 'a@remote.test', to: ['alice@example.test'], message: hops50 + message('loop-ok') });
  assert.equal(ok.data?.code, 250, '50 hops are still fine');
  await c.quit();
  assert.ok(!(await inbox(t, 'alice@example.test')).some((m) => m.subject === 'loop-1'));
});

test('8BITMIME and SMTPUTF8: UTF-8 addresses and 8-bit bodies are accepted intact', async () => {
  await t.server.ctx.data.addAccount('jürgen@example.test', null);
  const c = await connect();
  await c.command('EHLO client.test');
  assert.equal((await c.command('MAIL FROM:<søren@remote.test> BODY=8BITMIME SMTPUTF8')).code, 250);
  assert.equal((await c.command('RCPT TO:<jürgen@example.test>')).code, 250);
  const body = Buffer.from('Subject: utf8-1\r\n\r\nGrüße, ünïcödé\r\n', 'utf8');
  assert.equal((await c.data(body)).code, 250);
  await c.quit();
  const m = (await inbox(t, 'jürgen@example.test')).find((x) => x.subject === 'utf8-1')!;
  assert.ok((await t.server.ctx.blobs.readAll(m.blobHash)).includes(Buffer.from('Grüße, ünïcödé', 'utf8')));
});

test('a command line over 512 octets gets 421 and the connection is closed', async () => {
  const c = await connect();
  await c.command('EHLO client.test');
  c.send(`MAIL FROM:<${'a'.repeat(600)}@remote.test>`);
  const r = await c.readReply();
  assert.equal(r.code, 421);
  assert.match(r.text, /too long/i);
  await c.closed();
  // A line of exactly 512 octets with CRLF is fine (RFC 5321 §4.5.3.1.4).
  const ok = await connect();
  await ok.command('EHLO client.test');
  assert.equal((await ok.command(`NOOP ${'a'.repeat(512 - 'NOOP '.length - 2)}`)).code, 250);
  await ok.quit();
});

test('error limits: 421 and disconnect at the hard limit', async () => {
  const s = await startTestServer({ smtp: { soft_error_limit: 2, hard_error_limit: 5, error_delay: '50ms' } });
  try {
    const c = await SmtpTestClient.connect({ port: s.smtpPort });
    await c.command('EHLO client.test');
    await c.command('MAIL FROM:<a@remote.test>');
    const codes: number[] = [];
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) codes.push((await c.command(`RCPT TO:<nobody${i}@example.test>`)).code);
    assert.deepEqual(codes, [550, 550, 550, 550, 421]);
    assert.ok(Date.now() - t0 >= 100, 'replies past the soft limit are delayed');
    await c.closed();
  } finally {
    await s.stop();
  }
});

test('connections per client IP are limited', async () => {
  // Loopback is a trusted network by default (never limited): make it an ordinary client here.
  const s = await startTestServer({ smtp: { max_connections_per_ip: 3 }, bans: { trusted_networks: [] } });
  try {
    const clients = await Promise.all([1, 2, 3].map(() => SmtpTestClient.connect({ port: s.smtpPort })));
    for (const c of clients) assert.equal(c.greeting.code, 220);
    const fourth = await SmtpTestClient.connect({ port: s.smtpPort });
    assert.equal(fourth.greeting.code, 421);
    fourth.destroy();
    await clients[0]!.quit();
    await new Promise((r) => setTimeout(r, 100));
    const again = await SmtpTestClient.connect({ port: s.smtpPort });
    assert.equal(again.greeting.code, 220, 'a slot frees when a connection closes');
    for (const c of [again, clients[1]!, clients[2]!]) await c.quit();
  } finally {
    await s.stop();
  }
});

test('idle clients are disconnected after the timeout', async () => {
  const s = await startTestServer({ smtp: { idle_timeout: '300ms' } });
  try {
    const c = await SmtpTestClient.connect({ port: s.smtpPort });
    await c.command('EHLO client.test');
    const r = await c.readReply();
    assert.equal(r.code, 421);
    await c.closed();
  } finally {
    await s.stop();
  }
});

test('STARTTLS works on the MX port with the generated certificate', async () => {
  const c = await connect();
  await c.command('EHLO client.test');
  assert.equal((await c.startTls()).code, 220);
  const r = await c.command('EHLO client.test');
  assert.equal(r.code, 250);
  assert.ok(!r.lines.includes('STARTTLS'));
  const res = await c.sendMail({ from: 'a@remote.test', to: ['alice@example.test'], message: message('tls-1') });
  assert.equal(res.data?.code, 250);
  await c.quit();
  const m = (await inbox(t, 'alice@example.test')).find((x) => x.subject === 'tls-1')!;
  assert.match(await blobText(t, m.blobHash), /with ESMTPS id/);
});

/** Time from TCP connect to the first byte of the greeting, in ms. */
function timeToGreeting(port: number, sendFirst?: string): Promise<{ ms: number; text: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect(port, '127.0.0.1', () => {
      if (sendFirst) s.write(sendFirst);
    });
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      if (buf.includes('\r\n')) {
        resolve({ ms: performance.now() - t0, text: buf });
        s.destroy();
      }
    });
    s.on('error', reject);
  });
}

// Regression: smtp-server waited a fixed 100 ms before every greeting, which capped
// connection-per-message load at ~10 messages/s per session.
test('the greeting is sent without delay by default, also on LMTP', async () => {
  for (const port of [t.smtpPort, t.lmtpPort]) {
    const times: number[] = [];
    for (let i = 0; i < 5; i++) times.push((await timeToGreeting(port)).ms);
    assert.ok(Math.min(...times) < 60, `greeting after ${times.map((x) => x.toFixed(0)).join(', ')} ms`);
  }
});

test('smtp.greet_delay: the MX greeting waits, and a client that talks first gets 421', async () => {
  const s = await startTestServer({ smtp: { greet_delay: '400ms' } });
  try {
    const patient = await timeToGreeting(s.smtpPort);
    assert.ok(patient.ms >= 380, `waited ${patient.ms} ms`);
    assert.match(patient.text, /^220 /);
    const early = await timeToGreeting(s.smtpPort, 'EHLO spammer.test\r\n');
    assert.match(early.text, /^421 /);
    // LMTP never waits.
    assert.ok((await timeToGreeting(s.lmtpPort)).ms < 300);
  } finally {
    await s.stop();
  }
});

// The database writer thread gone (crash, OOM kill of the thread): a message gets a
// temporary failure at once — it stays with the client — instead of a hang.
test('if the database writer thread dies, DATA gets 451 and the session goes on', async () => {
  // The writer thread is the SQLite backend's (PostgreSQL commits from the pool).
  const s = await startTestServer({ store: { backend: 'sqlite' } });
  try {
    const writer = (s.server.ctx.data as unknown as { fastWriter: { worker: { terminate(): Promise<number> } } }).fastWriter;
    await writer.worker.terminate();
    const c = await SmtpTestClient.connect({ port: s.smtpPort, timeoutMs: 5000 });
    await c.command('EHLO client.test');
    const r = await c.sendMail({ from: 'a@client.test', to: ['alice@example.test'], message: 'Subject: x\r\n\r\nbody\r\n' });
    assert.equal(r.data?.code, 451);
    assert.equal(r.data!.enhanced, '4.3.0');
    assert.equal((await c.command('NOOP')).code, 250, 'the session is still usable');
    await c.quit();
  } finally {
    await s.stop();
  }
});
