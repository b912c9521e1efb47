import crypto from 'node:crypto';
import pg from 'pg';

/**
 * The store backend the suite runs on: SQLite by default; PostgreSQL when
 * POSTERN_TEST_PG=postgres://… is set (`.ci/run` runs the suite both ways). Each
 * test server gets its own fresh schema in that database.
 */
export const TEST_PG: string | null = process.env.POSTERN_TEST_PG || null;

/**
 * A PostgreSQL for the tests that need one whatever the suite's backend (two-node
 * tests, the PostgreSQL side of the conformance suite): POSTERN_TEST_PG, else
 * POSTERN_TEST_PG_URL (set by `.ci/run` for its SQLite pass too).
 */
export const PG_URL: string | null = TEST_PG || process.env.POSTERN_TEST_PG_URL || null;

/** Why a PostgreSQL-only test cannot run here, or false. Never skips in CI: it fails instead. */
export const noPg: string | false = PG_URL || process.env.CI ? false : 'needs PostgreSQL: set POSTERN_TEST_PG_URL=postgres://… or POSTERN_TEST_PG (.ci/run does)';

export interface TestStore {
  backend: 'postgres';
  url: string;
  schema: string;
  pool_size: number;
}

/** A fresh PostgreSQL store for one test server, or undefined when the suite runs on SQLite. */
export function testStore(): TestStore | undefined {
  return TEST_PG ? pgStore() : undefined;
}

/** A fresh schema in the test PostgreSQL (for PostgreSQL-only tests). */
export function pgStore(): TestStore {
  if (!PG_URL) throw new Error('no PostgreSQL for the tests: set POSTERN_TEST_PG_URL (CI=true never skips these tests)');
  return { backend: 'postgres', url: PG_URL, schema: `t_${crypto.randomBytes(6).toString('hex')}`, pool_size: 4 };
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
