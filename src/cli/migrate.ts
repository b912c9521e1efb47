import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { sql, type Kysely } from 'kysely';
import { openPostgresStores, openStores, type Stores } from '../store/open.ts';
import type { Database } from '../store/schema.ts';
import { CHUNK_SIZE } from '../store/blob-chunks.ts';
import { CliError } from './io.ts';

/**
 * `postern migrate --from sqlite:DATA_DIR --to postgres://…`: copies a single-node
 * installation into PostgreSQL with every id, UID, modseq and flag intact, so IMAP
 * clients keep their caches (UIDVALIDITY and UIDs unchanged). Tables go in foreign-key
 * order, in keyset-paged batches (bounded memory at any size); message files become
 * blob_chunks rows. Ends with a verification of row counts and message bytes.
 */

type Table = keyof Database;
/** Copy order (parents first) and the key to page by. */
const TABLES: Array<{ table: Table; key: string; batch: number }> = [
  { table: 'domains', key: 'name', batch: 500 },
  { table: 'accounts', key: 'id', batch: 500 },
  { table: 'aliases', key: 'id', batch: 500 },
  { table: 'mailboxes', key: 'id', batch: 500 },
  { table: 'blobs', key: 'hash', batch: 100 }, // up to 64 KiB each inline
  { table: 'messages', key: 'id', batch: 500 },
  { table: 'changes', key: 'id', batch: 1000 },
  { table: 'queue', key: 'id', batch: 500 },
  { table: 'search_pending', key: 'hash', batch: 1000 },
  // Keyed by (kind, key): one page, so paging by key alone cannot skip a row.
  { table: 'policy_state', key: 'key', batch: 1_000_000 },
];
const SERIAL_TABLES: Table[] = ['accounts', 'aliases', 'mailboxes', 'messages', 'changes', 'queue'];

export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('copy a single-node installation (SQLite + files) into PostgreSQL, ids and UIDs intact')
    .requiredOption('--from <source>', 'the installation to copy: sqlite:DATA_DIR')
    .requiredOption('--to <url>', 'the PostgreSQL database: postgres://user:password@host:5432/db')
    .option('--schema <name>', 'schema in that database (created; must not hold an installation yet)', 'public')
    .addHelpText(
      'after',
      `
Stop the server first: mail arriving during the copy is not included (or run it again
into a fresh schema). Then set [store] backend = "postgres" and url/schema in the
config of every node and start them. See docs/scaling.md.

Example:
  postern migrate --from sqlite:/var/lib/postern --to postgres://postern:pw@db/postern`,
    )
    .action(async (opts: { from: string; to: string; schema: string }) => {
      const code = await migrate(opts.from, opts.to, opts.schema);
      process.exitCode = code;
    });
}

async function migrate(from: string, to: string, schema: string): Promise<number> {
  const m = /^sqlite:(.+)$/.exec(from);
  if (!m) throw new CliError(`--from must be sqlite:DATA_DIR, got "${from}"`);
  const dir = path.resolve(m[1]!);
  if (!fs.existsSync(path.join(dir, 'postern.db'))) throw new CliError(`no Postern database at ${dir}/postern.db (--from sqlite:DATA_DIR names the data_dir)`);
  if (!/^postgres(ql)?:\/\//.test(to)) throw new CliError(`--to must be a postgres:// URL, got "${to}"`);
  const src = await openStores(dir);
  let dst: Stores | null = null;
  try {
    dst = await openPostgresStores({ url: to, schema, poolSize: 4 }).catch((err: Error) => {
      throw new CliError(`cannot open the target: ${err.message}`);
    });
    for (const t of ['accounts', 'messages'] as const) {
      const n = await count(dst.data.db, t);
      if (n > 0) throw new CliError(`the target schema "${schema}" already holds ${n} ${t}: migrate into an empty database or a new --schema`);
    }
    const progress = new Progress();
    for (const { table, key, batch } of TABLES) await copyTable(src.data.db, dst.data.db, table, key, batch, progress);
    await copyFiles(src, dst, progress);
    for (const t of SERIAL_TABLES) {
      // Later inserts continue after the copied ids.
      await sql`SELECT setval(pg_get_serial_sequence(${`${schema}.${t}`}, 'id'), GREATEST((SELECT max(id) FROM ${sql.table(t)}), 1), (SELECT max(id) FROM ${sql.table(t)}) IS NOT NULL)`.execute(dst.data.db);
    }
    return await verify(src, dst);
  } finally {
    await dst?.close();
    await src.close();
  }
}

async function count(db: Kysely<Database>, table: Table): Promise<number> {
  const r = await db.selectFrom(table).select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
  return Number(r.n);
}

async function copyTable(src: Kysely<Database>, dst: Kysely<Database>, table: Table, key: string, batch: number, progress: Progress): Promise<void> {
  const total = await count(src, table);
  let done = 0;
  let after: unknown = null;
  progress.update(table, 0, total);
  for (;;) {
    // Keyset paging: each page starts after the last key, so a big table costs no OFFSET scans.
    let q = src.selectFrom(table).selectAll().orderBy(sql.ref(key)).limit(batch);
    if (after !== null) q = q.where(sql.ref(key), '>', after);
    const rows = (await q.execute()) as Array<Record<string, unknown>>;
    if (!rows.length) break;
    await dst.transaction().execute(async (trx) => {
      // Rows come from the same schema on the other engine: same columns.
      await trx.insertInto(table).values(rows as never).execute();
    });
    done += rows.length;
    after = rows[rows.length - 1]![key];
    progress.update(table, done, total);
  }
  progress.done(table, done);
}

/** Messages stored as files on SQLite become blob_chunks rows, streamed chunk by chunk. */
async function copyFiles(src: Stores, dst: Stores, progress: Progress): Promise<void> {
  const files = await src.data.db.selectFrom('blobs').select(['hash', 'size']).where('data', 'is', null).orderBy('hash').execute();
  let done = 0;
  progress.update('message files', 0, files.length);
  for (const f of files) {
    const file = src.blobs.pathOf(f.hash);
    if (!fs.existsSync(file)) throw new CliError(`message file ${file} is missing (blob ${f.hash}); restore it from a backup, or it will be missing on PostgreSQL too`);
    let seq = 0;
    let pending: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of fs.createReadStream(file, { highWaterMark: CHUNK_SIZE })) {
      pending.push(chunk as Buffer);
      bytes += (chunk as Buffer).length;
      while (bytes >= CHUNK_SIZE) {
        const all = Buffer.concat(pending);
        await dst.data.putChunk(f.hash, seq++, all.subarray(0, CHUNK_SIZE));
        pending = [all.subarray(CHUNK_SIZE)];
        bytes -= CHUNK_SIZE;
      }
    }
    if (bytes > 0 || seq === 0) await dst.data.putChunk(f.hash, seq, Buffer.concat(pending));
    progress.update('message files', ++done, files.length);
  }
  progress.done('message files', done);
}

async function verify(src: Stores, dst: Stores): Promise<number> {
  const rows: Array<[string, number, number]> = [];
  for (const { table } of TABLES) rows.push([table, await count(src.data.db, table), await count(dst.data.db, table)]);
  const srcBytes = Number((await src.data.db.selectFrom('blobs').select(sql<number>`coalesce(sum(size), 0)`.as('n')).executeTakeFirstOrThrow()).n);
  const inlineBytes = Number((await dst.data.db.selectFrom('blobs').select(sql<number>`coalesce(sum(length(data)), 0)`.as('n')).executeTakeFirstOrThrow()).n);
  const chunkBytes = Number((await dst.data.db.selectFrom('blob_chunks').select(sql<number>`coalesce(sum(length(data)), 0)`.as('n')).where('hash', 'not like', 'tmp:%').executeTakeFirstOrThrow()).n);
  rows.push(['message bytes', srcBytes, inlineBytes + chunkBytes]);
  const w = Math.max(...rows.map((r) => r[0].length));
  const out = [`${'table'.padEnd(w)}  ${'sqlite'.padStart(12)}  ${'postgres'.padStart(12)}`];
  let bad = 0;
  for (const [name, a, b] of rows) {
    if (a !== b) bad++;
    out.push(`${name.padEnd(w)}  ${String(a).padStart(12)}  ${String(b).padStart(12)}${a === b ? '' : '  MISMATCH'}`);
  }
  console.log(out.join('\n'));
  console.log(bad ? `verification FAILED: ${bad} mismatch(es)` : 'verification ok: every row and every message byte is in PostgreSQL');
  return bad ? 1 : 0;
}

/** A progress line on stderr: redrawn on a terminal, one line per table otherwise. */
class Progress {
  private tty = process.stderr.isTTY === true;
  private last = 0;
  update(what: string, done: number, total: number): void {
    if (!this.tty) return;
    const now = Date.now();
    if (done !== total && now - this.last < 100) return;
    this.last = now;
    const pct = total ? Math.floor((done / total) * 100) : 100;
    const bar = '#'.repeat(Math.floor(pct / 4)).padEnd(25, '.');
    process.stderr.write(`\r${what.padEnd(14)} [${bar}] ${done}/${total} ${pct}%   `);
  }
  done(what: string, n: number): void {
    if (this.tty) process.stderr.write('\n');
    else process.stderr.write(`${what}: ${n} copied\n`);
  }
}
