import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { run, missing } from '../helpers/cli.ts';
import { startTestServer, inbox, blobText, type TestServer } from '../helpers/server.ts';

/**
 * s-nail (14.9, v15-compat syntax) as an SMTP submission client with its built-in SMTP
 * client (not the local sendmail path): credentials in the `mta` URL, `smtp-auth`,
 * `smtp-use-starttls` for the submission port, `smtps://` for implicit TLS, and
 * `tls-verify=ignore` for the self-signed certificate. `-:/` loads no rc files (it
 * cannot be combined with -n, which is its subset); HOME is a temp dir.
 */

const skip = missing('s-nail');
let t: TestServer;
let home: string;
before(async () => {
  if (skip) return;
  t = await startTestServer({ auth: { failure_delay: '50ms' } });
  home = path.join(t.dir, 'home');
  fs.mkdirSync(home);
});
after(async () => t?.stop());

function snail(mta: string, subject: string, body: string, extra: string[] = []) {
  return run(
    's-nail',
    // DEAD: s-nail saves unsent mail to ~/dead.letter with ~ from the password database, not
    // $HOME, so point it into the temp dir.
    ['-:/', '-Sv15-compat', `-SDEAD=${path.join(home, 'dead.letter')}`, `-Smta=${mta}`, '-Stls-verify=ignore', '-Sfrom=Alice <alice@example.test>', ...extra, '-s', subject, 'bob@example.test'],
    { input: body, env: { HOME: home, MAILRC: '/dev/null', LC_ALL: 'C.UTF-8' }, timeoutMs: 30_000 },
  );
}

async function delivered(subject: string): Promise<string> {
  const m = (await inbox(t, 'bob@example.test')).find((x) => x.subject === subject);
  assert.ok(m, `"${subject}" in bob's INBOX`);
  return blobText(t, m.blobHash);
}

test('s-nail: smtp:// + smtp-use-starttls + smtp-auth=plain on the submission port', { skip }, async () => {
  const r = await snail(`smtp://alice%40example.test:secret@127.0.0.1:${t.submissionPort}`, 'snail starttls', 'over 587\n', [
    '-Ssmtp-use-starttls',
    '-Ssmtp-auth=plain',
  ]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const text = await delivered('snail starttls');
  assert.match(text, /with ESMTPSA id /);
  assert.match(text, /\r\nFrom: Alice <alice@example\.test>\r\n/);
  assert.match(text, /\r\n\r\nover 587\r\n$/);
});

test('s-nail: smtps:// + smtp-auth=login on the submissions port (implicit TLS)', { skip }, async () => {
  const r = await snail(`smtps://alice%40example.test:secret@127.0.0.1:${t.submissionsPort}`, 'snail smtps', 'over 465\n', ['-Ssmtp-auth=login']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(await delivered('snail smtps'), /with ESMTPSA id /);
});

test('s-nail: a wrong password fails (exit status ≠ 0) and nothing is delivered', { skip }, async () => {
  const r = await snail(`smtp://alice%40example.test:wrong@127.0.0.1:${t.submissionPort}`, 'snail wrong', 'x\n', [
    '-Ssmtp-use-starttls',
    '-Ssmtp-auth=plain',
  ]);
  assert.notEqual(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stderr, /535 5\.7\.8/);
  assert.ok(!(await inbox(t, 'bob@example.test')).some((m) => m.subject === 'snail wrong'));
  assert.match(fs.readFileSync(path.join(home, 'dead.letter'), 'utf8'), /Subject: snail wrong/, 'kept as unsent');
});

test('s-nail: smtp:// without STARTTLS: AUTH is not offered in cleartext, the send fails', { skip }, async () => {
  const r = await snail(`smtp://alice%40example.test:secret@127.0.0.1:${t.submissionPort}`, 'snail cleartext', 'x\n', ['-Ssmtp-auth=plain']);
  assert.notEqual(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stderr, /530 5\.7\.0/, 'AUTH attempted anyway is refused before STARTTLS');
  assert.ok(!(await inbox(t, 'bob@example.test')).some((m) => m.subject === 'snail cleartext'));
});
