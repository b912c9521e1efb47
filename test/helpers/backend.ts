import crypto from 'node:crypto';
import pg from 'pg';

/**
 * The store backend the suite runs on: SQLite by default; PostgreSQL when
 * POSTERN_TEST_PG=postgres://… is set (`.ci/run` runs the suite both ways). Each
 * test server gets its own fresh schema in that database.
 */
export const TEST_PG: string | null = process.env.POSTERN_TEST_PG || null;

export interface TestStore {
  backend: 'postgres';
  url: string;
  schema: string;
  pool_size: number;
}

/** A fresh PostgreSQL store for one test server, or undefined on SQLite. */
export function testStore(): TestStore | undefined {
  if (!TEST_PG) return undefined;
  return { backend: 'postgres', url: TEST_PG, schema: `t_${crypto.randomBytes(6).toString('hex')}`, pool_size: 4 };
}

/** The `[store]` TOML section for a test config file ('' on SQLite). */
export function storeToml(store: TestStore | undefined, extra = ''): string {
  if (!store) return extra ? `[store]\n${extra}` : '';
  return `[store]\nbackend = "postgres"\nurl = "${store.url}"\nschema = "${store.schema}"\npool_size = ${store.pool_size}\n${extra}`;
}

export async function dropTestStore(store: TestStore | undefined): Promise<void> {
  if (!store) return;
  const c = new pg.Client({ connectionString: store.url });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${store.schema} CASCADE`);
  } finally {
    await c.end();
  }
}
