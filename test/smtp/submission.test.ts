import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, inbox, blobText, message, type TestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';

/** Submission (RFC 6409) with STARTTLS (RFC 3207), implicit TLS (RFC 8314) and AUTH (RFC 4954). */

let t: TestServer;
// A short failure delay keeps these tests quick; the ≥ 2 s default is tested in test/auth/.
before(async () => {
  t = await startTestServer({ auth: { failure_delay: '50ms' }, bans: { trusted_networks: ['127.0.0.1'] } });
  await t.server.ctx.data.addAlias('sales@example.test', ['alice@example.test']);
  await t.server.ctx.data.addAlias('team@example.test', ['alice@example.test', 'carol@remote.test']);
});
after(() => t.stop());

const plain = (user: string, pass: string) => Buffer.from(`\0${user}\0${pass}`).toString('base64');

/** Connected to submission (587-style), STARTTLS done, EHLO sent, and logged in when `user` is given. */
async function submit(user?: string, pass = 'secret'): Promise<SmtpTestClient> {
  const c = await SmtpTestClient.connect({ port: t.submissionPort });
  await c.command('EHLO client.test');
  assert.equal((await c.startTls()).code, 220);
  const e = await c.command('EHLO client.test');
  assert.equal(e.code, 250);
  if (user) {
    const r = await c.command(`AUTH PLAIN ${plain(user, pass)}`);
    assert.equal(r.code, 235, `${r.code} ${r.text}`);
    assert.equal(r.enhanced, '2.7.0');
  }
  return c;
}

test('before TLS: AUTH is not offered, AUTH gets 530 5.7.0 and MAIL needs authentication', async () => {
  const c = await SmtpTestClient.connect({ port: t.submissionPort });
  const e = await c.command('EHLO client.test');
  assert.ok(e.lines.includes('STARTTLS'), e.text);
  assert.ok(!e.lines.some((l) => l.startsWith('AUTH')), `AUTH advertised before TLS: ${e.text}`);
  const a = await c.command(`AUTH PLAIN ${plain('alice@example.test', 'secret')}`);
  assert.equal(a.code, 530);
  assert.equal(a.enhanced, '5.7.0');
  const m = await c.command('MAIL FROM:<alice@example.test>');
  assert.equal(m.code, 530);
  assert.equal(m.enhanced, '5.7.0');
  await c.quit();
});

test('the MX port refuses AUTH before TLS too, and offers it after STARTTLS', async () => {
  const c = await SmtpTestClient.connect({ port: t.smtpPort });
  const e = await c.command('EHLO client.test');
  assert.ok(!e.lines.some((l) => l.startsWith('AUTH')), e.text);
  assert.equal((await c.command('AUTH LOGIN')).code, 530);
  await c.startTls();
  const e2 = await c.command('EHLO client.test');
  assert.ok(e2.lines.includes('AUTH SCRAM-SHA-256 PLAIN LOGIN'), e2.text);
  assert.ok(!e2.lines.includes('STARTTLS'));
  await c.quit();
});

test('after STARTTLS: AUTH PLAIN, own MAIL FROM, relay to a remote domain is queued; Date and Message-ID are added', async () => {
  const queuedBefore = await t.server.ctx.data.countQueued();
  const c = await submit('alice@example.test');
  const noIds = 'From: Alice <alice@example.test>\r\nTo: bob@example.test, dave@remote.test\r\nSubject: completed\r\n\r\nHi.\r\n';
  const r = await c.sendMail({ from: 'alice@example.test', to: ['bob@example.test', 'dave@remote.test'], message: noIds });
  assert.equal(r.data?.code, 250, JSON.stringify(r));
  await c.quit();
  assert.equal(await t.server.ctx.data.countQueued(), queuedBefore + 1, 'the remote recipient is queued');
  const m = (await inbox(t, 'bob@example.test')).find((x) => x.subject === 'completed');
  assert.ok(m);
  const text = await blobText(t, m.blobHash);
  assert.match(text, /\r\nDate: \w{3}, \d{1,2} \w{3} \d{4} /);
  assert.match(text, /\r\nMessage-ID: <[^>]+@mx\.example\.test>\r\n/);
  assert.match(text, /with ESMTPSA id /, 'RFC 3848: authenticated and TLS');
  assert.ok(m.messageId, 'the added Message-ID is indexed');
});

test('an existing Date and Message-ID are kept', async () => {
  const c = await submit('alice@example.test');
  const msg = 'From: alice@example.test\r\nTo: bob@example.test\r\nSubject: kept\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <mine@alice>\r\n\r\nx\r\n';
  assert.equal((await c.sendMail({ from: 'alice@example.test', to: ['bob@example.test'], message: msg })).data?.code, 250);
  await c.quit();
  const m = (await inbox(t, 'bob@example.test')).find((x) => x.subject === 'kept');
  const text = await blobText(t, m!.blobHash);
  assert.equal(text.match(/\r\nMessage-ID:/gi)?.length, 1);
  assert.equal(text.match(/\r\nDate:/gi)?.length, 1);
  assert.match(text, /Message-ID: <mine@alice>/);
});

test('a forged MAIL FROM gets 553 5.7.1; own +tag, aliases and catch-all-free group aliases are allowed', async () => {
  const c = await submit('alice@example.test');
  for (const forged of ['bob@example.test', 'ceo@bank.test', 'nobody@example.test']) {
    const r = await c.command(`MAIL FROM:<${forged}>`);
    assert.equal(r.code, 553, `${forged}: ${r.code} ${r.text}`);
    assert.equal(r.enhanced, '5.7.1');
  }
  for (const own of ['alice@example.test', 'ALICE@Example.Test', 'alice+lists@example.test', 'sales@example.test', 'team@example.test', '']) {
    const r = await c.command(`MAIL FROM:<${own}>`);
    assert.equal(r.code, 250, `${own}: ${r.code} ${r.text}`);
    await c.command('RSET');
  }
  await c.quit();
});

test('a forged From header is refused after DATA with 553 5.7.1 and nothing is stored', async () => {
  const c = await submit('alice@example.test');
  const before = (await inbox(t, 'bob@example.test')).length;
  for (const from of ['Bob <bob@example.test>', 'alice@example.test, mallory@evil.test', 'undisclosed']) {
    const r = await c.sendMail({ from: 'alice@example.test', to: ['bob@example.test'], message: `From: ${from}\r\nSubject: forged\r\n\r\nx\r\n` });
    assert.equal(r.data?.code, 553, `${from}: ${JSON.stringify(r.data)}`);
    assert.equal(r.data?.enhanced, '5.7.1');
  }
  // The session is still in sync and usable.
  const ok = await c.sendMail({ from: 'alice@example.test', to: ['bob@example.test'], message: 'From: sales@example.test\r\nSubject: alias from\r\n\r\nx\r\n' });
  assert.equal(ok.data?.code, 250);
  await c.quit();
  assert.equal((await inbox(t, 'bob@example.test')).length, before + 1);
});

test('a domain administrator may send as any address of the domain', async () => {
  const c = await submit('bob@example.test');
  assert.equal((await c.command('MAIL FROM:<noreply@example.test>')).code, 553);
  await c.quit();
  await t.server.ctx.data.setDomainAdmin('example.test', 'bob@example.test', true);
  try {
    const c2 = await submit('bob@example.test');
    const r = await c2.sendMail({ from: 'noreply@example.test', to: ['alice@example.test'], message: 'From: noreply@example.test\r\nSubject: admin\r\n\r\nx\r\n' });
    assert.equal(r.data?.code, 250);
    assert.equal((await c2.command('MAIL FROM:<x@remote.test>')).code, 553, 'only the domains they administer');
    await c2.quit();
  } finally {
    await t.server.ctx.data.setDomainAdmin('example.test', 'bob@example.test', false);
  }
});

test('AUTH LOGIN, abort with "*", bad base64, wrong password 535 5.7.8, AUTH twice 503', async () => {
  const c = await submit();
  assert.equal((await c.command('AUTH LOGIN')).code, 334);
  const ab = await c.command('*');
  assert.equal(ab.code, 501);
  assert.equal((await c.command('AUTH PLAIN not*base64')).code, 501);
  assert.equal((await c.command('AUTH CRAM-MD5')).code, 504);
  const wrong = await c.command(`AUTH PLAIN ${plain('alice@example.test', 'nope')}`);
  assert.equal(wrong.code, 535);
  assert.equal(wrong.enhanced, '5.7.8');
  const u = await c.command('AUTH LOGIN');
  assert.equal(Buffer.from(u.text, 'base64').toString(), 'Username:');
  assert.equal((await c.command(Buffer.from('alice@example.test').toString('base64'))).code, 334);
  const ok = await c.command(Buffer.from('secret').toString('base64'));
  assert.equal(ok.code, 235);
  assert.equal((await c.command(`AUTH PLAIN ${plain('alice@example.test', 'secret')}`)).code, 503);
  await c.quit();
  // RFC 4954 §4: not during a mail transaction (here: the MX port after STARTTLS, MAIL before AUTH).
  const mx = await SmtpTestClient.connect({ port: t.smtpPort });
  await mx.command('EHLO client.test');
  await mx.startTls();
  await mx.command('EHLO client.test');
  assert.equal((await mx.command('MAIL FROM:<x@remote.test>')).code, 250);
  const during = await mx.command(`AUTH PLAIN ${plain('alice@example.test', 'secret')}`);
  assert.equal(during.code, 503);
  assert.equal(during.enhanced, '5.5.1');
  await mx.quit();
});

test('AUTH PLAIN without an initial response (334 continuation)', async () => {
  const c = await submit();
  const r = await c.command('AUTH PLAIN');
  assert.equal(r.code, 334);
  assert.equal((await c.command(plain('bob@example.test', 'secret'))).code, 235);
  await c.quit();
});

test('implicit TLS (submissions): AUTH offered at once, no STARTTLS', async () => {
  const c = await SmtpTestClient.connect({ port: t.submissionsPort, tls: true });
  assert.equal(c.greeting.code, 220);
  const e = await c.command('EHLO client.test');
  assert.ok(e.lines.includes('AUTH SCRAM-SHA-256 PLAIN LOGIN'), e.text);
  assert.ok(!e.lines.includes('STARTTLS'));
  assert.equal((await c.command(`AUTH PLAIN ${plain('alice@example.test', 'secret')}`)).code, 235);
  const r = await c.sendMail({ from: 'alice@example.test', to: ['bob@example.test'], message: message('over 465').replace('sender@remote.test', 'alice@example.test') });
  assert.equal(r.data?.code, 250);
  await c.quit();
});

test('STARTTLS command injection: commands pipelined behind STARTTLS are discarded (CVE-2011-0411)', async () => {
  const c = await SmtpTestClient.connect({ port: t.submissionPort });
  await c.command('EHLO client.test');
  const r = await c.startTls({ inject: `AUTH PLAIN ${plain('alice@example.test', 'secret')}\r\nMAIL FROM:<alice@example.test>\r\n` });
  assert.equal(r.code, 220);
  // Inside TLS the session starts over: nothing the injected lines asked for happened.
  const e = await c.command('EHLO client.test');
  assert.equal(e.code, 250);
  const n = await c.command('NOOP');
  assert.equal(n.code, 250);
  assert.equal(c.bufferedReplies, 0, 'no replies to injected commands');
  const m = await c.command('MAIL FROM:<alice@example.test>');
  assert.equal(m.code, 530, 'the injected AUTH did not log in');
  await c.quit();
});

test('the session is reset by STARTTLS: an EHLO/AUTH before it does not carry over', async () => {
  const t2 = await startTestServer({ auth: { allow_plaintext_loopback: true } });
  try {
    const c = await SmtpTestClient.connect({ port: t2.submissionPort });
    const e = await c.command('EHLO client.test');
    assert.ok(e.lines.includes('AUTH SCRAM-SHA-256 PLAIN LOGIN'), 'loopback exemption: AUTH offered in plaintext');
    assert.equal((await c.command(`AUTH PLAIN ${plain('alice@example.test', 'secret')}`)).code, 235);
    await c.startTls();
    await c.command('EHLO client.test');
    assert.equal((await c.command('MAIL FROM:<alice@example.test>')).code, 530, 'logged out by STARTTLS (RFC 3207 §4.2)');
    await c.quit();
  } finally {
    await t2.stop();
  }
});

test('unauthenticated MX clients still cannot relay; authenticated ones on port 25 can', async () => {
  const c = await SmtpTestClient.connect({ port: t.smtpPort });
  await c.command('EHLO client.test');
  await c.command('MAIL FROM:<x@remote.test>');
  assert.equal((await c.command('RCPT TO:<y@elsewhere.test>')).code, 554);
  await c.command('RSET');
  await c.startTls();
  await c.command('EHLO client.test');
  assert.equal((await c.command(`AUTH PLAIN ${plain('alice@example.test', 'secret')}`)).code, 235);
  assert.equal((await c.command('MAIL FROM:<alice@example.test>')).code, 250);
  assert.equal((await c.command('RCPT TO:<y@elsewhere.test>')).code, 250);
  await c.quit();
});

test('per-user send rate limit: 451 4.7.1 past submission.rate_limit recipients, for SMTP users and local senders', async () => {
  const t2 = await startTestServer({ submission: { rate_limit: 3 } });
  try {
    const c = await SmtpTestClient.connect({ port: t2.submissionsPort, tls: true });
    await c.command('EHLO client.test');
    await c.command(`AUTH PLAIN ${plain('alice@example.test', 'secret')}`);
    await c.command('MAIL FROM:<alice@example.test>');
    const codes = [];
    for (const r of ['bob@example.test', 'x@remote.test', 'y@remote.test', 'z@remote.test']) codes.push((await c.command(`RCPT TO:<${r}>`)).code);
    assert.deepEqual(codes, [250, 250, 250, 451]);
    await c.quit();
    // bob has his own allowance.
    const b = await SmtpTestClient.connect({ port: t2.submissionsPort, tls: true });
    await b.command('EHLO client.test');
    await b.command(`AUTH PLAIN ${plain('bob@example.test', 'secret')}`);
    await b.command('MAIL FROM:<bob@example.test>');
    assert.equal((await b.command('RCPT TO:<alice@example.test>')).code, 250);
    await b.quit();
    // Local submission (postern-sendmail) counts per envelope sender.
    const l = await SmtpTestClient.connect({ path: t2.socketPath });
    await l.command('EHLO localhost');
    const local = [];
    for (let i = 0; i < 4; i++) {
      await l.command('MAIL FROM:<script@example.test>');
      const r = await l.command('RCPT TO:<bob@example.test>');
      local.push(r.code);
      if (r.code === 451) assert.equal(r.enhanced, '4.7.1');
      await l.command('RSET');
    }
    assert.deepEqual(local, [250, 250, 250, 451]);
    await l.quit();
  } finally {
    await t2.stop();
  }
});

test('submission.hide_client_ip leaves the client out of Received', async () => {
  const t2 = await startTestServer({ submission: { hide_client_ip: true } });
  try {
    const c = await SmtpTestClient.connect({ port: t2.submissionsPort, tls: true });
    await c.command('EHLO secret-laptop.home');
    await c.command(`AUTH PLAIN ${plain('alice@example.test', 'secret')}`);
    const r = await c.sendMail({ from: 'alice@example.test', to: ['bob@example.test'], message: 'From: alice@example.test\r\nSubject: private\r\n\r\nx\r\n' });
    assert.equal(r.data?.code, 250);
    await c.quit();
    const m = (await inbox(t2, 'bob@example.test')).find((x) => x.subject === 'private');
    const text = await blobText(t2, m!.blobHash);
    assert.match(text, /Received: by mx\.example\.test \(Postern\) with ESMTPSA id /);
    assert.doesNotMatch(text, /127\.0\.0\.1|secret-laptop/);
  } finally {
    await t2.stop();
  }
});
