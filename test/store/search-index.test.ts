import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../../src/store/schema.ts';
import { pino } from 'pino';
import { startTestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { openStores } from '../../src/store/open.ts';
import { backfillSearch } from '../../src/core/search-backfill.ts';

type Row = { hash: string; body: string };
const ftsRows = async (db: Kysely<Database>, word: string) =>
  (await sql<Row>`SELECT hash, body FROM search_text WHERE search_text MATCH ${word}`.execute(db)).rows;

/**
 * The full-text index is filled after the 250 (out of the acknowledged transaction):
 * delivered mail becomes searchable shortly after, and a message whose index entry
 * was lost in a crash is re-indexed from the stored message at the next start.
 */
test('delivered messages reach the full-text index; entries lost in a crash are rebuilt at start', async () => {
  // SQLite's FTS5 index (PostgreSQL search comes with IMAP SEARCH).
  const t = await startTestServer({ store: { backend: 'sqlite' } });
  const dir = t.dir;
  try {
    const c = await SmtpTestClient.connect({ port: t.smtpPort });
    await c.command('EHLO client.test');
    for (const [i, word] of ['zanzibar', 'quokka'].entries()) {
      const r = await c.sendMail({
        from: 'a@client.test',
        to: ['alice@example.test'],
        message: `From: a@client.test\r\nSubject: note ${i}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe, the ${word} says hi\r\n`,
      });
      assert.equal(r.data?.code, 250);
    }
    await c.quit();
    const db = t.server.ctx.data.db;
    // Deferred, not lost: poll briefly.
    for (let i = 0; i < 50 && (await ftsRows(db, 'quokka')).length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const [row] = await ftsRows(db, 'zanzibar');
    assert.ok(row, 'indexed');
    assert.match(row.body, /Grüße, the zanzibar says hi/, 'decoded text (quoted-printable, UTF-8) is indexed');
    assert.equal((await ftsRows(db, 'quokka')).length, 1);
    assert.equal((await db.selectFrom('search_pending').selectAll().execute()).length, 0, 'nothing left pending');
  } finally {
    await t.server.stop(); // keeps the data directory (t.stop() would delete it)
  }

  // Simulate a crash between the delivery commit and the index transaction.
  const stores = await openStores(dir);
  try {
    const db = stores.data.db;
    const [row] = await ftsRows(db, 'zanzibar');
    await sql`DELETE FROM search_text WHERE hash = ${row!.hash}`.execute(db);
    await db.insertInto('search_pending').values({ hash: row!.hash }).execute();
    assert.equal((await ftsRows(db, 'zanzibar')).length, 0);
    const n = await backfillSearch(stores.data, stores.blobs, pino({ level: 'silent' }));
    assert.equal(n, 1);
    assert.equal((await ftsRows(db, 'zanzibar')).length, 1, 're-indexed from the stored message');
    assert.equal(await backfillSearch(stores.data, stores.blobs, pino({ level: 'silent' })), 0);
  } finally {
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
