import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { postern, writeConfig } from '../helpers/cli.ts';
import { storeToml } from '../helpers/backend.ts';
import { assertQuota } from '../../src/imap/commands/quota.ts';
import { accountQuota } from '../../src/core/quota.ts';
import { ImapError } from '../../src/imap/errors.ts';

/** QUOTA (RFC 9208) and COMPRESS=DEFLATE (RFC 4978). */

let t: TestServer;
const CRLF = '\r\n';
const BIG = 'The quick brown fox jumps over the lazy dog. '.repeat(5000); // ~225 KB, compresses well

function message(subject: string, body: string): Buffer {
  return Buffer.from(`From: bob@example.test${CRLF}To: alice@example.test${CRLF}Subject: ${subject}${CRLF}${CRLF}${body}${CRLF}`);
}

before(async () => {
  t = await startTestServer({}, { users: ['alice@example.test', 'bob@example.test', 'carol@example.test'] });
  const { ctx } = t.server;
  for (const [user, subject, body] of [
    ['alice@example.test', 'one', 'x'.repeat(3000)],
    ['alice@example.test', 'two', 'y'.repeat(2000)],
    ['carol@example.test', 'big', BIG],
    ['carol@example.test', 'small', 'hello'],
  ] as const) {
    const acct = (await ctx.data.getAccount(user))!;
    await ctx.ingest.ingestBuffer(message(subject, body), { deliveries: [{ accountId: acct.id, mailbox: 'INBOX', flags: [] }], queue: null, internalDate: Date.now() });
  }
  // A message in another mailbox counts too (one quota root for the whole account).
  const alice = (await ctx.data.getAccount('alice@example.test'))!;
  await ctx.ingest.ingestBuffer(message('archived', 'z'.repeat(1500)), { deliveries: [{ accountId: alice.id, mailbox: 'Archive', flags: [] }], queue: null, internalDate: Date.now() });
  // Limits are set by the administrator; no CLI yet.
  await ctx.data.db.updateTable('accounts').set({ quota_bytes: 100 * 1024 }).where('email', '=', 'alice@example.test').execute();
});
after(() => t.stop());

async function login(user = 'alice@example.test'): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  const r = await c.login(user);
  assert.equal(r.status, 'OK', r.text);
  return c;
}

// ---------------------------------------------------------------------------
// QUOTA

test('QUOTA capabilities after login only; RES-STORAGE, not RES-MESSAGE (no message limit to report)', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    assert.doesNotMatch(c.greeting, /QUOTA|COMPRESS/);
    const r = await c.login();
    assert.match(r.text, / QUOTA QUOTA=RES-STORAGE /);
    assert.match(r.text, / COMPRESS=DEFLATE[ \]]/);
    assert.doesNotMatch(r.text, /RES-MESSAGE/);
  } finally {
    c.close();
  }
});

test('GETQUOTAROOT and GETQUOTA: one root "" per user, STORAGE in KiB over all mailboxes', async () => {
  const q = await accountQuota(t.server.ctx.data, (await t.server.ctx.data.getAccount('alice@example.test'))!.id);
  assert.equal(q.limitBytes, 100 * 1024);
  assert.equal(q.messages, 3);
  assert.ok(q.bytes > 6500 && q.bytes < 7500, String(q.bytes));
  const used = Math.ceil(q.bytes / 1024);
  const c = await login();
  try {
    const root = await c.command('GETQUOTAROOT INBOX');
    assert.equal(root.status, 'OK', root.text);
    assert.deepEqual(root.lines, ['* QUOTAROOT INBOX ""', `* QUOTA "" (STORAGE ${used} 100)`]);
    const archive = await c.command('GETQUOTAROOT Archive');
    assert.deepEqual(archive.lines, ['* QUOTAROOT Archive ""', `* QUOTA "" (STORAGE ${used} 100)`]);
    const get = await c.command('GETQUOTA ""');
    assert.equal(get.status, 'OK');
    assert.deepEqual(get.lines, [`* QUOTA "" (STORAGE ${used} 100)`]);
    // Works in the selected state too.
    assert.equal((await c.command('SELECT INBOX')).status, 'OK');
    assert.deepEqual((await c.command('GETQUOTA ""')).lines, [`* QUOTA "" (STORAGE ${used} 100)`]);
  } finally {
    c.close();
  }
});

test('QUOTA errors: unknown root and mailbox are NO [NONEXISTENT]; SETQUOTA is NO [NOPERM]; syntax BAD; not before login', async () => {
  const pre = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    assert.equal((await pre.command('GETQUOTAROOT INBOX')).status, 'BAD');
  } finally {
    pre.close();
  }
  const c = await login();
  try {
    const other = await c.command('GETQUOTA "user.bob"');
    assert.equal(other.status, 'NO');
    assert.match(other.text, /^\[NONEXISTENT\]/);
    const nobox = await c.command('GETQUOTAROOT "No such box"');
    assert.equal(nobox.status, 'NO');
    assert.match(nobox.text, /^\[NONEXISTENT\]/);
    const set = await c.command('SETQUOTA "" (STORAGE 1000000)');
    assert.equal(set.status, 'NO');
    assert.match(set.text, /^\[NOPERM\]/);
    assert.equal((await c.command('GETQUOTAROOT')).status, 'BAD');
    assert.equal((await c.command('GETQUOTA')).status, 'BAD');
  } finally {
    c.close();
  }
});

test('an account without a limit has no quota root: QUOTAROOT lists none, GETQUOTA "" is NO', async () => {
  const c = await login('bob@example.test');
  try {
    const root = await c.command('GETQUOTAROOT INBOX');
    assert.equal(root.status, 'OK');
    assert.deepEqual(root.lines, ['* QUOTAROOT INBOX']);
    const get = await c.command('GETQUOTA ""');
    assert.equal(get.status, 'NO');
    assert.match(get.text, /^\[NONEXISTENT\]/);
  } finally {
    c.close();
  }
});

test('assertQuota (the APPEND/COPY hook): NO [OVERQUOTA] when the message would not fit, nothing when no limit', async () => {
  const data = t.server.ctx.data;
  const alice = (await data.getAccount('alice@example.test'))!;
  const bob = (await data.getAccount('bob@example.test'))!;
  await assertQuota(data, alice.id, 10 * 1024);
  await assert.rejects(assertQuota(data, alice.id, 95 * 1024), (err: unknown) => err instanceof ImapError && err.kind === 'NO' && err.code === 'OVERQUOTA');
  await assertQuota(data, bob.id, 10 ** 12);
});

test('STATUS DELETED-STORAGE (RFC 9208 §4.4): the KiB an EXPUNGE would free', async () => {
  const c = await login();
  try {
    assert.equal((await c.command('SELECT INBOX')).status, 'OK');
    const size = Number(/RFC822\.SIZE (\d+)/.exec((await c.command('FETCH 1 RFC822.SIZE')).lines.join(' '))![1]);
    assert.ok(size > 3000);
    assert.deepEqual((await c.command('STATUS INBOX (DELETED DELETED-STORAGE)')).lines, ['* STATUS INBOX (DELETED 0 DELETED-STORAGE 0)']);
    assert.equal((await c.command('STORE 1 +FLAGS.SILENT (\\Deleted)')).status, 'OK');
    assert.deepEqual((await c.command('STATUS INBOX (DELETED DELETED-STORAGE)')).lines, [`* STATUS INBOX (DELETED 1 DELETED-STORAGE ${Math.ceil(size / 1024)})`]);
    assert.equal((await c.command('STORE 1 -FLAGS.SILENT (\\Deleted)')).status, 'OK');
  } finally {
    c.close();
  }
});

test('quota on delivery: `postern user quota` sets it; a full mailbox gets 452 4.2.2 at RCPT (counting SIZE=), others are unaffected; "none" lifts it', async () => {
  const env = writeConfig(t.dir, `hostname = "mx.example.test"\ndata_dir = "${t.dir}"\n${storeToml(t.store)}`);
  const data = t.server.ctx.data;
  const carol = (await data.getAccount('carol@example.test'))!;
  const used = (await accountQuota(data, carol.id)).bytes;
  const set = await postern(['user', 'quota', 'carol@example.test', String(used + 4096), '--config', env]);
  assert.equal(set.status, 0, set.stderr);
  assert.equal(await data.accountQuotaBytes(carol.id), used + 4096);
  const bad = await postern(['user', 'quota', 'carol@example.test', 'lots', '--config', env]);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /not a size/);
  const smtp = await SmtpTestClient.connect({ port: t.smtpPort });
  try {
    assert.equal((await smtp.command('EHLO client.test')).code, 250);
    // Room for 4 KiB: a declared 8 KiB does not fit, a small message does.
    assert.equal((await smtp.command('MAIL FROM:<x@remote.test> SIZE=8192')).code, 250);
    const full = await smtp.command('RCPT TO:<carol@example.test>');
    assert.equal(full.code, 452);
    assert.equal(full.enhanced, '4.2.2');
    assert.match(full.text, /<carol@example\.test>: Mailbox full/);
    // Another user in the same transaction is not affected.
    assert.equal((await smtp.command('RCPT TO:<bob@example.test>')).code, 250);
    assert.equal((await smtp.command('RSET')).code, 250);
    assert.equal((await smtp.command('MAIL FROM:<x@remote.test> SIZE=100')).code, 250);
    assert.equal((await smtp.command('RCPT TO:<carol@example.test>')).code, 250);
    assert.equal((await smtp.command('RSET')).code, 250);
    // Over the limit (a message delivered by the admin's tools, say): every message is refused.
    await data.setQuota('carol@example.test', used - 1);
    assert.equal((await smtp.command('MAIL FROM:<x@remote.test>')).code, 250);
    assert.equal((await smtp.command('RCPT TO:<carol@example.test>')).code, 452);
    assert.equal((await smtp.command('RSET')).code, 250);
    const none = await postern(['user', 'quota', 'carol@example.test', 'none', '--config', env]);
    assert.equal(none.status, 0, none.stderr);
    assert.equal(await data.accountQuotaBytes(carol.id), null);
    assert.equal((await smtp.command('MAIL FROM:<x@remote.test> SIZE=1000000')).code, 250);
    assert.equal((await smtp.command('RCPT TO:<carol@example.test>')).code, 250);
  } finally {
    await smtp.quit();
  }
});

// ---------------------------------------------------------------------------
// COMPRESS=DEFLATE

/**
 * Switches the test client to raw DEFLATE both ways (RFC 4978 §3), written here
 * independently of the server's stream: every command is sync-flushed. Returns the
 * compressed bytes as they came off the wire.
 */
function compressClient(c: ImapTestClient): Buffer[] {
  const raw = c.socket;
  raw.removeAllListeners('data');
  // The client's own 'close' listener too: the connection's close may come before the
  // inflater gave out the last response (zlib works off the event loop).
  raw.removeAllListeners('close');
  const wire: Buffer[] = [];
  raw.on('data', (d: Buffer) => wire.push(d));
  const inflate = zlib.createInflateRaw();
  const deflate = zlib.createDeflateRaw();
  raw.pipe(inflate);
  deflate.pipe(raw);
  const duplex = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      deflate.write(chunk);
      deflate.flush(zlib.constants.Z_SYNC_FLUSH, () => cb());
    },
  });
  inflate.on('data', (d: Buffer) => duplex.push(d));
  inflate.on('error', (e) => duplex.destroy(e));
  // The connection's end reaches the client only after the inflater gave out the last bytes
  // (zlib works off the event loop: closing on the socket's 'close' lost the final response).
  // Its last bytes and the end of the DEFLATE stream can come in one read: the end is
  // pushed after them, and the stream closes once they were read (a destroy() right
  // away dropped them).
  inflate.on('end', () => {
    duplex.once('end', () => duplex.destroy());
    duplex.push(null);
  });
  raw.on('close', () => {
    if (!inflate.writableEnded && !inflate.destroyed) inflate.end();
  });
  c.socket = duplex as unknown as net.Socket;
  (c as unknown as { listen(s: Duplex): void }).listen(duplex);
  return wire;
}

test('COMPRESS DEFLATE: OK in the clear, then every command and response compressed (over TLS), large FETCH streamed', async () => {
  const c = await login('carol@example.test');
  try {
    const r = await c.command('COMPRESS DEFLATE');
    assert.equal(r.status, 'OK', r.text);
    const wire = compressClient(c);
    const noop = await c.command('NOOP');
    assert.equal(noop.status, 'OK');
    const sel = await c.command('SELECT INBOX');
    assert.equal(sel.status, 'OK', sel.text);
    assert.ok(sel.lines.includes('* 2 EXISTS'), JSON.stringify(sel.lines));
    const before = wire.reduce((n, b) => n + b.length, 0);
    const f = await c.command('FETCH 1 BODY.PEEK[TEXT]');
    assert.equal(f.status, 'OK', f.text);
    const body = f.lines[0]!;
    assert.ok(body.includes(BIG), 'the whole body arrived intact');
    const compressedBytes = wire.reduce((n, b) => n + b.length, 0) - before;
    assert.ok(compressedBytes < BIG.length / 20, `compressed ${compressedBytes} bytes for ${BIG.length}`);
    assert.ok(!Buffer.concat(wire).includes('NOOP completed'), 'nothing in the clear after COMPRESS');
    // Inside a compressed session: NO [COMPRESSIONACTIVE].
    const again = await c.command('COMPRESS DEFLATE');
    assert.equal(again.status, 'NO');
    assert.match(again.text, /^\[COMPRESSIONACTIVE\]/);
    const bye = await c.command('LOGOUT');
    assert.equal(bye.status, 'OK');
    assert.equal(bye.lines[0], '* BYE Logging out');
  } finally {
    c.close();
  }
});

test('COMPRESS: only after login, only DEFLATE, not with commands pipelined behind it', async () => {
  const pre = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    assert.equal((await pre.command('COMPRESS DEFLATE')).status, 'BAD');
  } finally {
    pre.close();
  }
  const c = await login();
  try {
    assert.equal((await c.command('COMPRESS GZIP')).status, 'BAD');
    assert.equal((await c.command('COMPRESS')).status, 'BAD');
    // Pipelined: refused, and the NOOP behind it runs uncompressed.
    c.write('P1 COMPRESS DEFLATE\r\nP2 NOOP\r\n');
    const p1 = await c.read('P1');
    assert.equal(p1.status, 'BAD');
    assert.equal((await c.read('P2')).status, 'OK');
    assert.equal((await c.command('NOOP')).status, 'OK');
  } finally {
    c.close();
  }
});

test('COMPRESS: input that is not DEFLATE ends the connection', async () => {
  const c = await login();
  try {
    assert.equal((await c.command('COMPRESS DEFLATE')).status, 'OK');
    c.write('A9 NOOP\r\n'); // uncompressed: invalid DEFLATE
    const end = Date.now() + 5000;
    while (!c.closed && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    assert.ok(c.closed, 'the server closed the connection');
  } finally {
    c.close();
  }
});
