import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { sql, type Kysely } from 'kysely';
import type BetterSqlite3 from 'better-sqlite3';
import { openPostgresStores, type Stores } from '../store/open.ts';
import { openSqlite } from '../store/sqlite/open.ts';
import type { Database } from '../store/schema.ts';
import { CHUNK_SIZE } from '../store/blob-chunks.ts';
import { CliError } from './io.ts';

/**
 * `postern migrate --from sqlite:DATA_DIR --to postgres://…`: copies a single-node
 * installation into PostgreSQL with every id, UID, modseq and flag intact, so IMAP
 * clients keep their caches (UIDVALIDITY and UIDs unchanged).
 *
 * - The source is read in ONE SQLite read transaction: a consistent snapshot, even
 *   while the server keeps delivering (WAL lets it write meanwhile). Without it a
 *   message delivered between copying `mailboxes` and `messages` would arrive with a
 *   UID at or above the copied uidnext, and the next delivery on PostgreSQL would
 *   collide. Mail committed after the snapshot is simply not in the copy.
 * - Tables go parents first, keyset-paged (no OFFSET scans), one target transaction
 *   per batch, so memory stays bounded at any size; blob pages are also bounded in
 *   bytes (inline_max_size has no upper limit).
 * - Message files become blob_chunks rows of exactly CHUNK_SIZE bytes (the last one
 *   shorter), read one chunk at a time and checked against their SHA-256 name.
 * - Serial sequences are moved past the copied ids; a verification table ends it.
 */

type Table = keyof Database;

interface TableSpec {
  table: Table;
  /** Primary key columns: the keyset to page by. */
  key: string[];
  /** Rows per INSERT (columns × batch stays far below PostgreSQL's 65535 parameters). */
  batch: number;
}

/** Copy order: parents first. */
const TABLES: TableSpec[] = [
  { table: 'domains', key: ['name'], batch: 500 },
  { table: 'accounts', key: ['id'], batch: 500 },
  { table: 'aliases', key: ['id'], batch: 500 },
  { table: 'domain_admins', key: ['domain', 'account_id'], batch: 1000 },
  { table: 'mailboxes', key: ['id'], batch: 500 },
  { table: 'blobs', key: ['hash'], batch: 500 },
  { table: 'messages', key: ['id'], batch: 500 },
  { table: 'changes', key: ['id'], batch: 1000 },
  { table: 'queue', key: ['id'], batch: 500 },
  { table: 'search_pending', key: ['hash'], batch: 1000 },
  { table: 'policy_state', key: ['kind', 'key'], batch: 1000 },
  { table: 'subscriptions', key: ['account_id', 'name'], batch: 1000 },
  { table: 'training_signals', key: ['id'], batch: 1000 },
  { table: 'access_rules', key: ['id'], batch: 1000 },
  { table: 'bayes_tokens', key: ['scope', 'token'], batch: 1000 },
  { table: 'bayes_totals', key: ['scope'], batch: 1000 },
  { table: 'bayes_seen', key: ['scope', 'blob_hash'], batch: 1000 },
  { table: 'bayes_cursor', key: ['name'], batch: 1000 },
];
const SERIAL_TABLES: Table[] = ['accounts', 'aliases', 'mailboxes', 'messages', 'changes', 'queue', 'training_signals', 'access_rules'];
/** At most this many inline message bytes in one INSERT of blobs. */
const MAX_BATCH_BYTES = 16 * 1024 * 1024;
/** Same rule as `[store] schema` in the config. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('copy a single-node installation (SQLite + message files) into PostgreSQL, with ids, UIDs, modseqs and flags intact')
    .requiredOption('--from <source>', 'the installation to copy: sqlite:DATA_DIR (the data_dir holding postern.db and blobs/)')
    .requiredOption('--to <url>', 'the PostgreSQL database: postgres://user:password@host:5432/db')
    .option('--schema <name>', 'schema in that database (created if missing; must not hold an installation yet)', 'public')
    .addHelpText(
      'after',
      `
The source is only read, in one consistent snapshot: it may keep running, but mail
that arrives during the copy is not included. Stop the server first (or run it again
into a fresh --schema). Progress goes to stderr; a verification table (rows per table
and message bytes, SQLite vs PostgreSQL) to stdout; exit status 1 on any mismatch.
Afterwards set [store] backend = "postgres", url and schema in the config of every
node and start them. See docs/scaling.md.

Examples:
  postern migrate --from sqlite:/var/lib/postern --to postgres://postern:pw@db.example.org/postern
  postern migrate --from sqlite:./data --to postgres://postern@127.0.0.1:5432/mail --schema postern`,
    )
    .action(async (opts: { from: string; to: string; schema: string }) => {
      process.exitCode = await migrate(opts.from, opts.to, opts.schema);
    });
}

async function migrate(from: string, to: string, schema: string): Promise<number> {
  const m = /^sqlite:(.+)$/.exec(from);
  if (!m) throw new CliError(`--from must be sqlite:DATA_DIR, got "${from}"`);
  if (!/^postgres(ql)?:\/\//.test(to)) throw new CliError(`--to must be a postgres:// URL, got "${to}"`);
  if (!SCHEMA_NAME.test(schema)) throw new CliError(`--schema must be a lower-case SQL identifier (e.g. "postern"), got "${schema}"`);
  const dir = path.resolve(m[1]!);
  if (!fs.existsSync(path.join(dir, 'postern.db'))) throw new CliError(`no Postern database at ${dir}/postern.db (--from sqlite:DATA_DIR names the data_dir)`);

  // No LISTEN session: nothing here waits for other nodes' changes.
  const dst = await openPostgresStores({ url: to, schema, poolSize: 4 }, undefined, undefined, false).catch((err: Error) => {
    throw new CliError(`cannot open the target: ${err.message}`);
  });
  let src: Source | null = null;
  try {
    await refuseNonEmpty(dst.data.db, schema);
    src = await openSource(dir);
    const progress = new Progress();
    const hashes = new HashCheck();
    let step = '';
    try {
      for (const spec of TABLES) {
        step = `table ${spec.table}`;
        await copyTable(src.db, dst.data.db, spec, progress, spec.table === 'blobs' ? hashes : null);
      }
      step = 'message files';
      await copyFiles(src, dst, progress, hashes);
      step = 'sequences';
      for (const t of SERIAL_TABLES) {
        // Later inserts continue after the copied ids (an empty table starts at 1).
        await sql`SELECT setval(pg_get_serial_sequence(${`${schema}.${t}`}, 'id'), GREATEST((SELECT max(id) FROM ${sql.table(t)}), 1), (SELECT max(id) FROM ${sql.table(t)}) IS NOT NULL)`.execute(dst.data.db);
      }
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw new CliError(
        `copying ${step} failed: ${(err as Error).message}\n` +
          `The schema "${schema}" now holds a partial copy: drop it (DROP SCHEMA ${schema} CASCADE) or use a new --schema, and run postern migrate again.`,
      );
    }
    hashes.report();
    return await verify(src, dst.data.db);
  } finally {
    await src?.close();
    await dst.close();
  }
}

/** A target that already has data would end up with a mix: only an empty schema is accepted. */
async function refuseNonEmpty(db: Kysely<Database>, schema: string): Promise<void> {
  const order: Table[] = ['accounts', 'messages', ...TABLES.map((t) => t.table).filter((t) => t !== 'accounts' && t !== 'messages'), 'blob_chunks'];
  for (const t of order) {
    let q = db.selectFrom(t).select(sql<number>`count(*)`.as('n'));
    if (t === 'blob_chunks') q = q.where(sql.ref('hash'), 'not like', 'tmp:%');
    const n = Number((await q.executeTakeFirstOrThrow()).n);
    if (n > 0) {
      throw new CliError(
        `the target schema "${schema}" already holds ${n} ${t}: postern migrate copies into an empty schema only. ` +
          `Use a new --schema, or drop this one (DROP SCHEMA ${schema} CASCADE) if it is a failed earlier attempt.`,
      );
    }
  }
}

interface Source {
  db: Kysely<Database>;
  dir: string;
  close(): Promise<void>;
}

/**
 * The SQLite side, read in one transaction. Not openStores(): its BlobStore empties
 * data_dir/tmp, where a running server is writing the messages it is receiving.
 * The first SELECT pins the snapshot; a deferred BEGIN takes no write lock, so the
 * server keeps delivering (into the WAL, invisible to us). Like every postern
 * command, opening it applies pending schema migrations (none on a current install).
 */
async function openSource(dir: string): Promise<Source> {
  let opened: { db: Kysely<Database>; raw: BetterSqlite3.Database };
  try {
    opened = await openSqlite(dir);
  } catch (err) {
    throw new CliError(`cannot open the source ${dir}/postern.db: ${(err as Error).message}`);
  }
  const { db, raw } = opened;
  raw.exec('BEGIN DEFERRED');
  raw.prepare('SELECT count(*) FROM messages').get();
  return {
    db,
    dir,
    async close() {
      if (raw.inTransaction) raw.exec('ROLLBACK'); // read-only: nothing to commit
      await db.destroy();
    },
  };
}

/** Where BlobStore keeps a message file (blob-store.ts pathOf). */
function blobFile(dir: string, hash: string): string {
  return path.join(dir, 'blobs', hash.slice(0, 2), hash);
}

async function count(db: Kysely<Database>, table: Table): Promise<number> {
  const r = await db.selectFrom(table).select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
  return Number(r.n);
}

type Row = Record<string, unknown>;

async function copyTable(src: Kysely<Database>, dst: Kysely<Database>, spec: TableSpec, progress: Progress, hashes: HashCheck | null): Promise<void> {
  const { table, key, batch } = spec;
  const keyRefs = sql.join(key.map((k) => sql.ref(k)));
  const page = () => {
    let q = src.selectFrom(table).selectAll();
    for (const k of key) q = q.orderBy(sql.ref(k));
    return q;
  };
  // Row-value comparison: (kind, key) > (?, ?) pages a composite key without skipping rows.
  const after = (q: ReturnType<typeof page>, last: unknown[] | null) => (last ? q.where(sql<boolean>`(${keyRefs}) > (${sql.join(last)})`) : q);
  const total = await count(src, table);
  let done = 0;
  let last: unknown[] | null = null;
  progress.update(table, 0, total);
  for (;;) {
    let rows: Row[];
    if (table === 'blobs') {
      // Weigh the next page first: inline messages can be large (inline_max_size is unbounded).
      let wq = src.selectFrom('blobs').select(['hash', sql<number>`coalesce(length(data), 0) + length(meta)`.as('w')]).orderBy('hash').limit(batch);
      if (last) wq = wq.where('hash', '>', last[0] as string);
      const weights = await wq.execute();
      if (!weights.length) break;
      let n = 0;
      for (let bytes = 0; n < weights.length && (n === 0 || bytes + weights[n]!.w <= MAX_BATCH_BYTES); n++) bytes += weights[n]!.w;
      rows = (await after(page(), last).where('hash', '<=', weights[n - 1]!.hash).execute()) as Row[];
    } else {
      rows = (await after(page(), last).limit(batch).execute()) as Row[];
    }
    if (!rows.length) break;
    if (hashes) for (const r of rows) if (r.data) hashes.check(r.hash as string, [r.data as Buffer]);
    await dst.transaction().execute(async (trx) => {
      // Same schema on both engines (one set of migrations): the rows go in as they are, ids included.
      await trx.insertInto(table).values(rows as never).execute();
    });
    done += rows.length;
    const end = rows[rows.length - 1]!;
    last = key.map((k) => end[k]);
    progress.update(table, done, total);
  }
  progress.done(table, `${done}/${total} rows`);
}

/** Message files (blobs without inline data) become blob_chunks rows, one chunk in memory at a time. */
async function copyFiles(src: Source, dst: Stores, progress: Progress, hashes: HashCheck): Promise<void> {
  const total = await src.db.selectFrom('blobs').select([sql<number>`count(*)`.as('n'), sql<number>`coalesce(sum(size), 0)`.as('bytes')]).where('data', 'is', null).executeTakeFirstOrThrow();
  const totalFiles = Number(total.n);
  const totalBytes = Number(total.bytes);
  let files = 0;
  let bytes = 0;
  let last = '';
  const show = () => progress.update('message files', bytes, totalBytes, `${files}/${totalFiles} files, ${mb(bytes)}/${mb(totalBytes)}`);
  show();
  for (;;) {
    // Keyset-paged like the tables: the list of files is never all in memory.
    const page = await src.db.selectFrom('blobs').select(['hash', 'size']).where('data', 'is', null).where('hash', '>', last).orderBy('hash').limit(1000).execute();
    if (!page.length) break;
    for (const f of page) {
      const size = Number(f.size);
      const copied = await copyFile(blobFile(src.dir, f.hash), f.hash, dst, hashes);
      if (copied !== size && copied !== -1) process.stderr.write(`postern: message file ${blobFile(src.dir, f.hash)} has ${copied} bytes, its row says ${size}\n`);
      files++;
      bytes += size;
      show();
    }
    last = page[page.length - 1]!.hash;
  }
  progress.done('message files', `${files}/${totalFiles} (${bytes} bytes)`);
}

/** One file into chunks (one target transaction); the bytes copied, or -1 if the file is missing. */
async function copyFile(file: string, hash: string, dst: Stores, hashes: HashCheck): Promise<number> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    // The message is already lost on SQLite; the verification counts it as a mismatch.
    process.stderr.write(`postern: message file ${file} is missing (blob ${hash}); not copied\n`);
    return -1;
  }
  const sha = crypto.createHash('sha256');
  let total = 0;
  try {
    await dst.data.db.transaction().execute(async (trx) => {
      for (let seq = 0; ; seq++) {
        const buf = Buffer.allocUnsafe(CHUNK_SIZE);
        let n = 0;
        while (n < CHUNK_SIZE) {
          const { bytesRead } = await fh.read(buf, n, CHUNK_SIZE - n, total + n);
          if (!bytesRead) break;
          n += bytesRead;
        }
        // The last chunk is the short one; an exact multiple of CHUNK_SIZE ends on a full chunk
        // (what readChunks and ChunkBlobWriter expect); an empty message is one empty chunk.
        if (n === 0 && seq > 0) break;
        const data = buf.subarray(0, n);
        sha.update(data);
        await trx.insertInto('blob_chunks').values({ hash, seq, data, created_at: Date.now() }).execute();
        total += n;
        if (n < CHUNK_SIZE) break;
      }
    });
  } finally {
    await fh.close();
  }
  hashes.finish(hash, sha);
  return total;
}

/** Every message's bytes are hashed on the way: a mismatch means the source copy was already damaged. */
class HashCheck {
  private bad: string[] = [];
  check(hash: string, parts: Buffer[]): void {
    const sha = crypto.createHash('sha256');
    for (const p of parts) sha.update(p);
    this.finish(hash, sha);
  }
  finish(hash: string, sha: crypto.Hash): void {
    if (sha.digest('hex') !== hash) this.bad.push(hash);
  }
  report(): void {
    if (!this.bad.length) return;
    process.stderr.write(`postern: warning: ${this.bad.length} message(s) on the source do not match their SHA-256 (damaged before the copy; copied as they are):\n`);
    for (const h of this.bad.slice(0, 20)) process.stderr.write(`  ${h}\n`);
    if (this.bad.length > 20) process.stderr.write(`  … and ${this.bad.length - 20} more\n`);
  }
}

/**
 * Rows per table on both sides (the source still in its snapshot), plus the message
 * bytes: on PostgreSQL only a message whose inline data or complete chunk sequence
 * (CHUNK_SIZE each but the last) has exactly its size counts.
 */
async function verify(src: Source, dst: Kysely<Database>): Promise<number> {
  const rows: Array<[string, number, number]> = [];
  for (const { table } of TABLES) rows.push([table, await count(src.db, table), await count(dst, table)]);
  const s = await src.db
    .selectFrom('blobs')
    .select([sql<number>`coalesce(sum(size), 0)`.as('bytes'), sql<number>`coalesce(sum(CASE WHEN data IS NULL THEN 1 ELSE 0 END), 0)`.as('files')])
    .executeTakeFirstOrThrow();
  const d = await sql<{ files: number; bytes: number }>`
    WITH k AS (
      SELECT hash, seq, length(data) AS len, max(seq) OVER (PARTITION BY hash) AS top
      FROM blob_chunks WHERE hash NOT LIKE 'tmp:%'
    ), c AS (
      SELECT hash, sum(len) AS len, count(*) = max(top) + 1 AND min(seq) = 0 AND bool_and(seq = top OR len = ${CHUNK_SIZE}) AS ok
      FROM k GROUP BY hash
    )
    SELECT count(*) FILTER (WHERE b.data IS NULL AND c.ok AND c.len = b.size) AS files,
           coalesce(sum(b.size) FILTER (WHERE length(b.data) = b.size OR (b.data IS NULL AND c.ok AND c.len = b.size)), 0) AS bytes
    FROM blobs b LEFT JOIN c ON c.hash = b.hash`.execute(dst);
  const got = d.rows[0]!;
  rows.push(['message files', Number(s.files), Number(got.files)]);
  rows.push(['message bytes', Number(s.bytes), Number(got.bytes)]);

  const w = Math.max(...rows.map((r) => r[0].length));
  const out = [`${'table'.padEnd(w)}  ${'sqlite'.padStart(12)}  ${'postgres'.padStart(12)}`];
  let bad = 0;
  for (const [name, a, b] of rows) {
    if (a !== b) bad++;
    out.push(`${name.padEnd(w)}  ${String(a).padStart(12)}  ${String(b).padStart(12)}${a === b ? '' : '  MISMATCH'}`);
  }
  console.log(out.join('\n'));
  const bytes = Number(s.bytes);
  console.log(
    bad
      ? `verification FAILED: ${bad} mismatch(es); the copy is incomplete (see the messages above). Fix the cause and run postern migrate again into a fresh --schema.`
      : `verification ok: every row and ${bytes} message bytes (${mb(bytes)}) are in PostgreSQL`,
  );
  return bad ? 1 : 0;
}

function mb(n: number): string {
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/**
 * Progress on stderr: a bar redrawn in place on a terminal (name, done/total,
 * percent), otherwise one line per table when it is finished.
 */
class Progress {
  private tty = process.stderr.isTTY === true;
  private last = 0;
  update(what: string, done: number, total: number, detail = `${done}/${total}`): void {
    if (!this.tty) return;
    const now = Date.now();
    if (done !== total && done !== 0 && now - this.last < 100) return;
    this.last = now;
    const pct = total ? Math.floor((done / total) * 100) : 100;
    const bar = '#'.repeat(Math.floor(pct / 4)).padEnd(25, '.');
    process.stderr.write(`\r\x1b[K${what.padEnd(14)} [${bar}] ${detail} ${pct}%`);
  }
  done(what: string, summary: string): void {
    if (this.tty) process.stderr.write('\n');
    else process.stderr.write(`${what}: ${summary}\n`);
  }
}
