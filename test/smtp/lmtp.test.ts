import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { startTestServer, inbox, blobText, message, type TestServer } from '../helpers/server.ts';

let t: TestServer;
before(async () => {
  t = await startTestServer();
});
after(async () => t.stop());

test('LMTP (RFC 2033): LHLO, one reply per recipient after DATA', async () => {
  const c = await SmtpTestClient.connect({ port: t.lmtpPort });
  assert.match(c.greeting.text, /LMTP/);
  assert.equal((await c.command('LHLO mta.example.test')).code, 250);
  assert.equal((await c.command('MAIL FROM:<sender@remote.test>')).code, 250);
  assert.equal((await c.command('RCPT TO:<alice@example.test>')).code, 250);
  assert.equal((await c.command('RCPT TO:<nobody@example.test>')).code, 550);
  assert.equal((await c.command('RCPT TO:<bob@example.test>')).code, 250);
  const replies = await c.dataLmtp(message('lmtp-1'), 2);
  assert.deepEqual(replies.map((r) => r.code), [250, 250]);
  await c.quit();
  for (const u of ['alice@example.test', 'bob@example.test']) {
    const m = (await inbox(t, u)).find((x) => x.subject === 'lmtp-1');
    assert.ok(m, `delivered to ${u}`);
    assert.match(await blobText(t, m.blobHash), /with LMTP id/);
  }
});

test('LMTP refuses non-local recipients (no relaying through LMTP)', async () => {
  const c = await SmtpTestClient.connect({ port: t.lmtpPort });
  await c.command('LHLO mta.example.test');
  await c.command('MAIL FROM:<sender@remote.test>');
  const r = await c.command('RCPT TO:<someone@remote.test>');
  assert.equal(r.code, 550);
  await c.quit();
});

test('LMTP with an oversized message: one 552 per recipient', async () => {
  const s = await startTestServer({ smtp: { max_message_size: 10_000 } });
  try {
    const c = await SmtpTestClient.connect({ port: s.lmtpPort });
    await c.command('LHLO mta.example.test');
    await c.command('MAIL FROM:<sender@remote.test>');
    await c.command('RCPT TO:<alice@example.test>');
    await c.command('RCPT TO:<bob@example.test>');
    const replies = await c.dataLmtp(message('lmtp-big', 'y'.repeat(998) + '\r\n'.repeat(1) + ('z'.repeat(500) + '\r\n').repeat(30)), 2);
    assert.deepEqual(replies.map((r) => r.code), [552, 552]);
    await c.quit();
  } finally {
    await s.stop();
  }
});
