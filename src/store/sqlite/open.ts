import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { CompiledQuery, Kysely, Migrator, SqliteDialect, SqliteDriver, type DatabaseConnection, type Driver } from 'kysely';
import type { Database } from '../schema.ts';
import { createSqliteSearchTable, migrationProvider } from '../migrations.ts';
import { WalSync } from './wal-sync.ts';

/** Set by cachingDatabase when a statement that writes was run; read and cleared per connection use. */
interface WriteTracker {
  wrote: boolean;
}

/**
 * Transactions start with BEGIN IMMEDIATE: a deferred transaction that reads and
 * then writes cannot wait for another process's write lock (SQLite returns BUSY at
 * once instead of retrying, because its snapshot would be stale), so concurrent
 * `postern` commands failed with "database is locked". IMMEDIATE takes the write
 * lock up front, where busy_timeout applies.
 */
class ImmediateSqliteDriver extends SqliteDriver {
  constructor(
    cfg: ConstructorParameters<typeof SqliteDriver>[0],
    private readonly group: { tracker: WriteTracker; wal: WalSync } | null,
  ) {
    super(cfg);
  }

  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }

  /**
   * With group commit (see WalSync): a use of the connection that wrote — an
   * autocommit statement or a whole transaction — hands the connection on first
   * and only then waits for the WAL flush, so other queries run meanwhile and
   * concurrent commits share one flush; the caller still hears of success only
   * once its data is on disk.
   */
  override async releaseConnection(): Promise<void> {
    const wrote = this.group?.tracker.wrote ?? false;
    if (this.group) this.group.tracker.wrote = false;
    await super.releaseConnection();
    if (wrote) await this.group!.wal.sync();
  }
}

class ImmediateSqliteDialect extends SqliteDialect {
  constructor(
    private readonly cfg: ConstructorParameters<typeof SqliteDialect>[0],
    private readonly group: { tracker: WriteTracker; wal: WalSync } | null,
  ) {
    super(cfg);
  }
  override createDriver(): Driver {
    return new ImmediateSqliteDriver(this.cfg, this.group);
  }
}

/**
 * kysely's SQLite driver prepares every query afresh; preparing costs more than
 * running the small lookups of the delivery path (domain, account, alias per RCPT).
 * This keeps the most recent statements by SQL text. A statement still being
 * iterated (`busy`) is not shared: a fresh one is prepared for that call.
 */
const STATEMENT_CACHE = 256;
function cachingDatabase(raw: BetterSqlite3.Database, tracker: WriteTracker): { prepare(sql: string): BetterSqlite3.Statement; close(): void } {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    prepare(sql: string) {
      const hit = cache.get(sql);
      if (hit && !hit.busy) {
        // Re-insert: Map order is the LRU order.
        cache.delete(sql);
        cache.set(sql, hit);
        if (!hit.readonly) tracker.wrote = true;
        return hit;
      }
      const stmt = raw.prepare(sql);
      // kysely prepares each statement right before running it.
      if (!stmt.readonly) tracker.wrote = true;
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
 * Opens (creating if needed) the embedded SQLite database in WAL mode, so that a
 * row we acknowledged survives a crash or power loss: with synchronous=FULL a
 * COMMIT returns only after the WAL is fsynced; with `groupCommit` (the server)
 * the connection commits with synchronous=NORMAL and every query that wrote
 * resolves only after a shared, asynchronous flush of the WAL (WalSync) — the
 * same guarantee without blocking the event loop; `groupCommit` is for a caller
 * that also runs the writer thread (writer-thread.ts), which checkpoints the WAL
 * for this connection. Raw statements on `raw` get
 * no such flush: with groupCommit, only the kysely instance may write. Several
 * processes (the server and the `postern` CLI) may open the database at once;
 * busy_timeout makes them wait, not fail.
 */
export async function openSqlite(
  dataDir: string,
  opts: { groupCommit?: boolean } = {},
): Promise<{ db: Kysely<Database>; raw: BetterSqlite3.Database; wal: WalSync | null; reader: SqliteReader | null }> {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o750 });
  const file = path.join(dataDir, 'postern.db');
  const raw = new BetterSqlite3(file);
  // busy_timeout first: switching to WAL takes a lock another process may hold.
  raw.pragma('busy_timeout = 10000');
  raw.pragma('journal_mode = WAL');
  raw.pragma(`synchronous = ${opts.groupCommit ? 'NORMAL' : 'FULL'}`);
  // A checkpoint (pages copied into the database file, then an fsync of it) runs in
  // whichever connection's COMMIT finds the WAL past 1000 pages: on the server's
  // main connection that stalled every session for milliseconds. The server's
  // writer thread checkpoints instead (writer-worker.ts), off the event loop.
  if (opts.groupCommit) raw.pragma('wal_autocheckpoint = 0');
  raw.pragma('foreign_keys = ON');
  const tracker: WriteTracker = { wrote: false };
  const wal = opts.groupCommit ? new WalSync(`${file}-wal`) : null;
  const db = new Kysely<Database>({ dialect: new ImmediateSqliteDialect({ database: cachingDatabase(raw, tracker) }, wal ? { tracker, wal } : null) });
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    throw new Error(`database migration ${failed?.migrationName ?? ''} failed in ${dataDir}/postern.db: ${(error as Error).message}`);
  }
  await createSqliteSearchTable(db as unknown as Kysely<unknown>);
  return { db, raw, wal, reader: opts.groupCommit ? openReader(file) : null };
}

/** Runs one SELECT with positional parameters, synchronously; close() when done. */
export interface SqliteReader {
  all(sql: string, params: readonly unknown[]): unknown[];
  close(): void;
}

/**
 * The server's second, read-only connection for the hot lookups (DataStore's
 * precompiled queries: mailbox rows, message lists and deltas, accounts): run
 * directly, without the query builder's connection hand-off (a few promise jobs
 * and a mutex per query, ~10 % of a logged-in IMAP session's time). A connection of
 * its own, because the main one may be inside another session's transaction: a
 * read there would see uncommitted rows. Each statement reads the latest commit.
 */
function openReader(file: string): SqliteReader {
  const conn = new BetterSqlite3(file, { readonly: true });
  conn.pragma('busy_timeout = 10000');
  // The same statement cache as the main connection's (nothing here writes: the tracker stays unread).
  const statements = cachingDatabase(conn, { wrote: false });
  return {
    all: (sql, params) => statements.prepare(sql).all(...params),
    close: () => statements.close(),
  };
}
