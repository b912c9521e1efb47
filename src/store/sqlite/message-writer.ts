import type BetterSqlite3 from 'better-sqlite3';
import type { AddedMessage, NewMessage } from '../data-store.ts';
import { MailError } from '../../core/errors.ts';
import { queueRows } from '../queue-rows.ts';

/**
 * The hot path of every delivery on the embedded backend: one synchronous
 * better-sqlite3 transaction with prepared statements for a whole group-commit
 * batch. Same semantics as DataStore's portable (kysely) version, which serves the
 * other backends and is kept equal by the store conformance tests; the query
 * builder's per-call prepare cost ~6× the throughput here.
 */
export class SqliteMessageWriter {
  private insertBlob;
  private insertSearch;
  private bumpUid;
  private bumpModseq;
  private setHighest;
  private insertMessage;
  private insertChange;
  private insertQueue;
  private insertPending;
  private deletePending;
  private tx;
  private searchTx;
  private setSync: (mode: 'FULL' | 'NORMAL') => void;
  /** Search text of committed messages, waiting for the deferred FTS transaction. */
  private searchQueue: Array<[hash: string, text: string]> = [];
  private searchScheduled = false;

  /** `sync`: the connection's synchronous mode, restored after the FTS transaction. */
  constructor(
    db: BetterSqlite3.Database,
    private readonly sync: 'FULL' | 'NORMAL' = 'FULL',
  ) {
    this.insertBlob = db.prepare('INSERT INTO blobs (hash, size, meta, data, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING');
    this.insertSearch = db.prepare('INSERT INTO search_text (hash, body) VALUES (?, ?)');
    this.bumpUid = db.prepare('UPDATE mailboxes SET uidnext = uidnext + 1 WHERE account_id = ? AND name = ? RETURNING id, uidnext, uidvalidity, highestmodseq');
    this.bumpModseq = db.prepare('UPDATE accounts SET modseq = modseq + 1 WHERE id = ? RETURNING modseq');
    this.setHighest = db.prepare('UPDATE mailboxes SET highestmodseq = ? WHERE id = ?');
    this.insertMessage = db.prepare(
      `INSERT INTO messages (account_id, mailbox_id, uid, modseq, blob_hash, size, internal_date, flags, subject, from_addr, date_header, message_id)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.insertChange = db.prepare('INSERT INTO changes (account_id, modseq, mailbox_id, message_id, uid, kind, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.insertQueue = db.prepare(
      `INSERT INTO queue (queue_id, sender, recipient, blob_hash, status, attempts, next_attempt, last_error, created_at, notify, orcpt, ret, envid, smtputf8)
       VALUES (@queue_id, @sender, @recipient, @blob_hash, @status, @attempts, @next_attempt, @last_error, @created_at, @notify, @orcpt, @ret, @envid, @smtputf8)`,
    );
    this.insertPending = db.prepare('INSERT INTO search_pending (hash) VALUES (?) ON CONFLICT (hash) DO NOTHING');
    this.deletePending = db.prepare('DELETE FROM search_pending WHERE hash = ?');
    this.tx = db.transaction((batch: NewMessage[], texts: Array<[string, string]>) => batch.map((m) => this.addOne(m, texts)));
    this.searchTx = db.transaction((items: Array<[string, string]>) => {
      for (const [hash, text] of items) {
        this.insertSearch.run(hash, text);
        this.deletePending.run(hash);
      }
    });
    this.setSync = (mode) => db.pragma(`synchronous = ${mode}`);
  }

  addMessages(batch: NewMessage[]): AddedMessage[][] {
    const texts: Array<[string, string]> = [];
    const added = this.tx.immediate(batch, texts) as AddedMessage[][];
    if (texts.length) {
      this.searchQueue.push(...texts);
      // Bigger FTS batches cost less per message: flush every 50 ms, or at 500.
      if (this.searchQueue.length >= 500) this.flushSearch();
      else if (!this.searchScheduled) {
        this.searchScheduled = true;
        setTimeout(() => this.flushSearch(), 50).unref();
      }
    }
    return added;
  }

  /**
   * The full-text index is derived data, so it is kept out of the acknowledged
   * transaction (FTS5 inserts doubled its cost): the delivery transaction records
   * the blob in search_pending, and this later transaction, committed without its
   * own fsync (synchronous=NORMAL; the next flushed commit flushes it), fills FTS and
   * clears the pending rows. After a crash, backfillSearch() re-indexes whatever is
   * still pending from the stored message.
   */
  flushSearch(): void {
    this.searchScheduled = false;
    if (!this.searchQueue.length) return;
    const items = this.searchQueue;
    this.searchQueue = [];
    if (this.sync !== 'NORMAL') this.setSync('NORMAL');
    try {
      this.searchTx.immediate(items);
    } catch {
      // Left in search_pending: re-indexed from the message at the next start.
    } finally {
      if (this.sync !== 'NORMAL') this.setSync(this.sync);
    }
  }

  private addOne(m: NewMessage, texts: Array<[string, string]>): AddedMessage[] {
    const t = Date.now();
    const blob = this.insertBlob.run(m.blobHash, m.size, m.meta, toBuffer(m.blobData), t);
    if (blob.changes > 0 && m.searchText) {
      this.insertPending.run(m.blobHash);
      texts.push([m.blobHash, m.searchText]);
    }
    const added: AddedMessage[] = [];
    for (const d of m.deliveries) {
      const name = d.mailbox ?? 'INBOX';
      let mb = this.bumpUid.get(d.accountId, name) as MailboxBump | undefined;
      if (!mb && name !== 'INBOX') mb = this.bumpUid.get(d.accountId, 'INBOX') as MailboxBump | undefined;
      if (!mb) throw new MailError('NOT_FOUND', `account ${d.accountId} has no INBOX`);
      const uid = Number(mb.uidnext) - 1;
      const { modseq } = this.bumpModseq.get(d.accountId) as { modseq: number };
      this.setHighest.run(modseq, mb.id);
      const row = this.insertMessage.run(d.accountId, mb.id, uid, modseq, m.blobHash, m.size, m.internalDate, (d.flags ?? []).join(' '), m.subject, m.from, m.date, m.messageId);
      const messageId = Number(row.lastInsertRowid);
      this.insertChange.run(d.accountId, modseq, mb.id, messageId, uid, 'add', t);
      // What the delivery did to the mailbox's list, for the in-memory views (MailboxViews.advance).
      const view = { uidvalidity: Number(mb.uidvalidity), from: Number(mb.highestmodseq), uidnext: Number(mb.uidnext), flags: d.flags ?? [], size: m.size, internalDate: m.internalDate };
      added.push({ accountId: d.accountId, mailboxId: mb.id, messageId, uid, modseq: Number(modseq), view });
    }
    if (m.queue) for (const row of queueRows(m.queue, m.blobHash, t)) this.insertQueue.run(row);
    return added;
  }
}

/** The mailbox row as a delivery's UPDATE … RETURNING left it (highestmodseq: still the one before). */
interface MailboxBump {
  id: number;
  uidnext: number;
  uidvalidity: number;
  highestmodseq: number;
}

/** Structured clone (the writer thread's postMessage) turns Buffers into Uint8Arrays. */
function toBuffer(data: Uint8Array | null): Buffer | null {
  if (!data) return null;
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
