import pg from 'pg';
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely';
import type { DatabaseIntrospector, SchemaMetadata, TableMetadata } from 'kysely';
import type { Database } from '../schema.ts';
import { StartupError } from '../../core/errors.ts';
import { migrationProvider } from '../migrations.ts';

export interface PostgresOptions {
  /** postgres://…; undefined: libpq's PG* environment variables. */
  url?: string;
  /** Schema holding the tables (created if missing); "public" by default. */
  schema: string;
  poolSize: number;
}

/**
 * BIGINT (OID 20) columns hold UIDs, modseqs, sizes and millisecond timestamps,
 * all far below 2^53: read them as numbers, like SQLite does, instead of pg's
 * default strings. Per pool, not pg's global type registry.
 */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format);
  },
};

/**
 * Kysely's migrator asks whether its tables exist through the dialect's
 * introspector, whose table query calls pg_get_serial_sequence() on every column
 * of every schema in the database: when another schema is dropped meanwhile (a
 * test, or another application sharing the cluster) the query fails with
 * `schema "…" does not exist` and the migration aborts. This introspector looks
 * at our schema only, and answers just what the migrator reads (names).
 */
function migrationDb(pool: pg.Pool, schema: string): Kysely<Database> {
  const dialect = new PostgresDialect({ pool });
  return new Kysely<Database>({
    dialect: {
      createAdapter: () => dialect.createAdapter(),
      createDriver: () => dialect.createDriver(),
      createQueryCompiler: () => dialect.createQueryCompiler(),
      createIntrospector: (db): DatabaseIntrospector => ({
        async getSchemas(): Promise<SchemaMetadata[]> {
          const { rows } = await sql<{ name: string }>`SELECT nspname AS name FROM pg_catalog.pg_namespace WHERE nspname = ${schema}`.execute(db);
          return rows;
        },
        async getTables(): Promise<TableMetadata[]> {
          const { rows } = await sql<{ name: string; type: string }>`SELECT table_name AS name, table_type AS type FROM information_schema.tables WHERE table_schema = ${schema}`.execute(db);
          return rows.map((r) => ({ name: r.name, schema, isView: r.type === 'VIEW', columns: [] }));
        },
        async getMetadata() {
          return { tables: await this.getTables() };
        },
      }),
    },
  });
}

/**
 * Opens the PostgreSQL backend: a connection pool whose sessions use `schema`, and
 * the same versioned migrations as SQLite, run under an advisory lock so nodes
 * starting together do not race: one migrates, the others wait and find the
 * schema current.
 */
export async function openPostgres(opts: PostgresOptions): Promise<{ db: Kysely<Database>; pool: pg.Pool; clientConfig: pg.ClientConfig }> {
  const clientConfig: pg.ClientConfig = {
    connectionString: opts.url,
    types,
    // search_path for every session: the schema first, so unqualified names resolve there.
    options: `-c search_path=${opts.schema}`,
  };
  const pool = new pg.Pool({ ...clientConfig, max: opts.poolSize });
  pool.on('error', () => undefined); // an idle client's connection dropped: the pool replaces it
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  // Nodes starting together on a new database would race in CREATE SCHEMA and in
  // creating kysely's own migration tables (PostgreSQL reports duplicate keys for
  // concurrent CREATE … IF NOT EXISTS): one session-level advisory lock per schema
  // makes them take turns; the second finds everything current.
  const lockClient = await pool.connect().catch(async (err: Error) => {
    await db.destroy();
    throw new StartupError(`cannot connect to PostgreSQL (config key store.url${opts.url ? '' : ', or the PG* environment variables'}): ${err.message}`);
  });
  try {
    await lockClient.query('SELECT pg_advisory_lock(hashtext($1))', [`postern-migrate:${opts.schema}`]);
    if (opts.schema !== 'public') await sql`CREATE SCHEMA IF NOT EXISTS ${sql.id(opts.schema)}`.execute(db);
    const migrator = new Migrator({ db: migrationDb(pool, opts.schema), provider: migrationProvider, migrationTableSchema: opts.schema });
    const { error, results } = await migrator.migrateToLatest();
    if (error) {
      const failed = results?.find((r) => r.status === 'Error');
      throw new Error(`database migration ${failed?.migrationName ?? ''} failed on PostgreSQL (schema ${opts.schema}): ${(error as Error).message}`);
    }
  } catch (err) {
    lockClient.release(true);
    await db.destroy();
    throw err;
  }
  await lockClient.query('SELECT pg_advisory_unlock(hashtext($1))', [`postern-migrate:${opts.schema}`]);
  lockClient.release();
  return { db, pool, clientConfig };
}
