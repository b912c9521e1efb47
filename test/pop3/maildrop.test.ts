import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { message, inbox, blobText } from '../helpers/server.ts';
import { Pop3TestClient, deliver, startPop3TestServer, type Pop3TestServer } from '../helpers/pop3-client.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';

/**
 * Maildrop semantics (RFC 1939 §4–§6): the snapshot at login, the IN-USE lock,
 * deletions only in the UPDATE state and durable before +OK, \Seen on RETR at QUIT,
 * EXPIRE, consistency with IMAP both ways, a 20 MB message, the idle timeout and the
 * configured mailbox.
 */
let t: Pop3TestServer;
before(async () => {
  t = await startPop3TestServer({}, { users: ['alice@example.test', 'bob@example.test', 'dave@example.test', 'erin@example.test'] });
});
after(async () => t?.stop());

async function login(user: string, opts: { expect?: RegExp } = {}): Promise<Pop3TestClient> {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.match(await c.login(user), opts.expect ?? /^\+OK Logged in/);
  return c;
}

const subjects = async (user: string) => (await inbox(t, user)).map((m) => m.subject);

test('the maildrop is a snapshot: mail delivered during the session waits for the next one', async () => {
  await deliver(t, 'dave@example.test', message('d1'));
  const c = await login('dave@example.test');
  await deliver(t, 'dave@example.test', message('d2'));
  assert.match(await c.cmd('STAT'), /^\+OK 1 /);
  assert.equal(await c.cmd('RETR 2'), '-ERR No such message');
  assert.equal(await c.cmd('QUIT'), '+OK Logging out');
  const d = await login('dave@example.test');
  assert.match(await d.cmd('STAT'), /^\+OK 2 /);
  await d.cmd('QUIT');
});

test('IN-USE: a second session of the same user is refused until the first one ends (QUIT or a dropped connection)', async () => {
  const a = await login('bob@example.test');
  const b = await Pop3TestClient.connect(t.pop3Port);
  await b.stls();
  assert.equal(await b.login('bob@example.test'), '-ERR [IN-USE] Mailbox is in use by another POP3 session');
  // still in AUTHORIZATION: another user may log in on the same connection
  assert.match(await b.login('erin@example.test'), /^\+OK Logged in/);
  await b.cmd('QUIT');
  assert.equal(await a.cmd('QUIT'), '+OK Logging out');
  const c = await login('bob@example.test');
  c.close(); // dropped, no QUIT
  await new Promise((r) => setTimeout(r, 200));
  const d = await login('bob@example.test');
  await d.cmd('QUIT');
});

test('in_use = "allow": two sessions at once; a message deleted by both is removed once', async () => {
  const u = await startPop3TestServer({ pop3: { in_use: 'allow' } });
  try {
    await deliver(u, 'alice@example.test', message('shared'));
    const a = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    const b = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    assert.match(await a.login(), /^\+OK/);
    assert.match(await b.login(), /^\+OK/);
    assert.equal(await a.cmd('DELE 1'), '+OK Message 1 deleted');
    assert.equal(await b.cmd('DELE 1'), '+OK Message 1 deleted');
    assert.equal(await a.cmd('QUIT'), '+OK Logging out, 1 message deleted');
    assert.equal(await b.cmd('QUIT'), '+OK Logging out');
    assert.equal((await inbox(u, 'alice@example.test')).length, 0);
  } finally {
    await u.stop();
  }
});

test('UPDATE state: DELE then a dropped connection deletes nothing; DELE then QUIT deletes, durably, before +OK', async () => {
  for (const s of ['u1', 'u2', 'u3']) await deliver(t, 'erin@example.test', message(s));
  const c = await login('erin@example.test');
  assert.equal(await c.cmd('DELE 1'), '+OK Message 1 deleted');
  assert.equal(await c.cmd('DELE 3'), '+OK Message 3 deleted');
  c.socket.destroy();
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(await subjects('erin@example.test'), ['u1', 'u2', 'u3']);
  // idle timeout is no QUIT either (below); a QUIT is:
  const d = await login('erin@example.test');
  await d.cmd('DELE 1');
  await d.cmd('DELE 3');
  assert.equal(await d.cmd('QUIT'), '+OK Logging out, 2 messages deleted');
  // the reply came after the commit: the store already shows it, with no wait
  assert.deepEqual(await subjects('erin@example.test'), ['u2']);
  await d.waitClosed();
});

test('RETR marks \\Seen at QUIT (TOP does not; a dropped session changes nothing); mark_seen = false keeps flags', async () => {
  const acct = (await t.server.ctx.data.getAccount('alice@example.test'))!;
  for (const s of ['s1', 's2', 's3']) await deliver(t, 'alice@example.test', message(s));
  const flags = async () => (await inbox(t, 'alice@example.test')).map((m) => m.flags.join(' '));
  const before = await flags();
  const n = before.length;
  const c = await login('alice@example.test');
  await c.retr(n - 2);
  c.close();
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(await flags(), before);
  const d = await login('alice@example.test');
  await d.retr(n - 2);
  await d.multi(`TOP ${n - 1} 0`);
  const modseq = await t.server.ctx.data.highestModseq((await t.server.ctx.data.getMailbox(acct.id, 'INBOX'))!.id);
  assert.equal(await d.cmd('QUIT'), '+OK Logging out');
  const after = await flags();
  assert.equal(after[n - 3], '\\Seen');
  assert.equal(after[n - 2], '');
  assert.ok((await t.server.ctx.data.highestModseq((await t.server.ctx.data.getMailbox(acct.id, 'INBOX'))!.id)) > modseq);
  const u = await startPop3TestServer({ pop3: { mark_seen: false } });
  try {
    await deliver(u, 'alice@example.test', message('no flags'));
    const e = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    await e.login();
    await e.retr(1);
    await e.cmd('QUIT');
    assert.deepEqual((await inbox(u, 'alice@example.test'))[0]!.flags, []);
  } finally {
    await u.stop();
  }
});

test('cross-protocol: a POP3 deletion is an EXPUNGE in a selected IMAP session; an IMAP expunge is gone from the next POP3 session', async () => {
  const u = await startPop3TestServer();
  try {
    for (const s of ['x1', 'x2', 'x3']) await deliver(u, 'alice@example.test', message(s));
    const imap = await ImapTestClient.connect(u.imapsPort, { tls: true });
    assert.equal((await imap.login()).status, 'OK');
    assert.equal((await imap.command('SELECT INBOX')).status, 'OK');
    const c = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    await c.login();
    await c.cmd('DELE 2');
    assert.equal(await c.cmd('QUIT'), '+OK Logging out, 1 message deleted');
    let seen: string[] = [];
    for (let i = 0; i < 50 && !seen.includes('* 2 EXPUNGE'); i++) {
      seen = (await imap.command('NOOP')).lines;
      if (!seen.includes('* 2 EXPUNGE')) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(seen.includes('* 2 EXPUNGE'), seen.join('\n'));
    const search = await imap.command('UID SEARCH ALL');
    const uids = search.lines[0]!.split(' ').slice(2).map(Number);
    assert.equal(uids.length, 2);
    // IMAP expunges the first message (x1)
    assert.equal((await imap.command(`UID STORE ${uids[0]} +FLAGS (\\Deleted)`)).status, 'OK');
    assert.equal((await imap.command(`UID EXPUNGE ${uids[0]}`)).status, 'OK');
    await imap.command('LOGOUT');
    const d = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    assert.match(await d.login(), /^\+OK Logged in, 1 messages/);
    const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
    assert.ok((await d.cmd('UIDL 1')).startsWith(`+OK 1 ${hex(uids[1]!)}`));
    assert.ok((await d.retr(1)).message.toString().includes('Subject: x3'));
    await d.cmd('QUIT');
  } finally {
    await u.stop();
  }
});

test('EXPIRE 0: CAPA says so, and what a session retrieved is removed at QUIT', async () => {
  const u = await startPop3TestServer({ pop3: { expire: 0 } });
  try {
    for (const s of ['e1', 'e2']) await deliver(u, 'alice@example.test', message(s));
    const c = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    assert.ok((await c.multi('CAPA')).lines.includes('EXPIRE 0'));
    await c.login();
    await c.retr(2);
    assert.equal(await c.cmd('QUIT'), '+OK Logging out, 1 message deleted');
    assert.deepEqual((await inbox(u, 'alice@example.test')).map((m) => m.subject), ['e1']);
  } finally {
    await u.stop();
  }
});

test('EXPIRE N days: \\Seen messages unchanged for N days are removed at QUIT; unread ones stay', async () => {
  const u = await startPop3TestServer({ pop3: { expire: 7 } });
  try {
    await deliver(u, 'alice@example.test', message('old read'), { flags: ['\\Seen'] });
    await deliver(u, 'alice@example.test', message('old unread'));
    const c = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    assert.ok((await c.multi('CAPA')).lines.includes('EXPIRE 7'));
    await c.login();
    assert.equal(await c.cmd('QUIT'), '+OK Logging out');
    assert.equal((await inbox(u, 'alice@example.test')).length, 2);
    // eight days later (the session's clock; the change log says when \Seen was set)
    const now = u.server.ctx.now;
    u.server.ctx.now = () => Date.now() + 8 * 86_400_000;
    try {
      const d = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
      await d.login();
      assert.equal(await d.cmd('QUIT'), '+OK Logging out, 1 message deleted');
    } finally {
      u.server.ctx.now = now;
    }
    assert.deepEqual((await inbox(u, 'alice@example.test')).map((m) => m.subject), ['old unread']);
  } finally {
    await u.stop();
  }
});

test('a 20 MB message streams byte for byte (with dot-stuffing) and TOP of it stops early', async () => {
  const u = await startPop3TestServer({ smtp: { max_message_size: '30M' }, auth: { failure_delay: '10ms', allow_plaintext_loopback: true } });
  try {
    const line = 'x'.repeat(70);
    const body: string[] = [];
    for (let i = 0; body.length * 72 < 20 * 1024 * 1024; i++) body.push(i % 1000 === 0 ? `.dot ${line}` : line);
    const data = message('big', `${body.join('\r\n')}\r\n`);
    await deliver(u, 'alice@example.test', data);
    let c = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    await c.login();
    const r = await c.retr(1);
    const stored = await blobText(u, (await inbox(u, 'alice@example.test'))[0]!.blobHash);
    assert.ok(stored.length > 20 * 1024 * 1024);
    assert.equal(r.status, `+OK ${stored.length} octets`);
    assert.equal(crypto.createHash('sha256').update(r.message).digest('hex'), crypto.createHash('sha256').update(Buffer.from(stored, 'latin1')).digest('hex'));
    assert.equal(r.raw.length - r.message.length, Math.ceil(body.length / 1000));
    const top = await c.multi('TOP 1 2');
    assert.equal(top.lines.slice(-2).join('|'), `.dot ${line}|${line}`);
    assert.equal(await c.cmd('NOOP'), '+OK');
    assert.equal(await c.cmd('QUIT'), '+OK Logging out');
    // A client that stops reading: the server waits for the socket (backpressure) instead of
    // reading the whole blob. Counted where the server reads the message: with a stalled reader it
    // takes what the socket buffers hold (a few MiB on loopback), not the 20 MiB. A plain
    // connection (loopback exemption): a paused TLS client may go on reading into its TLS layer.
    const blobs = u.server.ctx.blobs;
    const original = blobs.read.bind(blobs);
    let pulled = 0;
    blobs.read = (hash: string, start?: number, end?: number) => {
      const counter = new Transform({
        transform(chunk: Buffer, _enc, done) {
          pulled += chunk.length;
          done(null, chunk);
        },
      });
      pipeline(original(hash, start, end), counter).catch(() => undefined);
      return counter;
    };
    try {
      c = await Pop3TestClient.connect(u.pop3Port);
      await c.login();
      c.socket.pause();
      c.write('RETR 1\r\n');
      await new Promise((res) => setTimeout(res, 1500));
      assert.ok(pulled < 12 * 1024 * 1024, `the server read ${(pulled / 1048576).toFixed(1)} MiB of the message for a stalled reader`);
      c.socket.resume();
    } finally {
      blobs.read = original;
    }
    const again = await c.readMulti();
    assert.equal(again.raw.length, r.raw.length);
    assert.equal(await c.cmd('QUIT'), '+OK Logging out');
  } finally {
    await u.stop();
  }
});

test('idle timeout: -ERR and the connection closes; nothing marked is deleted', async () => {
  const u = await startPop3TestServer({ pop3: { idle_timeout: '1s' } });
  try {
    await deliver(u, 'alice@example.test', message('idle'));
    const c = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    await c.login();
    await c.cmd('DELE 1');
    // connected 600 ms into c's second of idleness (so d itself has time left): it logs in
    // the moment the -ERR arrives, and the lock must already be free. It is released before
    // the -ERR; released after it (a regression), a quick login got -ERR [IN-USE].
    await new Promise((r) => setTimeout(r, 600));
    const d = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    assert.equal(await c.line(), '-ERR Disconnected for inactivity');
    assert.match(await d.login(), /^\+OK/);
    await c.waitClosed();
    assert.equal((await inbox(u, 'alice@example.test')).length, 1);
    d.close();
  } finally {
    await u.stop();
  }
});

test('pop3.mailbox: POP3 sees the configured mailbox; a missing one is -ERR [SYS/PERM]', async () => {
  const u = await startPop3TestServer({ pop3: { mailbox: 'Archive' } });
  try {
    await deliver(u, 'alice@example.test', message('in archive'), { mailbox: 'Archive' });
    await deliver(u, 'alice@example.test', message('in inbox'));
    const c = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    assert.match(await c.login(), /^\+OK Logged in, 1 messages/);
    assert.ok((await c.retr(1)).message.toString().includes('Subject: in archive'));
    await c.cmd('QUIT');
    const acct = (await u.server.ctx.data.getAccount('bob@example.test'))!;
    await u.server.ctx.data.deleteMailbox(acct.id, 'Archive');
    const d = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    assert.equal(await d.login('bob@example.test'), '-ERR [SYS/PERM] Mailbox Archive does not exist (pop3.mailbox)');
    // the failed open released the lock: the same user can try again
    assert.equal(await d.login('bob@example.test'), '-ERR [SYS/PERM] Mailbox Archive does not exist (pop3.mailbox)');
    d.close();
  } finally {
    await u.stop();
  }
});
