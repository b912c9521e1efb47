import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import zlib from 'node:zlib';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';
import { accountQuota, assertQuota } from '../../src/imap/commands/quota.ts';
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
  raw.on('close', () => duplex.destroy());
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
