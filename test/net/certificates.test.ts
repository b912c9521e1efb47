import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeCert as cert } from '../helpers/certs.ts';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { postern, writeConfig } from '../helpers/cli.ts';


/** The CN of the certificate presented after STARTTLS on the submission port, asking for `servername`. */
async function presented(t: TestServer, servername?: string): Promise<string> {
  const c = await SmtpTestClient.connect({ port: t.submissionPort });
  await c.command('EHLO client.test');
  await c.startTls(servername ? { servername } : {});
  const cn = String(c.peerCertificate()?.subject?.CN ?? '');
  await c.quit();
  return cn;
}

test('SNI picks the certificate for the requested host; wildcards match one label; unknown names get the default', async () => {
  const dir = tempDir();
  const a = await cert(dir, 'a', ['mail.a.test']);
  const b = await cert(dir, 'b', ['mail.b.test']);
  const c = await cert(dir, 'c', ['wild.c.test']);
  const t = await startTestServer({ tls: { cert: a.cert, key: a.key, certificate: [{ ...b }, { ...c, hosts: ['*.c.test'] }] } });
  try {
    assert.equal(await presented(t), 'mail.a.test', 'no SNI: the default');
    assert.equal(await presented(t, 'mail.b.test'), 'mail.b.test', 'names from the certificate');
    assert.equal(await presented(t, 'MAIL.B.TEST'), 'mail.b.test', 'case-insensitive');
    assert.equal(await presented(t, 'imap.c.test'), 'wild.c.test', 'wildcard');
    assert.equal(await presented(t, 'a.b.c.test'), 'mail.a.test', 'a wildcard covers one label only');
    assert.equal(await presented(t, 'other.test'), 'mail.a.test');
    // Implicit TLS uses the same certificates.
    const s = await SmtpTestClient.connect({ port: t.submissionsPort, tls: true, host: '127.0.0.1' });
    assert.equal(String(s.peerCertificate()?.subject?.CN), 'mail.a.test');
    await s.quit();
  } finally {
    await t.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('certificate files are reloaded on change without a restart; a broken new pair is refused and the old one kept', async () => {
  const dir = tempDir();
  const first = await cert(dir, 'live', ['first.test']);
  const t = await startTestServer({ tls: { cert: first.cert, key: first.key, reload_check: '100ms' } });
  try {
    assert.equal(await presented(t), 'first.test');
    const next = await cert(tempDir(), 'next', ['second.test']);
    fs.copyFileSync(next.key, first.key);
    fs.copyFileSync(next.cert, first.cert);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(await presented(t), 'second.test', 'the renewed default certificate is served');
    const s = await SmtpTestClient.connect({ port: t.submissionsPort, tls: true });
    assert.equal(String(s.peerCertificate()?.subject?.CN), 'second.test', 'on the implicit TLS port too');
    await s.quit();
    // Only the certificate replaced (its key not yet): refused, the previous pair stays.
    const third = await cert(tempDir(), 'third', ['third.test']);
    fs.copyFileSync(third.cert, first.cert);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(await presented(t), 'second.test');
    fs.copyFileSync(third.key, first.key);
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(await presented(t), 'third.test', 'once the key matches, it is taken');
  } finally {
    await t.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an unreadable or mismatched certificate stops the start with the config key named', async () => {
  const dir = tempDir();
  const a = await cert(dir, 'a', ['a.test']);
  const b = await cert(dir, 'b', ['b.test']);
  const missing = writeConfig(dir, `data_dir = "${dir}"\n[listen]\nsmtp = "127.0.0.1:0"\n[[tls.certificate]]\ncert = "${a.cert}"\nkey = "${dir}/nope.key"\n`);
  const r1 = await postern(['serve', '--config', missing]);
  assert.equal(r1.status, 69, r1.stderr);
  assert.match(r1.stderr, /tls\.certificate\[0\]\.key .*nope\.key/);
  const mismatched = writeConfig(dir, `data_dir = "${dir}"\n[listen]\nsmtp = "127.0.0.1:0"\n[tls]\ncert = "${a.cert}"\nkey = "${b.key}"\n`);
  const r2 = await postern(['serve', '--config', mismatched]);
  assert.equal(r2.status, 69, r2.stderr);
  assert.match(r2.stderr, /tls\.key .* does not belong to the certificate/);
  assert.doesNotMatch(r2.stderr, /\n\s+at /, 'no stack trace');
  fs.rmSync(dir, { recursive: true, force: true });
});
