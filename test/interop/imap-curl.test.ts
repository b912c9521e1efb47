import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, missing } from '../helpers/cli.ts';
import { startTestServer, inbox, blobText, message, type TestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';

/**
 * curl (Debian package curl) as an IMAP client (RFC 9051 / RFC 5092 URLs): LIST over
 * IMAPS, a message fetched by UID, STARTTLS with --ssl-reqd, a custom command (-X),
 * SEARCH through the URL query, and a wrong password (curl exit code 67, CURLE_LOGIN_DENIED).
 * The server's certificate is self-signed: -k.
 */
const skip = missing('curl');
let t: TestServer;
const sent: string[] = [];
before(async () => {
  if (skip) return;
  t = await startTestServer({ auth: { failure_delay: '10ms' } });
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  for (let i = 1; i <= 3; i++) {
    const m = message(`curl ${i}`, `body ${i}\r\nsecond line\r\n`);
    sent.push(m);
    const r = await c.sendMail({ from: 'bob@example.test', to: ['alice@example.test'], message: m });
    assert.equal(r.data?.code, 250);
  }
  await c.quit();
});
after(async () => t?.stop());

const USER = 'alice@example.test:secret';
const curl = (args: string[]) => run('curl', ['-sS', '-k', '--max-time', '20', ...args], { timeoutMs: 30_000 });
const imaps = (path = '') => `imaps://127.0.0.1:${t.imapsPort}/${path}`;

test('curl: LIST of the root and of INBOX over IMAPS', { skip }, async () => {
  const root = await curl([imaps(), '-u', USER]);
  assert.equal(root.status, 0, root.stderr);
  const lines = root.stdout.trim().split(/\r?\n/);
  for (const [box, use] of [['INBOX', ''], ['Drafts', ' \\Drafts'], ['Sent', ' \\Sent'], ['Junk', ' \\Junk'], ['Trash', ' \\Trash'], ['Archive', ' \\Archive']]) {
    assert.ok(lines.some((l) => l === `* LIST (\\HasNoChildren${use}) "/" ${box}`), `${box} in\n${root.stdout}`);
  }
  const r = await curl([imaps('INBOX'), '-u', USER]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), '* LIST (\\HasNoChildren) "/" INBOX');
});

test('curl: INBOX;UID=1 fetches the stored message byte for byte (and marks it \\Seen)', { skip }, async () => {
  const r = await run('curl', ['-sS', '-k', '--max-time', '20', imaps('INBOX;UID=1'), '-u', USER]);
  assert.equal(r.status, 0, r.stderr);
  const row = (await inbox(t, 'alice@example.test')).find((m) => m.uid === 1)!;
  const stored = await blobText(t, row.blobHash);
  assert.equal(r.stdout, stored);
  // what the client sent is there unchanged, after the trace headers the server prepended
  assert.ok(stored.endsWith(sent[0]!), stored);
  assert.match(stored, /^Return-Path: <bob@example\.test>\r\nReceived: /);
  assert.deepEqual((await inbox(t, 'alice@example.test')).find((m) => m.uid === 1)!.flags, ['\\Seen']);
});

test('curl: STARTTLS on the IMAP port with --ssl-reqd fetches UID 2', { skip }, async () => {
  const r = await curl(['--ssl-reqd', `imap://127.0.0.1:${t.imapPort}/INBOX;UID=2`, '-u', USER, '-v']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /> A\d+ STARTTLS\r?\n< A\d+ OK/);
  const row = (await inbox(t, 'alice@example.test')).find((m) => m.uid === 2)!;
  assert.equal(r.stdout, await blobText(t, row.blobHash));
});

test('curl: without TLS the cleartext port refuses the login (LOGINDISABLED): exit 67', { skip }, async () => {
  const r = await curl([`imap://127.0.0.1:${t.imapPort}/`, '-u', USER]);
  assert.equal(r.status, 67, r.stdout + r.stderr);
});

test("curl: -X 'EXAMINE INBOX' shows the untagged responses of a read-only select", { skip }, async () => {
  const r = await curl(['-X', 'EXAMINE INBOX', imaps(), '-u', USER]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split(/\r?\n/);
  assert.ok(lines.includes('* 3 EXISTS'), r.stdout);
  assert.ok(lines.includes('* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)'), r.stdout);
  assert.ok(lines.includes('* OK [PERMANENTFLAGS ()] Flags permitted'), r.stdout);
  assert.ok(lines.some((l) => /^\* OK \[UIDVALIDITY \d+\]/.test(l)), r.stdout);
  assert.ok(lines.includes('* OK [UIDNEXT 4] Predicted next UID'), r.stdout);
});

test('curl: a URL query runs SEARCH (UNSEEN, SUBJECT)', { skip }, async () => {
  const unseen = await curl([imaps('INBOX?UNSEEN'), '-u', USER]);
  assert.equal(unseen.status, 0, unseen.stderr);
  assert.equal(unseen.stdout.trim(), '* SEARCH 3', 'UIDs 1 and 2 were fetched (\\Seen) by the tests above');
  const subj = await curl([imaps('INBOX?SUBJECT%20%22curl%202%22'), '-u', USER]);
  assert.equal(subj.status, 0, subj.stderr);
  assert.equal(subj.stdout.trim(), '* SEARCH 2');
});

test('curl: a wrong password is CURLE_LOGIN_DENIED (exit 67) on IMAPS and after STARTTLS', { skip }, async () => {
  const a = await curl([imaps(), '-u', 'alice@example.test:wrong']);
  assert.equal(a.status, 67, a.stdout + a.stderr);
  assert.match(a.stderr, /Login denied/);
  const b = await curl(['--ssl-reqd', `imap://127.0.0.1:${t.imapPort}/`, '-u', 'alice@example.test:wrong']);
  assert.equal(b.status, 67, b.stdout + b.stderr);
});
