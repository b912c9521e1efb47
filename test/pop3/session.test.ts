import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { message, blobText, inbox } from '../helpers/server.ts';
import { Pop3TestClient, deliver, startPop3TestServer, type Pop3TestServer } from '../helpers/pop3-client.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';

/**
 * Every RFC 1939 / RFC 2449 command over a real socket, with its errors: CAPA in
 * each state, STAT, LIST, UIDL, RETR, TOP, DELE, RSET, NOOP, QUIT, unknown commands,
 * commands in the wrong state, bad syntax, long lines and pipelining. Logins are over
 * POP3S (implicit TLS); auth.test.ts covers STLS and the TLS rules.
 */
let t: Pop3TestServer;
const bodies = ['first\r\n', '.starts with a dot\r\n..two dots\r\n.\r\nmiddle\r\n', 'l1\r\nl2\r\nl3\r\nl4\r\nl5\r\n'];
before(async () => {
  t = await startPop3TestServer({}, { users: ['alice@example.test', 'bob@example.test', 'carol@example.test'] });
  for (let i = 0; i < bodies.length; i++) await deliver(t, 'alice@example.test', message(`m${i + 1}`, bodies[i]));
});
after(async () => t?.stop());

async function alice(): Promise<Pop3TestClient> {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.match(await c.login(), /^\+OK Logged in, 3 messages \(\d+ octets\)$/);
  return c;
}

test('greeting, and CAPA before and after login', async () => {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.equal(c.greeting, '+OK mx.example.test Postern POP3 ready');
  const before = await c.multi('CAPA');
  assert.equal(before.status, '+OK Capability list follows');
  assert.deepEqual(before.lines, ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'EXPIRE NEVER', 'UTF8 USER', 'USER', 'SASL SCRAM-SHA-256 PLAIN LOGIN', 'IMPLEMENTATION Postern']);
  assert.match(await c.login(), /^\+OK/);
  const afterLogin = await c.multi('CAPA');
  assert.deepEqual(afterLogin.lines, ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'EXPIRE NEVER', 'UTF8 USER', 'IMPLEMENTATION Postern']);
  assert.equal(await c.cmd('QUIT'), '+OK Logging out');
  await c.waitClosed();
});

test('STAT, LIST, LIST n, UIDL, UIDL n match the store; UIDL is %08X uid + %08X uidvalidity, as IMAP sees them', async () => {
  const rows = await inbox(t, 'alice@example.test');
  const c = await alice();
  const total = rows.reduce((a, r) => a + r.size, 0);
  assert.equal(await c.cmd('STAT'), `+OK 3 ${total}`);
  const list = await c.multi('LIST');
  assert.equal(list.status, `+OK 3 messages (${total} octets)`);
  assert.deepEqual(list.lines, rows.map((r, i) => `${i + 1} ${r.size}`));
  assert.equal(await c.cmd('LIST 2'), `+OK 2 ${rows[1]!.size}`);
  const imap = await ImapTestClient.connect(t.imapsPort, { tls: true });
  await imap.command('LOGIN alice@example.test secret');
  const sel = await imap.command('EXAMINE INBOX');
  const uidvalidity = Number(/UIDVALIDITY (\d+)/.exec(sel.lines.join('\n'))![1]);
  await imap.command('LOGOUT');
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
  const uidl = await c.multi('UIDL');
  assert.equal(uidl.status, '+OK Unique-ID listing follows');
  assert.deepEqual(uidl.lines, rows.map((r, i) => `${i + 1} ${hex(r.uid)}${hex(uidvalidity)}`));
  assert.equal(await c.cmd('UIDL 3'), `+OK 3 ${hex(rows[2]!.uid)}${hex(uidvalidity)}`);
  await c.cmd('QUIT');
  // the same in a new session
  const d = await alice();
  assert.deepEqual((await d.multi('UIDL')).lines, uidl.lines);
  await d.cmd('QUIT');
});

test('RETR sends the stored bytes, dot-stuffed, with the octet count of LIST; TOP n sends the header and n body lines', async () => {
  const rows = await inbox(t, 'alice@example.test');
  const c = await alice();
  for (let i = 0; i < 3; i++) {
    const stored = await blobText(t, rows[i]!.blobHash);
    const r = await c.retr(i + 1);
    assert.equal(r.status, `+OK ${rows[i]!.size} octets`);
    assert.equal(r.message.toString('latin1'), stored);
    assert.equal(r.raw.length - r.message.length, (stored.match(/(^|\r\n)\./g) ?? []).length);
  }
  const r2 = await c.retr(2);
  assert.ok(r2.raw.toString().includes('\r\n\r\n..starts with a dot\r\n...two dots\r\n..\r\nmiddle\r\n'), r2.raw.toString());
  const stored3 = await blobText(t, rows[2]!.blobHash);
  const header3 = stored3.slice(0, stored3.indexOf('\r\n\r\n') + 4);
  for (const n of [0, 1, 3, 5, 6, 1000]) {
    const top = await c.multi(`TOP 3 ${n}`);
    assert.equal(top.status, '+OK Top of message follows');
    const body = ['l1', 'l2', 'l3', 'l4', 'l5'].slice(0, n).map((l) => `${l}\r\n`).join('');
    assert.equal(top.raw.toString(), header3 + body, `TOP 3 ${n}`);
  }
  assert.equal(await c.cmd('RETR 4'), '-ERR No such message');
  assert.equal(await c.cmd('TOP 4 1'), '-ERR No such message');
  assert.equal(await c.cmd('TOP 1'), '-ERR Syntax: TOP msg n');
  await c.cmd('QUIT');
});

test('DELE marks: the message disappears from STAT/LIST/UIDL, RETR/TOP/LIST n/DELE of it fail; RSET unmarks; NOOP', async () => {
  const c = await alice();
  const [, total] = (await c.cmd('STAT')).split(' ').slice(1).map(Number) as [number, number];
  const size2 = Number((await c.cmd('LIST 2')).split(' ')[2]);
  assert.equal(await c.cmd('DELE 2'), '+OK Message 2 deleted');
  assert.equal(await c.cmd('STAT'), `+OK 2 ${total - size2}`);
  assert.deepEqual((await c.multi('LIST')).lines.map((l) => l.split(' ')[0]), ['1', '3']);
  assert.deepEqual((await c.multi('UIDL')).lines.map((l) => l.split(' ')[0]), ['1', '3']);
  assert.equal(await c.cmd('LIST 2'), '-ERR Message 2 is deleted');
  assert.equal(await c.cmd('UIDL 2'), '-ERR Message 2 is deleted');
  assert.equal(await c.cmd('RETR 2'), '-ERR Message 2 is deleted');
  assert.equal(await c.cmd('TOP 2 0'), '-ERR Message 2 is deleted');
  assert.equal(await c.cmd('DELE 2'), '-ERR Message 2 already deleted');
  assert.equal(await c.cmd('DELE 9'), '-ERR No such message');
  assert.equal(await c.cmd('DELE 0'), '-ERR No such message');
  assert.equal(await c.cmd('NOOP'), '+OK');
  assert.equal(await c.cmd('RSET'), `+OK Maildrop has 3 messages (${total} octets)`);
  assert.equal(await c.cmd('LIST 2'), `+OK 2 ${size2}`);
  assert.equal(await c.cmd('QUIT'), '+OK Logging out');
  assert.equal((await inbox(t, 'alice@example.test')).length, 3);
});

test('commands in the wrong state, unknown commands, APOP, bad syntax: -ERR, and the session goes on', async () => {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.equal(await c.cmd('STAT'), '-ERR STAT needs a login first');
  assert.equal(await c.cmd('PASS secret'), '-ERR No user name given; send USER first');
  assert.match(await c.login(), /^\+OK/);
  assert.equal(await c.cmd('USER bob@example.test'), '-ERR USER is only allowed before login');
  assert.equal(await c.cmd('STLS'), '-ERR STLS is only allowed before login');
  assert.equal(await c.cmd('AUTH PLAIN'), '-ERR AUTH is only allowed before login');
  assert.equal(await c.cmd('UTF8'), '-ERR UTF8 is only allowed before login');
  assert.equal(await c.cmd('XYZZY'), '-ERR Unknown command');
  assert.equal(await c.cmd('APOP alice 0123'), '-ERR APOP is not supported; use USER/PASS or AUTH over TLS');
  assert.equal(await c.cmd('LIST x'), '-ERR Invalid message number: expected a number');
  assert.equal(await c.cmd('STAT now'), '-ERR STAT takes no arguments');
  assert.equal(await c.cmd('RETR\u0000 1'), '-ERR Invalid characters in the command');
  assert.equal(await c.cmd('stat').then((r) => r.startsWith('+OK 3 ')), true);
  await c.cmd('QUIT');
});

test('three bad commands before login end the connection; after login the limit is higher', async () => {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.equal(await c.cmd('FOO'), '-ERR Unknown command');
  assert.equal(await c.cmd('BAR'), '-ERR Unknown command');
  assert.equal(await c.cmd('BAZ'), '-ERR Unknown command');
  assert.equal(await c.line(), '-ERR Too many invalid commands, closing the connection');
  await c.waitClosed();
  const d = await alice();
  for (let i = 0; i < 5; i++) assert.equal(await d.cmd('FOO'), '-ERR Unknown command');
  assert.equal(await d.cmd('NOOP'), '+OK');
  await d.cmd('QUIT');
});

test('a line over the limit is answered -ERR without being buffered; the session goes on', async () => {
  const c = await alice();
  c.write(`NOOP ${'x'.repeat(200_000)}\r\n`);
  assert.equal(await c.line(), '-ERR Line too long (at most 4096 octets)');
  assert.equal(await c.cmd('NOOP'), '+OK');
  // the same, arriving slowly in pieces without a line end for a while
  for (let i = 0; i < 5; i++) c.write('y'.repeat(2000));
  assert.equal(await c.line(), '-ERR Line too long (at most 4096 octets)');
  c.write('\r\n');
  assert.equal(await c.cmd('STAT').then((r) => r.startsWith('+OK 3')), true);
  await c.cmd('QUIT');
});

test('PIPELINING: many commands in one write are answered in order', async () => {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  c.write('CAPA\r\nUSER alice@example.test\r\nPASS secret\r\nSTAT\r\nLIST\r\nRETR 1\r\nTOP 3 2\r\nDELE 1\r\nNOOP\r\nUIDL 1\r\nRSET\r\nQUIT\r\n');
  assert.equal((await c.readMulti()).status, '+OK Capability list follows');
  assert.equal(await c.line(), '+OK Send your password');
  assert.match(await c.line(), /^\+OK Logged in, 3 messages/);
  assert.match(await c.line(), /^\+OK 3 \d+$/);
  assert.equal((await c.readMulti()).lines.length, 3);
  const r = await c.readMulti();
  assert.match(r.status, /^\+OK \d+ octets$/);
  assert.ok(r.raw.toString().endsWith('first\r\n'));
  assert.ok((await c.readMulti()).raw.toString().endsWith('\r\n\r\nl1\r\nl2\r\n'));
  assert.equal(await c.line(), '+OK Message 1 deleted');
  assert.equal(await c.line(), '+OK');
  assert.equal(await c.line(), '-ERR Message 1 is deleted');
  assert.match(await c.line(), /^\+OK Maildrop has 3 messages/);
  assert.equal(await c.line(), '+OK Logging out');
  await c.waitClosed();
  assert.equal((await inbox(t, 'alice@example.test')).length, 3);
});

test('UTF8 (RFC 6856) before login, and a user name in UTF-8', async () => {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.equal(await c.cmd('UTF8'), '+OK UTF8 enabled');
  assert.equal(await c.cmd('USER jösé@example.test'), '+OK Send your password');
  assert.equal(await c.cmd('PASS secret'), '-ERR [AUTH] Authentication failed');
  assert.match(await c.login(), /^\+OK/);
  await c.cmd('QUIT');
});

test('an empty maildrop: STAT 0 0, LIST and UIDL empty', async () => {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.equal(await c.login('carol@example.test'), '+OK Logged in, 0 messages (0 octets)');
  assert.equal(await c.cmd('STAT'), '+OK 0 0');
  assert.deepEqual(await c.multi('LIST'), { status: '+OK 0 messages (0 octets)', lines: [], raw: Buffer.alloc(0) });
  assert.deepEqual((await c.multi('UIDL')).lines, []);
  assert.equal(await c.cmd('RETR 1'), '-ERR No such message');
  assert.equal(await c.cmd('QUIT'), '+OK Logging out');
});
