import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { startTestServer } from '../helpers/server.ts';
import { postern } from '../helpers/cli.ts';
import { dropTestStore, noPg, pgStore } from '../helpers/backend.ts';
import { openPostgresStores, openStores } from '../../src/store/open.ts';
import { CHUNK_SIZE } from '../../src/store/blob-chunks.ts';
import type { Database } from '../../src/store/schema.ts';
import type { NewMessage } from '../../src/store/data-store.ts';

/** PostgreSQL-only: skipped with that reason when no test database is configured. */
const skip = noPg;

async function send(port: number, to: string[], message: string): Promise<void> {
  const c = await SmtpTestClient.connect({ port, timeoutMs: 10_000 });
  try {
    const r = await c.sendMail({ from: 'a@client.test', to, message });
    assert.equal(r.data?.code, 250, `delivery to ${to.join(', ')}: ${r.data?.code} ${r.data?.text}`);
  } finally {
    await c.quit();
  }
}

/** Every table the migration copies, with the key that orders it. */
const TABLES: Array<[keyof Database, string[]]> = [
  ['domains', ['name']],
  ['accounts', ['id']],
  ['aliases', ['id']],
  ['mailboxes', ['id']],
  ['messages', ['id']],
  ['changes', ['id']],
  ['queue', ['id']],
  ['search_pending', ['hash']],
  ['policy_state', ['kind', 'key']],
];

async function dump(db: Kysely<Database>, table: keyof Database, keys: string[]): Promise<unknown[]> {
  let q = db.selectFrom(table).selectAll();
  for (const k of keys) q = q.orderBy(sql.ref(k));
  return q.execute();
}

test('postern migrate copies a SQLite installation into PostgreSQL with ids, UIDs, flags and bytes intact', { skip, timeout: 180_000 }, async () => {
  // The source: SQLite, small messages inline and a large one as a file.
  const t = await startTestServer({ store: { backend: 'sqlite', inline_max_size: 4096 } });
  const store = pgStore();
  try {
    const d = t.server.ctx.data;
    await d.addAlias('team@example.test', ['alice@example.test', 'bob@example.test', 'carol@remote.test']);
    const big = 'x'.repeat(76) + '\r\n';
    await send(t.smtpPort, ['alice@example.test'], 'Subject: one\r\n\r\nhello\r\n');
    await send(t.smtpPort, ['alice@example.test', 'bob@example.test'], 'Subject: two\r\n\r\nto both\r\n');
    await send(t.smtpPort, ['bob@example.test'], `Subject: large\r\n\r\n${big.repeat(5000)}`); // ~390 KB: a file, two chunks
    await send(t.smtpPort, ['team@example.test'], 'Subject: team\r\n\r\nto the alias (and a remote target: queued)\r\n');
    // Flags, an unsubscribed mailbox, shared policy state, a pending search entry.
    const alice = (await d.getAccount('alice@example.test'))!;
    await d.db.updateTable('messages').set({ flags: '\\Seen \\Flagged $Important' }).where('account_id', '=', alice.id).where('uid', '=', 1).execute();
    await d.db.updateTable('mailboxes').set({ subscribed: 0 }).where('account_id', '=', alice.id).where('name', '=', 'Junk').execute();
    await d.putState('ban', '192.0.2.7', 1, Date.now() + 3_600_000);
    await d.putState('fail', '192.0.2.7', 3, Date.now() + 3_600_000);
    await d.db.insertInto('search_pending').values({ hash: 'f'.repeat(64) }).execute();
    await t.server.stop(); // keeps the data directory

    const r = await postern(['migrate', '--from', `sqlite:${t.dir}`, '--to', store.url, '--schema', store.schema], { timeoutMs: 120_000 });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    for (const [table] of TABLES) assert.match(r.stdout, new RegExp(`^${table}\\s+(\\d+)\\s+\\1$`, 'm'), `verification row for ${table}`);
    assert.match(r.stdout, /^message bytes\s+(\d+)\s+\1$/m);
    assert.match(r.stdout, /verification ok/);
    assert.doesNotMatch(r.stdout, /MISMATCH/);
    // Not a terminal: one progress line per table.
    assert.match(r.stderr, /^messages: 6\/6 rows$/m);
    assert.match(r.stderr, /^message files: 1\/1 \(\d+ bytes\)$/m);

    const src = await openStores(t.dir);
    const dst = await openPostgresStores({ url: store.url, schema: store.schema, poolSize: 2 });
    try {
      // Every row of every table, ids included, is the same on both sides.
      for (const [table, keys] of TABLES) {
        const a = await dump(src.data.db, table, keys);
        assert.ok(a.length > 0 || table === 'search_pending', `the test has rows in ${table}`);
        assert.deepEqual(await dump(dst.data.db, table, keys), a, table);
      }
      const blobCols = ['hash', 'size', 'meta', 'data', 'created_at'] as const;
      const srcBlobs = await src.data.db.selectFrom('blobs').select(blobCols).orderBy('hash').execute();
      assert.deepEqual(await dst.data.db.selectFrom('blobs').select(blobCols).orderBy('hash').execute(), srcBlobs, 'blobs (meta, inline data as is)');
      assert.ok(srcBlobs.some((b) => b.data === null) && srcBlobs.some((b) => b.data !== null));

      for (const u of ['alice@example.test', 'bob@example.test']) {
        const before = await src.data.listMessages((await src.data.getAccount(u))!.id, 'INBOX');
        const acct = (await dst.data.getAccount(u))!;
        assert.deepEqual(acct, await src.data.getAccount(u), `${u}: id, password hash`);
        const after = await dst.data.listMessages(acct.id, 'INBOX');
        assert.deepEqual(after, before, `${u}: same ids, UIDs, modseqs, flags, internal dates, subjects`);
        for (const m of after) assert.ok((await dst.blobs.readAll(m.blobHash)).equals(await src.blobs.readAll(m.blobHash)), `bytes of ${u}'s "${m.subject}"`);
      }
      const flagged = (await dst.data.listMessages(alice.id, 'INBOX')).find((m) => m.uid === 1)!;
      assert.deepEqual(flagged.flags, ['\\Seen', '\\Flagged', '$Important']);
      assert.deepEqual(await dst.data.aliasTargets('team@example.test'), ['alice@example.test', 'bob@example.test', 'carol@remote.test']);
      assert.equal(await dst.data.countQueued(), 1, 'the remote alias target is still queued');

      // The large message: a file on SQLite, now CHUNK_SIZE rows in PostgreSQL (the last one shorter).
      const file = srcBlobs.find((b) => b.data === null)!;
      const chunks = await dst.data.db.selectFrom('blob_chunks').select(['hash', 'seq', 'data']).orderBy('hash').orderBy('seq').execute();
      assert.deepEqual([...new Set(chunks.map((c) => c.hash))], [file.hash], 'only the file became chunks');
      assert.deepEqual(chunks.map((c) => c.seq), [0, 1]);
      assert.deepEqual(chunks.map((c) => c.data.length), [CHUNK_SIZE, file.size - CHUNK_SIZE]);
      const joined = Buffer.concat(chunks.map((c) => c.data));
      assert.equal(crypto.createHash('sha256').update(joined).digest('hex'), file.hash);
    } finally {
      await dst.close();
      await src.close();
    }

    // Into the same schema again: refused, nothing touched.
    const again = await postern(['migrate', '--from', `sqlite:${t.dir}`, '--to', store.url, '--schema', store.schema]);
    assert.equal(again.status, 1, again.stderr);
    assert.match(again.stderr, /already holds 2 accounts.*new --schema/);

    // A PostgreSQL node on the migrated schema carries on: next UID, no id collision.
    const node = await startTestServer({ store }, { users: [] });
    try {
      const nd = node.server.ctx.data;
      const bob = (await nd.getAccount('bob@example.test'))!;
      const maxId = async (table: 'messages' | 'changes') => Number((await nd.db.selectFrom(table).select(sql<number>`max(id)`.as('n')).executeTakeFirstOrThrow()).n);
      const [msgMax, chgMax] = [await maxId('messages'), await maxId('changes')];
      await send(node.smtpPort, ['bob@example.test'], 'Subject: after\r\n\r\nmigrated\r\n');
      const rows = await nd.listMessages(bob.id, 'INBOX');
      assert.deepEqual(rows.map((x) => x.subject), ['two', 'large', 'team', 'after']);
      assert.deepEqual(rows.map((x) => x.uid), [1, 2, 3, 4]);
      assert.ok(rows[3]!.modseq > rows[2]!.modseq);
      assert.equal(rows[3]!.id, msgMax + 1, 'the messages sequence continues after the copied ids');
      assert.equal(await maxId('changes'), chgMax + 1, 'the changes sequence continues after the copied ids');
      await nd.addAccount('carol@example.test', null); // accounts and mailboxes sequences too
    } finally {
      await node.stop();
    }
  } finally {
    await t.stop();
    await dropTestStore(store);
  }
});

test('postern migrate while the source server receives mail: a consistent snapshot, new mail left out', { skip, timeout: 180_000 }, async () => {
  const t = await startTestServer({ store: { backend: 'sqlite', inline_max_size: 4096 } });
  const store = pgStore();
  try {
    // Enough rows that the copy takes a while, so deliveries land between tables.
    const d = t.server.ctx.data;
    const alice = (await d.getAccount('alice@example.test'))!;
    const bob = (await d.getAccount('bob@example.test'))!;
    for (let b = 0; b < 8; b++) {
      const batch: NewMessage[] = [];
      for (let i = 0; i < 500; i++) {
        const body = Buffer.from(`Subject: prefill ${b}.${i}\r\n\r\nhello\r\n`);
        batch.push({
          blobHash: crypto.createHash('sha256').update(body).digest('hex'),
          size: body.length,
          blobData: body,
          meta: '{}',
          searchText: '',
          internalDate: Date.now(),
          subject: `prefill ${b}.${i}`,
          from: 'a@client.test',
          date: null,
          messageId: null,
          deliveries: [{ accountId: alice.id }, { accountId: bob.id }],
          queue: null,
        });
      }
      await d.addMessages(batch);
    }

    let running = true;
    let sent = 0;
    const big = 'y'.repeat(998) + '\r\n';
    const sender = (async () => {
      while (running) {
        const large = sent % 4 === 3; // some large ones: files, whose rows must not be half-copied
        await send(t.smtpPort, ['alice@example.test', 'bob@example.test'], `Subject: live ${sent}\r\n\r\n${large ? big.repeat(300) : 'hi\r\n'}`);
        sent++;
      }
    })();
    const r = await postern(['migrate', '--from', `sqlite:${t.dir}`, '--to', store.url, '--schema', store.schema], { timeoutMs: 120_000 });
    running = false;
    await sender;
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /verification ok/);
    assert.ok(sent > 0, 'mail arrived during the copy');

    const dst = await openPostgresStores({ url: store.url, schema: store.schema, poolSize: 2 });
    try {
      const db = dst.data.db;
      // Every mailbox's uidnext and highestmodseq are past its messages, every account's modseq past its changes.
      const badMailboxes = await sql<{ id: number }>`
        SELECT mb.id FROM mailboxes mb JOIN messages m ON m.mailbox_id = mb.id
        GROUP BY mb.id, mb.uidnext, mb.highestmodseq HAVING max(m.uid) >= mb.uidnext OR max(m.modseq) > mb.highestmodseq`.execute(db);
      assert.deepEqual(badMailboxes.rows, []);
      const badAccounts = await sql<{ id: number }>`
        SELECT a.id FROM accounts a JOIN changes c ON c.account_id = a.id GROUP BY a.id, a.modseq HAVING max(c.modseq) > a.modseq`.execute(db);
      assert.deepEqual(badAccounts.rows, []);
      // Every message has its bytes.
      const orphans = await sql<{ id: number }>`
        SELECT m.id FROM messages m LEFT JOIN blobs b ON b.hash = m.blob_hash
        WHERE b.hash IS NULL OR (b.data IS NULL AND NOT EXISTS (SELECT 1 FROM blob_chunks c WHERE c.hash = b.hash))`.execute(db);
      assert.deepEqual(orphans.rows, []);
      const copied = await dst.data.countMessages();
      assert.ok(copied >= 8000, `the prefill is there (${copied})`);
      // The source kept receiving: what came after the snapshot is not in the copy.
      const src = await openStores(t.dir);
      try {
        assert.ok((await src.data.countMessages()) >= copied);
      } finally {
        await src.close();
      }
    } finally {
      await dst.close();
    }
  } finally {
    await t.stop();
    await dropTestStore(store);
  }
});

test('postern migrate: bad arguments are explained', async () => {
  const r = await postern(['migrate', '--from', '/var/lib/postern', '--to', 'postgres://x@127.0.0.1:1/db']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--from must be sqlite:DATA_DIR/);
  const r2 = await postern(['migrate', '--from', 'sqlite:/nonexistent', '--to', 'postgres://x@127.0.0.1:1/db']);
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, /no Postern database at \/nonexistent\/postern\.db/);
  const r3 = await postern(['migrate', '--from', 'sqlite:/nonexistent', '--to', 'postgres://x@127.0.0.1:1/db', '--schema', 'Bad-Name']);
  assert.equal(r3.status, 1);
  assert.match(r3.stderr, /--schema/);
  const help = await postern(['migrate', '--help']);
  assert.match(help.stdout, /--from <source>/);
  assert.match(help.stdout, /Example/);
});
