import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { startTestServer } from '../helpers/server.ts';
import { postern } from '../helpers/cli.ts';
import { dropTestStore, noPg, pgStore } from '../helpers/backend.ts';
import { openPostgresStores } from '../../src/store/open.ts';

async function send(port: number, to: string[], message: string): Promise<void> {
  const c = await SmtpTestClient.connect({ port, timeoutMs: 10_000 });
  await c.command('EHLO client.test');
  const r = await c.sendMail({ from: 'a@client.test', to, message });
  assert.equal(r.data?.code, 250);
  await c.quit();
}

test('postern migrate copies a SQLite installation into PostgreSQL with ids, UIDs, flags and bytes intact', { skip: noPg, timeout: 120_000 }, async () => {
  // The source: SQLite, small messages inline and a large one as a file.
  const t = await startTestServer({ store: { backend: 'sqlite', inline_max_size: 1024 } });
  const store = pgStore();
  try {
    const big = 'x'.repeat(76) + '\r\n';
    await send(t.smtpPort, ['alice@example.test'], 'Subject: one\r\n\r\nhello\r\n');
    await send(t.smtpPort, ['alice@example.test', 'bob@example.test'], 'Subject: two\r\n\r\nto both\r\n');
    await send(t.smtpPort, ['bob@example.test'], `Subject: large\r\n\r\n${big.repeat(5000)}`); // ~390 KB: a file
    await t.server.ctx.data.addAlias('team@example.test', ['alice@example.test', 'bob@example.test']);
    const before = new Map<string, Awaited<ReturnType<typeof t.server.ctx.data.listMessages>>>();
    for (const u of ['alice@example.test', 'bob@example.test']) before.set(u, await t.server.ctx.data.listMessages((await t.server.ctx.data.getAccount(u))!.id, 'INBOX'));
    const bytes = new Map<string, Buffer>();
    for (const rows of before.values()) for (const r of rows) bytes.set(r.blobHash, await t.server.ctx.blobs.readAll(r.blobHash));
    await t.server.stop(); // keep the data directory

    const r = await postern(['migrate', '--from', `sqlite:${t.dir}`, '--to', store.url, '--schema', store.schema], { timeoutMs: 90_000 });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /message bytes\s+\d+\s+\d+\n/);
    assert.match(r.stdout, /verification ok/);
    assert.doesNotMatch(r.stdout, /MISMATCH/);

    const dst = await openPostgresStores({ url: store.url, schema: store.schema, poolSize: 2 });
    try {
      for (const [u, rows] of before) {
        const acct = (await dst.data.getAccount(u))!;
        const after = await dst.data.listMessages(acct.id, 'INBOX');
        assert.deepEqual(after, rows, `${u}: same ids, UIDs, modseqs, flags, subjects`);
        for (const m of after) assert.ok((await dst.blobs.readAll(m.blobHash)).equals(bytes.get(m.blobHash)!), `bytes of ${m.subject}`);
      }
      assert.deepEqual(await dst.data.aliasTargets('team@example.test'), ['alice@example.test', 'bob@example.test']);
      const chunks = await dst.data.db.selectFrom('blob_chunks').select('hash').distinct().execute();
      assert.equal(chunks.length, 1, 'the large message became chunks');
    } finally {
      await dst.close();
    }

    // Into the same schema again: refused, nothing touched.
    const again = await postern(['migrate', '--from', `sqlite:${t.dir}`, '--to', store.url, '--schema', store.schema]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already holds \d+ accounts/);

    // A PostgreSQL node on the migrated schema carries on: next UID, no id collision.
    const node = await startTestServer({ store }, { users: [] });
    try {
      await send(node.smtpPort, ['bob@example.test'], 'Subject: after\r\n\r\nmigrated\r\n');
      const bob = (await node.server.ctx.data.getAccount('bob@example.test'))!;
      const rows = await node.server.ctx.data.listMessages(bob.id, 'INBOX');
      assert.deepEqual(rows.map((x) => x.subject), ['two', 'large', 'after']);
      assert.deepEqual(rows.map((x) => x.uid), [1, 2, 3]);
      assert.ok(rows[2]!.modseq > rows[1]!.modseq);
    } finally {
      await node.stop();
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
  assert.match(r2.stderr, /no Postern database at \/nonexistent\/postern\.db/);
  const help = await postern(['migrate', '--help']);
  assert.match(help.stdout, /--from <source>/);
});
