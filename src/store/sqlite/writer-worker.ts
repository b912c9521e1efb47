import { parentPort, workerData } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';
import { SqliteMessageWriter } from './message-writer.ts';
import type { NewMessage } from '../data-store.ts';

/**
 * The delivery commit thread: runs group-commit transactions (including the WAL
 * fsync of synchronous=FULL) off the main thread, so SMTP sessions keep being
 * served — and the next batch keeps growing — while the disk flushes.
 */
const db = new BetterSqlite3(workerData.file as string);
db.pragma('busy_timeout = 10000');
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.pragma('foreign_keys = ON');
const writer = new SqliteMessageWriter(db);

parentPort!.on('message', (msg: { id: number; batch?: NewMessage[]; close?: boolean }) => {
  if (msg.close) {
    writer.flushSearch();
    db.close();
    parentPort!.postMessage({ id: msg.id, result: null });
    return;
  }
  try {
    parentPort!.postMessage({ id: msg.id, result: writer.addMessages(msg.batch!) });
  } catch (err) {
    const e = err as Error & { code?: string };
    parentPort!.postMessage({ id: msg.id, error: { message: e.message, code: e.code ?? null, name: e.name } });
  }
});
