import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { openStores } from '../../src/store/open.ts';
import { tempDir } from '../helpers/server.ts';

/**
 * The server's SQLite connection commits with synchronous=NORMAL and answers a
 * write only after the shared WAL flush (src/store/sqlite/wal-sync.ts). These
 * tests hold the flush (a fake fdatasync: the operating system, not our code)
 * and prove that no write resolves before its data is flushed — the rule that
 * nothing is acknowledged (IMAP OK, SMTP 250) before it is on disk — and that
 * concurrent writes share flushes.
 */

type Callback = (err: NodeJS.ErrnoException | null) => void;

function holdFlushes(): { held: Array<{ fd: number; cb: Callback }>; releaseAll(): void; restore(): void } {
  const real = fs.fdatasync;
  const held: Array<{ fd: number; cb: Callback }> = [];
  // node:fs's default export is a plain object: WalSync looks the function up at each call.
  (fs as { fdatasync: unknown }).fdatasync = (fd: number, cb: Callback) => held.push({ fd, cb });
  return {
    held,
    releaseAll() {
      for (const h of held.splice(0)) real(h.fd, h.cb);
    },
    restore() {
      (fs as { fdatasync: unknown }).fdatasync = real;
    },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 20));

test('a write on the server connection resolves only after the WAL is flushed', async () => {
  const dir = tempDir('postern-groupcommit-');
  const stores = await openStores(path.join(dir, 'data'), { writerThread: true });
  const hold = holdFlushes();
  try {
    let done = false;
    const p = stores.data.addDomain('held.test').then(() => (done = true));
    await tick();
    assert.equal(done, false, 'the write resolved before its flush');
    assert.equal(hold.held.length, 1, 'one flush was started');
    // Reads are not held behind the flush: the connection was handed on before waiting.
    assert.deepEqual(await stores.data.listDomains(), ['held.test']);
    hold.releaseAll();
    await p;
    assert.equal(done, true);
    // A read does not flush.
    await stores.data.listDomains();
    await tick();
    assert.equal(hold.held.length, 0);
  } finally {
    hold.restore();
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('concurrent writes share WAL flushes (at most one running and one queued)', async () => {
  const dir = tempDir('postern-groupcommit-');
  const stores = await openStores(path.join(dir, 'data'), { writerThread: true });
  const hold = holdFlushes();
  try {
    const first = stores.data.addDomain('a0.test');
    await tick();
    assert.equal(hold.held.length, 1);
    // 20 more writes commit while the first flush runs: they wait for one more flush, together.
    const rest = Array.from({ length: 20 }, (_, i) => stores.data.addDomain(`a${i + 1}.test`));
    await tick();
    assert.equal(hold.held.length, 1, 'no second flush starts while one runs');
    hold.releaseAll();
    await first;
    await tick();
    assert.equal(hold.held.length, 1, 'one flush for the 20 writes that came during the first');
    hold.releaseAll();
    await Promise.all(rest);
    assert.equal((await stores.data.listDomains()).length, 21);
  } finally {
    hold.restore();
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI stores (no writer thread) commit with synchronous=FULL and need no flush', async () => {
  const dir = tempDir('postern-groupcommit-');
  const stores = await openStores(path.join(dir, 'data'));
  const hold = holdFlushes();
  try {
    await stores.data.addDomain('cli.test');
    assert.equal(hold.held.length, 0);
  } finally {
    hold.restore();
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the writer thread checkpoints the WAL for the main connection (which has automatic checkpoints off)', async () => {
  const dir = tempDir('postern-checkpoint-');
  const dataDir = path.join(dir, 'data');
  const stores = await openStores(dataDir, { writerThread: true });
  try {
    const dbFile = path.join(dataDir, 'postern.db');
    const before = fs.statSync(dbFile).size;
    // ~400 KB written on the main connection only: it lands in the WAL, and reaches the
    // database file only through a checkpoint.
    const rows = Array.from({ length: 4000 }, (_, i) => ({ name: `d${i}-${'x'.repeat(80)}.test`, created_at: 0 }));
    for (let i = 0; i < rows.length; i += 500) await stores.data.db.insertInto('domains').values(rows.slice(i, i + 500)).execute();
    const deadline = Date.now() + 5000;
    while (fs.statSync(dbFile).size <= before + 300_000) {
      assert.ok(Date.now() < deadline, `postern.db stayed at ${fs.statSync(dbFile).size} bytes: no checkpoint ran`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal((await stores.data.listDomains()).length, 4000);
  } finally {
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the writer thread answers a delivery, STORE or EXPUNGE only after it flushed the WAL; commits that arrive together share a flush', async () => {
  const dir = tempDir('postern-groupcommit-');
  const stores = await openStores(path.join(dir, 'data'), { writerThread: true });
  try {
    const { data, writer } = stores;
    assert.ok(writer, 'the server store has a writer thread');
    await data.ensureDomain('flush.test');
    const acct = await data.addAccount('f@flush.test', null);
    const inbox = (await data.getMailbox(acct.id, 'INBOX'))!;
    const msg = (n: number) => {
      const bytes = Buffer.from(`Subject: ${n}\r\n\r\nbody ${n}\r\n`);
      return { blobHash: `flush-${n}`, size: bytes.length, blobData: bytes, meta: '{}', searchText: `body ${n}`, internalDate: n, subject: `${n}`, from: 'a@flush.test', date: null, messageId: `<${n}@flush.test>`, deliveries: [{ accountId: acct.id }], queue: null };
    };
    let before = writer.flushes;
    await data.addMessages([msg(1)]);
    assert.ok(writer.flushes > before, 'a delivery was answered before a flush');
    before = writer.flushes;
    await data.storeFlags(inbox.id, [1], 'add', ['\\Deleted']);
    assert.ok(writer.flushes > before, 'a STORE was answered before a flush');
    before = writer.flushes;
    await data.expunge(inbox.id);
    assert.ok(writer.flushes > before, 'an EXPUNGE was answered before a flush');
    // Twenty commits sent at once: every answer after a flush, fewer flushes than commits.
    await data.addMessages(Array.from({ length: 20 }, (_, i) => msg(100 + i)));
    before = writer.flushes;
    await Promise.all(Array.from({ length: 20 }, (_, i) => data.storeFlags(inbox.id, [2 + i], 'add', ['\\Seen'])));
    const used = writer.flushes - before;
    assert.ok(used >= 1 && used < 20, `${used} flushes for 20 concurrent STOREs`);
  } finally {
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the writer thread runs the writes that arrive together in one transaction, each in a savepoint: a failing one is undone alone, the others are committed and survive a reopen', async () => {
  const dir = tempDir('postern-groupcommit-');
  const file = path.join(dir, 'data');
  let stores = await openStores(file, { writerThread: true });
  try {
    const { data, writer } = stores;
    assert.ok(writer);
    await data.ensureDomain('turn.test');
    const acct = await data.addAccount('t@turn.test', null);
    const inbox = (await data.getMailbox(acct.id, 'INBOX'))!;
    const msg = (n: number, accounts: number[]) => {
      const bytes = Buffer.from(`Subject: ${n}\r\n\r\nbody ${n}\r\n`);
      return { blobHash: `turn-${n}`, size: bytes.length, blobData: bytes, meta: '{}', searchText: `body ${n}`, internalDate: n, subject: `${n}`, from: 'a@turn.test', date: null, messageId: `<${n}@turn.test>`, deliveries: accounts.map((accountId) => ({ accountId })), queue: null };
    };
    await data.addMessages(Array.from({ length: 6 }, (_, i) => msg(i + 1, [acct.id])));
    const before = writer.flushes;
    // Sent in one tick: the thread receives them together (one turn).
    const results = await Promise.allSettled([
      data.storeFlags(inbox.id, [1], 'add', ['\\Flagged']),
      data.storeFlags(inbox.id + 1000, [1], 'add', ['\\Seen']), // no such mailbox
      data.storeFlags(inbox.id, [2], 'add', ['\\Seen']),
      // its first delivery is written, then the second (no such account) fails: all of it goes
      data.addMessages([msg(50, [acct.id, acct.id + 1000])]),
      data.storeFlags(inbox.id, [3], 'add', ['\\Deleted']),
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
    assert.ok(writer.flushes - before < 5, `${writer.flushes - before} flushes for five writes sent together`);
    await data.expunge(inbox.id);
    await stores.close();
    stores = await openStores(file, { writerThread: true });
    const rows = await stores.data.db.selectFrom('messages').select(['uid', 'flags']).where('mailbox_id', '=', inbox.id).orderBy('uid').execute();
    assert.deepEqual(
      rows.map((r) => [Number(r.uid), r.flags]),
      [[1, '\\Flagged'], [2, '\\Seen'], [4, ''], [5, ''], [6, '']],
    );
    const blob = await stores.data.db.selectFrom('blobs').select('hash').where('hash', '=', 'turn-50').executeTakeFirst();
    assert.equal(blob, undefined, 'the failed delivery left its blob row');
    const mb = (await stores.data.getMailbox(acct.id, 'INBOX'))!;
    assert.equal(mb.uidnext, 7, 'the failed delivery took a UID');
  } finally {
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the server's lookups run on their own read-only connection: never behind another session's open transaction, never seeing its uncommitted rows", { timeout: 10_000 }, async () => {
  const dir = tempDir('postern-groupcommit-');
  const stores = await openStores(path.join(dir, 'data'), { writerThread: true });
  try {
    const { data } = stores;
    await data.addDomain('committed.test');
    await data.db.transaction().execute(async (trx) => {
      await trx.insertInto('domains').values({ name: 'open.test', created_at: Date.now() }).execute();
      // On the main connection these would wait for this transaction to end (kysely's
      // connection mutex): a deadlock here.
      assert.equal(await data.isLocalDomain('committed.test'), true);
      assert.equal(await data.isLocalDomain('open.test'), false, 'an uncommitted row was read');
    });
    assert.equal(await data.isLocalDomain('open.test'), true, 'the commit is seen by the next lookup');
  } finally {
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
