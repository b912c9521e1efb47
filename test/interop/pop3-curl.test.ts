import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, missing } from '../helpers/cli.ts';
import { inbox, blobText, message } from '../helpers/server.ts';
import { deliver, startPop3TestServer, type Pop3TestServer } from '../helpers/pop3-client.ts';

/**
 * curl (Debian package curl) as a POP3 client (RFC 2384 URLs): LIST over POP3S, a
 * message by number (RETR, dot-stuffing undone by curl must give the stored bytes),
 * STLS with --ssl-reqd on the plain port (and no password sent without it), custom commands (-X UIDL, -X TOP, -X DELE),
 * and a wrong password (exit code 67, CURLE_LOGIN_DENIED). Self-signed certificate: -k.
 */
const skip = missing('curl');
let t: Pop3TestServer;
before(async () => {
  if (skip) return;
  t = await startPop3TestServer({}, { users: ['alice@example.test', 'bob@example.test'] });
  await deliver(t, 'alice@example.test', message('curl 1', 'body 1\r\n'));
  await deliver(t, 'alice@example.test', message('curl 2', '.a line with a leading dot\r\n.\r\n..\r\nend\r\n'));
  await deliver(t, 'bob@example.test', message('bob 1'));
  await deliver(t, 'bob@example.test', message('bob 2'));
});
after(async () => t?.stop());

const USER = 'alice@example.test:secret';
const curl = (args: string[]) => run('curl', ['-sS', '-k', '--max-time', '20', ...args], { timeoutMs: 30_000 });
const pop3s = (path = '') => `pop3s://127.0.0.1:${t.pop3sPort}/${path}`;
const pop3 = (path = '') => `pop3://127.0.0.1:${t.pop3Port}/${path}`;

test('curl pop3s://: LIST, and each message byte for byte', { skip }, async () => {
  const rows = await inbox(t, 'alice@example.test');
  const list = await curl([pop3s(), '-u', USER]);
  assert.equal(list.status, 0, list.stderr);
  assert.deepEqual(list.stdout.trim().split(/\r\n/), rows.map((r, i) => `${i + 1} ${r.size}`));
  for (let i = 0; i < rows.length; i++) {
    const r = await run('curl', ['-sS', '-k', '--max-time', '20', pop3s(String(i + 1)), '-u', USER]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, await blobText(t, rows[i]!.blobHash));
  }
});

test('curl pop3:// with --ssl-reqd uses STLS; without it curl sends no password (CAPA offers none)', { skip }, async () => {
  const rows = await inbox(t, 'alice@example.test');
  const r = await curl(['--ssl-reqd', pop3('2'), '-u', USER]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, await blobText(t, rows[1]!.blobHash));
  // Without TLS, CAPA offers neither USER nor SASL: curl sends no password at all.
  const plain = await curl([pop3(), '-u', USER, '-v']);
  assert.equal(plain.status, 67, plain.stderr);
  assert.match(plain.stderr, /< STLS\r\n/);
  assert.doesNotMatch(plain.stderr, /> (USER|PASS|AUTH)/);
});

test('curl -X: UIDL, TOP, and DELE (deleted at the QUIT curl sends)', { skip }, async () => {
  const uidl = await curl([pop3s(), '-u', 'bob@example.test:secret', '-X', 'UIDL']);
  assert.equal(uidl.status, 0, uidl.stderr);
  assert.match(uidl.stdout, /^1 [0-9A-F]{16}\r\n2 [0-9A-F]{16}\r\n$/);
  const top = await curl([pop3s(), '-u', 'bob@example.test:secret', '-X', 'TOP 1 0']);
  assert.equal(top.status, 0, top.stderr);
  assert.match(top.stdout, /Subject: bob 1\r\n[\s\S]*\r\n\r\n$/);
  const dele = await curl([pop3s('1'), '-u', 'bob@example.test:secret', '-X', 'DELE', '-I']);
  assert.equal(dele.status, 0, dele.stderr);
  assert.deepEqual((await inbox(t, 'bob@example.test')).map((m) => m.subject), ['bob 2']);
});

test('curl: a wrong password is CURLE_LOGIN_DENIED (67)', { skip }, async () => {
  const r = await curl([pop3s(), '-u', 'alice@example.test:wrong']);
  assert.equal(r.status, 67, r.stderr);
});
