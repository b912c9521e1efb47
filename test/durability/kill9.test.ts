import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { postern, writeConfig } from '../helpers/cli.ts';
import { startChildServer, port } from '../helpers/child-server.ts';
import { tempDir } from '../helpers/server.ts';
import { sql } from 'kysely';
import { openPostgresStores, openStores } from '../../src/store/open.ts';
import { dropTestStore, storeToml, testStore, TEST_PG } from '../helpers/backend.ts';

/**
 * DESIGN.md durability: a 250 after DATA means the message is on disk. Ten clients
 * send 500 messages; the server is killed with SIGKILL in the middle; after a
 * restart every message that got 250 is present exactly once, with its blob intact.
 */
// On SQLite: both storage paths. With POSTERN_TEST_PG: PostgreSQL, every message in chunks.
const MODES = TEST_PG ? (['postgres'] as const) : (['inline', 'files'] as const);
const LABEL = { inline: 'messages in the database', files: 'messages as blob files', postgres: 'PostgreSQL, messages in chunks' };

for (const mode of MODES) {
  test(`kill -9 during 10 concurrent senders (${LABEL[mode]}): every acknowledged message is present exactly once`, { timeout: 180_000 }, async () => {
    const dir = tempDir('postern-kill9-');
    const pg = mode === 'postgres' ? testStore() : undefined;
    // store.inline_max_size = 0 forces the large-message path: files (fsync file,
    // rename, fsync directory) on SQLite, chunk rows on PostgreSQL.
    const store = mode === 'inline' ? '' : storeToml(pg, 'inline_max_size = 0\n');
    const cfg = writeConfig(dir, `hostname = "mx.example.test"\ndata_dir = "${dir}/data"\ndomains = ["example.test"]\n${store}[listen]\nsmtp = "127.0.0.1:0"\n[log]\nlevel = "warn"\n`);
    for (let i = 1; i <= 5; i++) assert.equal((await postern(['user', 'add', `u${i}@example.test`, '--no-password', '--config', cfg])).status, 0);
    const srv = await startChildServer(cfg);
    const smtpPort = port(srv.endpoints.smtp!);
    const acked = new Set<string>();
    let sent = 0;
    const total = 500;
    let killed = false;
    const sender = async (lane: number) => {
      let c: SmtpTestClient | null = null;
      for (let i = 0; i < total / 10; i++) {
        const id = `<k9-${lane}-${i}@client.test>`;
        try {
          if (!c) {
            c = await SmtpTestClient.connect({ port: smtpPort, timeoutMs: 5000 });
            await c.command('EHLO client.test');
          }
          const body = `From: a@client.test\r\nTo: u${(i % 5) + 1}@example.test\r\nSubject: k9 ${lane} ${i}\r\nMessage-ID: ${id}\r\n\r\n${'payload line\r\n'.repeat(40)}`;
          const r = await c.sendMail({ from: 'a@client.test', to: [`u${(i % 5) + 1}@example.test`], message: body });
          sent++;
          if (r.data?.code === 250) acked.add(id);
        } catch {
          c = null;
          if (killed) return;
        }
        if (!killed && acked.size >= 200) {
          killed = true;
          srv.child.kill('SIGKILL');
        }
      }
      c?.destroy();
    };
    await Promise.all(Array.from({ length: 10 }, (_, lane) => sender(lane)));
    if (!killed) srv.child.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(acked.size >= 200, `at least 200 acknowledged before the kill (got ${acked.size}, sent ${sent})`);

    // Restart: the server must come up on the same data, then check the store.
    const again = await startChildServer(cfg);
    again.child.kill('SIGTERM');
    await new Promise((r) => again.child.once('exit', r));
    const stores = pg ? await openPostgresStores({ url: pg.url, schema: pg.schema, poolSize: 2 }) : await openStores(`${dir}/data`);
    try {
      const rows = await stores.data.db.selectFrom('messages').select(['message_id', 'blob_hash', 'size']).execute();
      const seen = new Map<string, number>();
      for (const r of rows) seen.set(r.message_id ?? '', (seen.get(r.message_id ?? '') ?? 0) + 1);
      for (const id of acked) assert.equal(seen.get(id), 1, `${id} present exactly once`);
      if (!pg) {
        // The search index is filled after the 250; the restart re-indexed what the kill interrupted.
        assert.equal((await stores.data.db.selectFrom('search_pending').selectAll().execute()).length, 0, 'no message left unindexed');
        const fts = await sql<{ n: number }>`SELECT count(*) AS n FROM search_text`.execute(stores.data.db);
        const blobs = await stores.data.db.selectFrom('blobs').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
        assert.equal(Number(fts.rows[0]!.n), Number(blobs.n), 'every stored message is in the search index');
      }
      const inline = await stores.data.db.selectFrom('blobs').select('hash').where('data', 'is not', null).execute();
      assert.equal(inline.length > 0, mode === 'inline', `messages stored ${mode === 'inline' ? 'in the database' : 'as files'}`);
      for (const r of rows) {
        const bytes = await stores.blobs.readAll(r.blob_hash);
        assert.equal(bytes.length, Number(r.size), 'message bytes intact');
        if (mode === 'files') assert.equal(fs.statSync(stores.blobs.pathOf(r.blob_hash)).size, Number(r.size));
      }
    } finally {
      await stores.close();
      await dropTestStore(pg);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}
