import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';
import { SqliteMessageWriter } from './message-writer.ts';
import type { NewMessage } from '../data-store.ts';

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
let walFd: number | null = null;

/** Every commit written to the WAL so far (by any connection) is on disk once this returns. */
function flushWal(): void {
  // The -wal file exists after the first commit and keeps its inode while a connection is open.
  walFd ??= fs.openSync(`${file}-wal`, 'r');
  fs.fdatasyncSync(walFd);
}

/** PASSIVE: never waits for a lock, copies what no reader still needs; the WAL restarts once all is copied. */
const CHECKPOINT_EVERY_MS = 1000;
const checkpoints = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // busy or I/O: the next round tries again; the WAL keeps every commit meanwhile.
  }
}, CHECKPOINT_EVERY_MS);
checkpoints.unref();

parentPort!.on('message', (msg: { id: number; batch?: NewMessage[]; close?: boolean }) => {
  if (msg.close) {
    clearInterval(checkpoints);
    writer.flushSearch();
    if (walFd !== null) fs.closeSync(walFd);
    db.close();
    parentPort!.postMessage({ id: msg.id, result: null });
    return;
  }
  try {
    const result = writer.addMessages(msg.batch!);
    flushWal();
    parentPort!.postMessage({ id: msg.id, result });
  } catch (err) {
    const e = err as Error & { code?: string };
    parentPort!.postMessage({ id: msg.id, error: { message: e.message, code: e.code ?? null, name: e.name } });
  }
});
