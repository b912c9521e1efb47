import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';
import { SqliteMessageWriter } from './message-writer.ts';
import { SqliteImapWriter, type ExpungeCandidates } from './imap-writer.ts';
import type { NewMessage } from '../data-store.ts';
import type { StoreMode } from '../imap-model.ts';
import type { WriterAnswer as Answer, WriterAnswers as Answers } from './writer-thread.ts';

/**
 * The delivery commit thread: runs group-commit transactions off the main thread,
 * so SMTP sessions keep being served — and the next batch keeps growing — while
 * the disk flushes.
 *
 * Its commits are synchronous=NORMAL followed by an fdatasync of the -wal file
 * before the answer (what WalSync does for the main connection): as durable as
 * FULL, but the database's write lock is released before the flush, not after it.
 * With FULL the main connection's IMAP writes (BEGIN IMMEDIATE) waited behind
 * every delivery's fsync — and SQLite's busy handler waits by sleeping, on the
 * event loop.
 *
 * It also commits IMAP STORE and EXPUNGE (imap-writer.ts), so it is the server's only
 * writer on the hot paths. The messages that arrived together run in one transaction,
 * each in a savepoint (see `turnOpen`), and share one COMMIT and one flush before
 * their answers (group commit).
 *
 * This thread also runs the WAL checkpoints (the main connection has automatic
 * checkpoints off, see openSqlite): a checkpoint copies pages into the database
 * file and fsyncs it, several milliseconds that must not block the event loop.
 */
const file = workerData.file as string;
const db = new BetterSqlite3(file);
db.pragma('busy_timeout = 10000');
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('foreign_keys = ON');
const writer = new SqliteMessageWriter(db, 'NORMAL');
const imap = new SqliteImapWriter(db);
let walFd: number | null = null;
/** Flushes done, sent with every answer (SqliteWriterThread.flushes: tests check no answer comes before one). */
let flushes = 0;

/** Every commit written to the WAL so far (by any connection) is on disk once this returns. */
function flushWal(): void {
  // The -wal file exists after the first commit and keeps its inode while a connection is open.
  walFd ??= fs.openSync(`${file}-wal`, 'r');
  fs.fdatasyncSync(walFd);
  flushes++;
}

/** PASSIVE: never waits for a lock, copies what no reader still needs; the WAL restarts once all is copied. */
const CHECKPOINT_EVERY_MS = 1000;
const checkpoints = setInterval(() => {
  // Timers run after the turn's setImmediate, so a turn is never open here.
  if (db.inTransaction) return;
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // busy or I/O: the next round tries again; the WAL keeps every commit meanwhile.
  }
}, CHECKPOINT_EVERY_MS);
checkpoints.unref();

type Request =
  | { id: number; close: true }
  | { id: number; batch: NewMessage[] }
  | { id: number; store: { mailboxId: number; uids: number[]; mode: StoreMode; flags: string[]; unchangedSince?: number } }
  | { id: number; expunge: { mailboxId: number; uids: number[] | null; seen: ExpungeCandidates | null } };

/** Answers of writes not committed and flushed yet (this turn's). */
let unflushed: Answer[] = [];
let flushScheduled = false;
/**
 * The turn's transaction is open. The messages that arrive together run in one
 * transaction, each in its own SAVEPOINT (better-sqlite3 nests a transaction
 * function that way): a page that several of them change (the accounts and mailboxes
 * rows, the tail of `changes` and its indexes) is written to the WAL once per turn
 * instead of once per write, and there is one commit. A write that fails rolls back
 * to its savepoint alone. Nothing is answered before the turn's COMMIT and flush.
 */
let turnOpen = false;

function openTurn(): void {
  if (turnOpen) return;
  db.exec('BEGIN IMMEDIATE');
  turnOpen = true;
}

/** Every answer of the turn fails with this (its transaction is gone). */
function failTurn(err: unknown): void {
  const answers = unflushed;
  unflushed = [];
  answer(answers.map((a) => ({ id: a.id, error: errorOf(err) })));
}

/**
 * All answers of a turn in one message: each postMessage wakes the main thread's
 * event loop (a futex wake, an IPI on a VM), and the main thread reads them together anyway.
 */
function answer(answers: Answer[]): void {
  if (answers.length) parentPort!.postMessage({ answers, flushes } satisfies Answers);
}

/** After the turn's messages: its COMMIT, one fdatasync for all of it, then the answers. */
function flushAndAnswer(): void {
  flushScheduled = false;
  if (turnOpen) {
    turnOpen = false;
    try {
      db.exec('COMMIT');
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK');
      failTurn(err);
      return;
    }
  }
  // Empty when a close in the same turn flushed and answered them already.
  if (!unflushed.length) return;
  try {
    flushWal();
  } catch (err) {
    failTurn(err);
    return;
  }
  const answers = unflushed;
  unflushed = [];
  answer(answers);
}

function errorOf(err: unknown): NonNullable<Answer['error']> {
  const e = err as Error & { code?: string };
  return { message: e.message, code: e.code ?? null, name: e.name };
}

function run(msg: Exclude<Request, { close: true }>): unknown {
  if ('batch' in msg) return writer.addMessages(msg.batch);
  if ('store' in msg) {
    const r = msg.store;
    return imap.storeFlags(r.mailboxId, r.uids, r.mode, r.flags, r.unchangedSince);
  }
  const r = msg.expunge;
  return imap.expunge(r.mailboxId, r.uids, r.seen);
}

/** The turn ends (commit, flush, answers) once the messages that arrived together are run. */
function schedule(): void {
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(flushAndAnswer);
}

parentPort!.on('message', handle);

function handle(msg: Request): void {
  if ('close' in msg) {
    clearInterval(checkpoints);
    if (unflushed.length || turnOpen) flushAndAnswer();
    writer.flushSearch();
    if (walFd !== null) fs.closeSync(walFd);
    walFd = null;
    db.close();
    answer([{ id: msg.id, result: null }]);
    return;
  }
  let result: unknown;
  try {
    openTurn();
    result = run(msg);
  } catch (err) {
    // Rolled back to its savepoint: nothing of it to flush. Some errors (SQLITE_FULL,
    // an I/O error) roll back the whole transaction: the turn's earlier writes too.
    if (turnOpen && !db.inTransaction) {
      turnOpen = false;
      failTurn(err);
    }
    answer([{ id: msg.id, error: errorOf(err) }]);
    schedule();
    return;
  }
  unflushed.push({ id: msg.id, result });
  schedule();
}
