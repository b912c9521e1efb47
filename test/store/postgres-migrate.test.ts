import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import pg from 'pg';
import { openPostgres } from '../../src/store/postgres/open.ts';
import { PG_URL, noPg } from '../helpers/backend.ts';

// Regression: kysely's own introspection looked at every schema in the database
// and failed with `schema "t_…" does not exist` when another schema was dropped
// during a migration (a CI flake: test servers drop their schemas as others start).
test('migrations on PostgreSQL survive other schemas being dropped meanwhile', { skip: noPg, timeout: 120_000 }, async () => {
  const admin = new pg.Client({ connectionString: PG_URL! });
  await admin.connect();
  const mine: string[] = [];
  try {
    for (let round = 0; round < 4; round++) {
      // Other tenants: schemas with serial columns, dropped one by one while we migrate.
      const others = Array.from({ length: 12 }, () => `x_${crypto.randomBytes(5).toString('hex')}`);
      for (const s of others) await admin.query(`CREATE SCHEMA ${s}; CREATE TABLE ${s}.a (id serial PRIMARY KEY, b text, c text, d text)`);
      let dropping = true;
      const dropper = (async () => {
        for (const s of others) {
          if (!dropping) break;
          await admin.query(`DROP SCHEMA ${s} CASCADE`);
        }
      })();
      const opened = await Promise.allSettled(
        [0, 1, 2].map(async () => {
          const schema = `t_${crypto.randomBytes(6).toString('hex')}`;
          mine.push(schema);
          const { db } = await openPostgres({ url: PG_URL!, schema, poolSize: 2 });
          await db.destroy();
        }),
      );
      dropping = false;
      await dropper;
      for (const s of others) await admin.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
      for (const r of opened) if (r.status === 'rejected') throw r.reason;
    }
  } finally {
    for (const s of mine) await admin.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
    await admin.end();
  }
});
