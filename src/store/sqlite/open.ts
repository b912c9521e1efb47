import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { CompiledQuery, Kysely, Migrator, SqliteDialect, SqliteDriver, type DatabaseConnection, type Driver } from 'kysely';
import type { Database } from '../schema.ts';
import { createSqliteSearchTable, migrationProvider } from '../migrations.ts';

/**
 * Transactions start with BEGIN IMMEDIATE: a deferred transaction that reads and
 * then writes cannot wait for another process's write lock (SQLite returns BUSY at
 * once instead of retrying, because its snapshot would be stale), so concurrent
 * `postern` commands failed with "database is locked". IMMEDIATE takes the write
 * lock up front, where busy_timeout applies.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  constructor(private readonly cfg: ConstructorParameters<typeof SqliteDialect>[0]) {
    super(cfg);
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.cfg);
  }
}

/**
 * kysely's SQLite driver prepares every query afresh; preparing costs more than
 * running the small lookups of the delivery path (domain, account, alias per RCPT).
 * This keeps the most recent statements by SQL text. A statement still being
 * iterated (`busy`) is not shared: a fresh one is prepared for that call.
 */
const STATEMENT_CACHE = 256;
function cachingDatabase(raw: BetterSqlite3.Database): { prepare(sql: string): BetterSqlite3.Statement; close(): void } {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    prepare(sql: string) {
      const hit = cache.get(sql);
      if (hit && !hit.busy) {
        // Re-insert: Map order is the LRU order.
        cache.delete(sql);
        cache.set(sql, hit);
        return hit;
      }
      const stmt = raw.prepare(sql);
      if (!hit) {
        cache.set(sql, stmt);
        if (cache.size > STATEMENT_CACHE) cache.delete(cache.keys().next().value as string);
      }
      return stmt;
    },
    close: () => raw.close(),
  };
}

/**
 * Opens (creating if needed) the embedded SQLite database in WAL mode with
 * synchronous=FULL: a COMMIT returns only after the WAL is fsynced, so a row we
 * acknowledged survives a crash or power loss. Several processes (the server and
 * the `postern` CLI) may open it at once; busy_timeout makes them wait, not fail.
 */
export async function openSqlite(dataDir: string): Promise<{ db: Kysely<Database>; raw: BetterSqlite3.Database }> {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o750 });
  const raw = new BetterSqlite3(path.join(dataDir, 'postern.db'));
  // busy_timeout first: switching to WAL takes a lock another process may hold.
  raw.pragma('busy_timeout = 10000');
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = FULL');
  raw.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({ dialect: new ImmediateSqliteDialect({ database: cachingDatabase(raw) }) });
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    throw new Error(`database migration ${failed?.migrationName ?? ''} failed in ${dataDir}/postern.db: ${(error as Error).message}`);
  }
  await createSqliteSearchTable(db as unknown as Kysely<unknown>);
  return { db, raw };
}
