import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, missing } from '../helpers/cli.ts';
import { startTestServer, inbox, blobText, type TestServer } from '../helpers/server.ts';

/**
 * swaks against submission (RFC 6409): STARTTLS (RFC 3207) on the submission port, implicit
 * TLS (RFC 8314) on submissions, AUTH PLAIN/LOGIN (RFC 4954), sender ownership, relay.
 * The server's self-signed certificate: swaks does not verify certificates by default.
 */

const skip = missing('swaks');
let t: TestServer;
before(async () => {
  // A short failure delay keeps the run quick; the 2 s default is tested in test/auth/.
  if (!skip) t = await startTestServer({ auth: { failure_delay: '50ms' } });
});
after(async () => t?.stop());

const auth = (mech: string) => ['--auth', mech, '--auth-user', 'alice@example.test', '--auth-password', 'secret'];

async function delivered(to: string, subject: string) {
  const m = (await inbox(t, to)).find((x) => x.subject === subject);
  assert.ok(m, `"${subject}" in ${to}'s INBOX`);
  return blobText(t, m.blobHash);
}

for (const mech of ['PLAIN', 'LOGIN']) {
  test(`swaks --tls --auth ${mech} on the submission port delivers, Received says ESMTPSA`, { skip }, async () => {
    const subject = `swaks-sub-${mech}`;
    const r = await run('swaks', [
      '--server', `127.0.0.1:${t.submissionPort}`, '--tls', ...auth(mech),
      '--from', 'alice@example.test', '--to', 'bob@example.test', '--header', `Subject: ${subject}`, '--body', `via ${mech}`,
    ]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /<-\s+220 .*\n.*~> EHLO/s, 'STARTTLS then EHLO inside TLS');
    assert.match(r.stdout, new RegExp(`~> AUTH ${mech}`));
    assert.match(r.stdout, /<~\s+235 2\.7\.0/);
    assert.match(r.stdout, /<~\s+250 2\.6\.0 /);
    const text = await delivered('bob@example.test', subject);
    assert.match(text, /with ESMTPSA id /);
    assert.match(text, new RegExp(`\\r\\n\\r\\nvia ${mech}\\r\\n`));
  });
}

test('swaks --tlsc --auth PLAIN on the submissions port (implicit TLS) delivers', { skip }, async () => {
  const r = await run('swaks', [
    '--server', `127.0.0.1:${t.submissionsPort}`, '--tlsc', ...auth('PLAIN'),
    '--from', 'alice@example.test', '--to', 'bob@example.test', '--header', 'Subject: swaks-465',
  ]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout, /STARTTLS/, 'no STARTTLS on an implicit-TLS port');
  assert.match(r.stdout, /<~\s+235 2\.7\.0/);
  assert.match(await delivered('bob@example.test', 'swaks-465'), /with ESMTPSA id /);
});

test('swaks: a forged envelope sender gets 553 5.7.1, a forged From header too; nothing is stored', { skip }, async () => {
  const before = (await inbox(t, 'bob@example.test')).length;
  const env = await run('swaks', [
    '--server', `127.0.0.1:${t.submissionPort}`, '--tls', ...auth('PLAIN'),
    '--from', 'bob@example.test', '--to', 'bob@example.test', '--header', 'Subject: swaks-forged-env',
  ]);
  assert.notEqual(env.status, 0, env.stdout);
  assert.match(env.stdout, /~> MAIL FROM:<bob@example\.test>\s*\n<~\*\s+553 5\.7\.1/);
  const hdr = await run('swaks', [
    '--server', `127.0.0.1:${t.submissionPort}`, '--tls', ...auth('PLAIN'),
    '--from', 'alice@example.test', '--to', 'bob@example.test', '--header', 'From: Bob <bob@example.test>', '--header', 'Subject: swaks-forged-hdr',
  ]);
  assert.notEqual(hdr.status, 0, hdr.stdout);
  assert.match(hdr.stdout, /~> \.\s*\n<~\*\s+553 5\.7\.1/, 'refused after DATA');
  assert.equal((await inbox(t, 'bob@example.test')).length, before);
});

test('swaks --auth without --tls: the submission port does not offer AUTH in cleartext', { skip }, async () => {
  const r = await run('swaks', [
    '--server', `127.0.0.1:${t.submissionPort}`, ...auth('PLAIN'),
    '--from', 'alice@example.test', '--to', 'bob@example.test', '--header', 'Subject: swaks-cleartext',
  ]);
  assert.notEqual(r.status, 0, r.stdout);
  assert.match(r.stdout, /<-\s+250-STARTTLS/);
  assert.doesNotMatch(r.stdout, /250[- ]AUTH/);
  assert.match(r.stdout + r.stderr, /Host did not advertise authentication/);
  assert.doesNotMatch(r.stdout, /-> AUTH/, 'the password never went out');
  assert.ok(!(await inbox(t, 'bob@example.test')).some((m) => m.subject === 'swaks-cleartext'));
});

test('swaks: after AUTH a remote recipient is accepted (250) and queued for relay', { skip }, async () => {
  const queued = await t.server.ctx.data.countQueued();
  const r = await run('swaks', [
    '--server', `127.0.0.1:${t.submissionPort}`, '--tls', ...auth('LOGIN'),
    '--from', 'alice@example.test', '--to', 'someone@remote.test', '--header', 'Subject: swaks-relay',
  ]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /~> RCPT TO:<someone@remote\.test>\s*\n<~\s+250 /);
  assert.equal(await t.server.ctx.data.countQueued(), queued + 1);
});

test('swaks without --auth: a remote recipient is refused on the submission port', { skip }, async () => {
  const queued = await t.server.ctx.data.countQueued();
  const r = await run('swaks', [
    '--server', `127.0.0.1:${t.submissionPort}`, '--tls',
    '--from', 'alice@example.test', '--to', 'someone@remote.test', '--header', 'Subject: swaks-relay-noauth',
  ]);
  assert.notEqual(r.status, 0, r.stdout);
  assert.match(r.stdout, /<~\*\s+530 5\.7\.0/);
  assert.equal(await t.server.ctx.data.countQueued(), queued);
});
