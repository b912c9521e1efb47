import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { openPostgresStores, openStores, type Stores } from '../../src/store/open.ts';
import type { NewMessage } from '../../src/store/data-store.ts';
import { CHUNK_SIZE } from '../../src/store/blob-chunks.ts';
import { BlobStore } from '../../src/store/blob-store.ts';
import { tempDir } from '../helpers/server.ts';
import { dropTestStore, pgStore, PG_URL } from '../helpers/backend.ts';

/**
 * DESIGN.md: one conformance suite for every storage backend. Runs on SQLite
 * always and on PostgreSQL when one is given (POSTERN_TEST_PG_URL or POSTERN_TEST_PG). `open()` gives two
 * independent handles on one store — on PostgreSQL that is two nodes.
 */
interface Backend {
  name: string;
  /**
   * SQLite handles in ONE process cannot interleave write transactions: one would
   * wait synchronously (busy_timeout) for a lock the other can only release on the
   * same, now blocked, event loop. Real writers are separate processes or threads.
   */
  concurrentHandles: boolean;
  open(): Promise<{ a: Stores; b: Stores; cleanup(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'sqlite',
    concurrentHandles: false,
    async open() {
      const dir = tempDir('postern-conf-');
      const a = await openStores(path.join(dir, 'data'), { inlineMaxSize: 1024 });
      const b = await openStores(path.join(dir, 'data'), { inlineMaxSize: 1024 });
      return { a, b, cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }) };
    },
  },
];
if (PG_URL) {
  backends.push({
    name: 'postgres',
    concurrentHandles: true,
    async open() {
      const st = pgStore();
      const opts = { url: st.url, schema: st.schema, poolSize: 4 };
      const a = await openPostgresStores(opts, 1024);
      const b = await openPostgresStores(opts, 1024);
      return { a, b, cleanup: () => dropTestStore(st) };
    },
  });
}

function message(n: number, deliveries: NewMessage['deliveries'], body = `message ${n}`): NewMessage {
  const bytes = Buffer.from(`Subject: m${n}\r\n\r\n${body}\r\n`);
  return {
    blobHash: `hash-${n}-${body.length}`,
    size: bytes.length,
    blobData: bytes,
    meta: '{}',
    searchText: body,
    internalDate: 1_700_000_000_000 + n,
    subject: `m${n}`,
    from: 'a@x.test',
    date: null,
    messageId: `<${n}@x.test>`,
    deliveries,
    queue: null,
  };
}

for (const backend of backends) {
  test(`store conformance (${backend.name}): domains, accounts, aliases, default mailboxes`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      await a.data.addDomain('Conf.Test');
      assert.deepEqual(await b.data.listDomains(), ['conf.test']);
      await assert.rejects(a.data.addDomain('conf.test'), /exists already/);
      await assert.rejects(a.data.addAccount('x@other.test', null), /not a local domain/);
      const u = await a.data.addAccount('User@Conf.Test', 'h');
      assert.equal((await b.data.getAccount('user@conf.test'))?.id, u.id);
      await assert.rejects(b.data.addAccount('user@conf.test', null), /exists already/);
      const boxes = await a.data.db.selectFrom('mailboxes').select(['name', 'special_use']).where('account_id', '=', u.id).orderBy('name').execute();
      assert.deepEqual(boxes.map((x) => x.name), ['Archive', 'Drafts', 'INBOX', 'Junk', 'Sent', 'Trash']);
      await a.data.addAlias('all@conf.test', ['user@conf.test', 'far@remote.test']);
      assert.deepEqual(await b.data.aliasTargets('ALL@conf.test'), ['far@remote.test', 'user@conf.test']);
      assert.equal(await a.data.deleteAlias('all@conf.test', ['far@remote.test']), 1);
      assert.deepEqual(await b.data.aliasTargets('all@conf.test'), ['user@conf.test']);
      await assert.rejects(a.data.deleteDomain('conf.test'), /still has users/);
      await a.data.deleteAccount('user@conf.test');
      assert.equal(await b.data.getAccount('user@conf.test'), null);
    } finally {
      await a.close();
      await b.close();
      await cleanup();
    }
  });

  test(`store conformance (${backend.name}): concurrent deliveries from two handles get unique, ascending UIDs and modseqs`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      await a.data.addDomain('conf.test');
      const u1 = await a.data.addAccount('u1@conf.test', null);
      const u2 = await a.data.addAccount('u2@conf.test', null);
      // 2 handles × 10 concurrent batches × 5 messages, each to both users, in
      // opposite account order on the two handles (the deadlock-prone pattern).
      const jobs: Array<Promise<unknown>> = [];
      let n = 0;
      for (let i = 0; i < 10; i++) {
        const other = backend.concurrentHandles ? b : a;
        for (const [store, order] of [[a, [u1.id, u2.id]], [other, [u2.id, u1.id]]] as const) {
          const batch = Array.from({ length: 5 }, () => message(++n, order.map((accountId) => ({ accountId }))));
          // Both write paths into the same mailboxes: the backend's own (SQLite's
          // prepared-statement writer) and the portable kysely one must agree.
          jobs.push(i % 2 ? store.data.addMessages(batch) : store.data.addMessagesPortable(batch));
        }
      }
      await Promise.all(jobs);
      for (const u of [u1, u2]) {
        const rows = await a.data.listMessages(u.id, 'INBOX');
        assert.equal(rows.length, 100);
        assert.deepEqual(rows.map((r) => r.uid), Array.from({ length: 100 }, (_, i) => i + 1), 'UIDs 1..100, no gap, no duplicate');
        const modseqs = rows.map((r) => r.modseq).sort((x, y) => x - y);
        assert.equal(new Set(modseqs).size, 100, 'modseqs unique per account');
        const mb = await a.data.db.selectFrom('mailboxes').select(['uidnext', 'highestmodseq']).where('account_id', '=', u.id).where('name', '=', 'INBOX').executeTakeFirstOrThrow();
        assert.equal(Number(mb.uidnext), 101);
        assert.equal(Number(mb.highestmodseq), modseqs.at(-1));
        const changes = await a.data.db.selectFrom('changes').select(['modseq', 'uid']).where('account_id', '=', u.id).orderBy('modseq').execute();
        assert.equal(changes.length, 100, 'one change-log entry per delivery');
      }
    } finally {
      await a.close();
      await b.close();
      await cleanup();
    }
  });

  test(`store conformance (${backend.name}): message bytes inline and large, read whole and by range`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      for (const size of [100, CHUNK_SIZE - 1, CHUNK_SIZE, 3 * CHUNK_SIZE + 17]) {
        const bytes = Buffer.alloc(size);
        for (let i = 0; i < size; i++) bytes[i] = (i * 7 + size) & 0xff;
        const w = a.blobs.writer();
        // Arbitrary write sizes, as the SMTP DATA stream delivers them.
        for (let off = 0; off < size; off += 65_000) w.write(bytes.subarray(off, Math.min(size, off + 65_000)));
        const stored = await w.finish();
        assert.equal(stored.size, size);
        if (stored.data) {
          assert.ok(size <= 1024, 'only small messages come back inline');
          await a.data.addMessagesPortable([{ ...message(size, []), blobHash: stored.hash, size, blobData: stored.data }]);
        }
        assert.ok((await b.blobs.readAll(stored.hash)).equals(bytes), `${size} bytes read back by the other handle`);
        for (const [s, e] of [[0, 1], [size - 1, size], [Math.floor(size / 2), Math.min(size, Math.floor(size / 2) + CHUNK_SIZE + 5)]]) {
          const parts: Buffer[] = [];
          for await (const c of b.blobs.read(stored.hash, s, e)) parts.push(c as Buffer);
          assert.ok(Buffer.concat(parts).equals(bytes.subarray(s, e)), `range ${s}-${e} of ${size}`);
        }
      }
      // The same content twice is stored once; an aborted write leaves nothing behind.
      const big = Buffer.alloc(2 * CHUNK_SIZE, 1);
      const w1 = a.blobs.writer();
      w1.write(big);
      const h1 = await w1.finish();
      const w2 = b.blobs.writer();
      w2.write(big);
      assert.equal((await w2.finish()).hash, h1.hash);
      const w3 = a.blobs.writer();
      w3.write(Buffer.alloc(2 * CHUNK_SIZE, 2));
      await w3.drained();
      await w3.abort();
      if (backend.name === 'postgres') {
        const rows = await sql<{ hash: string; n: number }>`SELECT hash, count(*)::int AS n FROM blob_chunks GROUP BY hash`.execute(a.data.db);
        assert.ok(rows.rows.every((r) => !r.hash.startsWith('tmp:')), 'no temporary chunks left');
        assert.equal(rows.rows.find((r) => r.hash === h1.hash)?.n, 2, 'stored once');
      }
      await assert.rejects(async () => {
        for await (const _ of b.blobs.read('0'.repeat(64))) void _;
      }, /ENOENT/);
    } finally {
      await a.close();
      await b.close();
      await cleanup();
    }
  });
}

test('a BlobStore with a chunk store writes no files', async () => {
  const dir = tempDir('postern-conf-');
  const stores = await openStores(path.join(dir, 'data'));
  try {
    const blobs = new BlobStore(path.join(dir, 'elsewhere'), { chunks: stores.data, loadInline: (h) => stores.data.inlineBlob(h) });
    const w = blobs.writer();
    w.write(Buffer.alloc(CHUNK_SIZE + 1, 3));
    const h = await w.finish();
    assert.equal((await blobs.readAll(h.hash)).length, CHUNK_SIZE + 1);
    assert.equal(fs.existsSync(path.join(dir, 'elsewhere')), false);
  } finally {
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

for (const backend of backends) {
  test(`store conformance (${backend.name}): policy state is shared — counters, bans and expiry seen from every handle`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      const t0 = 1_800_000_000_000;
      // Concurrent failures from one IP counted through both handles: no lost update.
      const counts = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 && backend.concurrentHandles ? b : a).data.bumpCounter('auth-fail', '192.0.2.7', 600_000, t0)));
      assert.deepEqual([...counts].sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i + 1));
      // The window expires: counting restarts at 1.
      assert.equal(await b.data.bumpCounter('auth-fail', '192.0.2.7', 600_000, t0 + 600_000), 1);
      // A ban written on A holds on B until it expires.
      await a.data.putState('ban', '192.0.2.7', 1, t0 + 10_000);
      assert.deepEqual(await b.data.getState('ban', '192.0.2.7', t0 + 9_999), { value: 1, expiresAt: t0 + 10_000 });
      assert.equal(await b.data.getState('ban', '192.0.2.7', t0 + 10_000), null, 'expired');
      assert.deepEqual((await b.data.listState('ban', t0)).map((x) => x.key), ['192.0.2.7']);
      await b.data.deleteState('ban', '192.0.2.7');
      assert.equal(await a.data.getState('ban', '192.0.2.7', t0), null);
      await a.data.putState('greylist', 'x', 1, t0 + 1);
      assert.ok((await a.data.purgeExpiredState(t0 + 1)) >= 1);
    } finally {
      await a.close();
      await b.close();
      await cleanup();
    }
  });

  test(`store conformance (${backend.name}): queue claims never hand one entry to two nodes; an expired lease is claimable again`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      const t0 = 1_800_000_000_000;
      const rows = Array.from({ length: 60 }, (_, i) => ({ queue_id: `Q${i}`, sender: 's@x.test', recipient: `r${i}@far.test`, blob_hash: 'h', status: 'active', attempts: 0, next_attempt: t0 - i, last_error: null, created_at: t0, lease_until: null }));
      await a.data.db.insertInto('queue').values(rows).execute();
      const claimed = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 && backend.concurrentHandles ? b : a).data.claimQueue(7, 60_000, 'test', t0)));
      const ids = claimed.flat().map((e) => e.id);
      assert.equal(ids.length, 60, 'every due entry claimed');
      assert.equal(new Set(ids).size, 60, 'no entry claimed twice');
      assert.deepEqual(await a.data.claimQueue(10, 60_000, 'test', t0 + 1), [], 'all leased');
      const first = claimed.flat()[0]!;
      await a.data.finishQueueEntries([{ id: first.id, kind: 'retry', nextAttempt: t0 + 5_000, error: '451 try later' }]);
      assert.deepEqual(await b.data.claimQueue(10, 60_000, 'test', t0 + 4_999), []);
      const again = await b.data.claimQueue(10, 60_000, 'test', t0 + 5_000);
      assert.deepEqual(again.map((e) => e.id), [first.id]);
      assert.equal(again[0]!.attempts, 2);
      await b.data.finishQueueEntries([{ id: first.id, kind: 'done' }]);
      // A node died holding leases: after they expire, another node takes the work.
      const taken = await a.data.claimQueue(100, 60_000, 'test', t0 + 60_001);
      assert.equal(taken.length, 59);
    } finally {
      await a.close();
      await b.close();
      await cleanup();
    }
  });
}
