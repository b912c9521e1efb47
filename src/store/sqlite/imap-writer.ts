import type BetterSqlite3 from 'better-sqlite3';
import { MailError } from '../../core/errors.ts';
import { applyStore, normalizeFlags, sameFlags, splitFlags, type ExpungeResult, type MessageUid, type StoreFlagsResult, type StoreMode } from '../imap-model.ts';

/**
 * What a write did to one mailbox's message list, for the shared views
 * (mailbox-views.ts MailboxViews.advance): the mailbox's HIGHESTMODSEQ under the
 * lock before (`from`) and after (`to`), and the changed and expunged messages. A
 * view still at `from` becomes the view at `to` without reading the rows again.
 */
export interface ViewAdvance {
  mailboxId: number;
  uidvalidity: number;
  from: number;
  to: number;
  changed: MessageUid[];
  expunged: number[];
}

/** The \Deleted messages a session saw, with the view they came from (DataStore.expunge). */
export interface ExpungeCandidates {
  uidvalidity: number;
  modseq: number;
  marked: Array<{ id: number; uid: number }>;
}

interface MessageRow {
  id: number;
  uid: number;
  modseq: number;
  flags: string;
  size: number;
  internal_date: number;
  blob_hash: string;
}

/**
 * IMAP STORE and EXPUNGE on the embedded backend, run by the writer thread
 * (writer-worker.ts) like deliveries: synchronous better-sqlite3 transactions with
 * prepared statements, off the event loop, and the only writer of the database, so
 * the main connection never waits for the write lock (SQLite's busy handler sleeps
 * on the event loop). Same semantics as DataStore's portable storeFlags and expunge
 * (kysely), which serve PostgreSQL and are checked by the same store tests.
 */
export class SqliteImapWriter {
  private readonly mailbox;
  private readonly byUids;
  private readonly deleted;
  private readonly deletedByUids;
  private readonly bumpModseqs;
  private readonly setFlags;
  private readonly deleteMessage;
  private readonly insertChange;
  private readonly setHighest;
  private readonly storeTx;
  private readonly expungeTx;

  constructor(db: BetterSqlite3.Database) {
    this.mailbox = db.prepare('SELECT account_id, uidvalidity, highestmodseq FROM mailboxes WHERE id = ?');
    const cols = 'id, uid, modseq, flags, size, internal_date, blob_hash';
    this.byUids = db.prepare(`SELECT ${cols} FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid`);
    const isDeleted = `lower(' ' || flags || ' ') LIKE '% \\deleted %' ESCAPE '!'`;
    this.deleted = db.prepare(`SELECT id, uid FROM messages WHERE mailbox_id = ? AND ${isDeleted} ORDER BY uid`);
    this.deletedByUids = db.prepare(`SELECT id, uid FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) AND ${isDeleted} ORDER BY uid`);
    this.bumpModseqs = db.prepare('UPDATE accounts SET modseq = modseq + ? WHERE id = ? RETURNING modseq').pluck();
    this.setFlags = db.prepare('UPDATE messages SET flags = ?, modseq = ? WHERE id = ?');
    this.deleteMessage = db.prepare('DELETE FROM messages WHERE id = ?');
    this.insertChange = db.prepare('INSERT INTO changes (account_id, modseq, mailbox_id, message_id, uid, kind, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.setHighest = db.prepare('UPDATE mailboxes SET highestmodseq = ? WHERE id = ?');
    this.storeTx = db.transaction(
      (mailboxId: number, uids: number[], mode: StoreMode, flags: string[], unchangedSince: number | undefined): { result: StoreFlagsResult; view: ViewAdvance } => {
        const mb = this.locked(mailboxId);
        const out: StoreFlagsResult = { messages: [], modified: [] };
        const view: ViewAdvance = { mailboxId, uidvalidity: mb.uidvalidity, from: mb.highestmodseq, to: mb.highestmodseq, changed: [], expunged: [] };
        const changed: Array<{ row: MessageRow; flags: string[]; i: number }> = [];
        for (const r of this.byUids.all(mailboxId, JSON.stringify([...new Set(uids)])) as MessageRow[]) {
          if (unchangedSince !== undefined && r.modseq > unchangedSince) {
            out.modified.push(r.uid);
            continue;
          }
          const current = normalizeFlags(splitFlags(r.flags));
          const next = applyStore(current, mode, flags);
          const isChange = !sameFlags(current, next);
          out.messages.push({ uid: r.uid, flags: isChange ? next : current, modseq: r.modseq, changed: isChange });
          if (isChange) changed.push({ row: r, flags: next, i: out.messages.length - 1 });
        }
        if (!changed.length) return { result: out, view };
        const first = this.takeModseqs(mb.accountId, changed.length);
        const t = Date.now();
        changed.forEach((c, k) => {
          const modseq = first + k;
          out.messages[c.i]!.modseq = modseq;
          this.setFlags.run(c.flags.join(' '), modseq, c.row.id);
          this.insertChange.run(mb.accountId, modseq, mailboxId, c.row.id, c.row.uid, 'flags', t);
          view.changed.push({ id: c.row.id, uid: c.row.uid, modseq, flags: c.flags, size: c.row.size, internalDate: c.row.internal_date, blobHash: c.row.blob_hash });
        });
        view.to = first + changed.length - 1;
        this.setHighest.run(view.to, mailboxId);
        return { result: out, view };
      },
    );
    this.expungeTx = db.transaction((mailboxId: number, uids: number[] | null, seen: ExpungeCandidates | null): { result: ExpungeResult; view: ViewAdvance } => {
      const mb = this.locked(mailboxId);
      const view: ViewAdvance = { mailboxId, uidvalidity: mb.uidvalidity, from: mb.highestmodseq, to: mb.highestmodseq, changed: [], expunged: [] };
      // The session's list is used only if the mailbox did not change since it was made.
      const rows =
        seen && seen.uidvalidity === mb.uidvalidity && seen.modseq === mb.highestmodseq
          ? seen.marked
          : ((uids ? this.deletedByUids.all(mailboxId, JSON.stringify(uids)) : this.deleted.all(mailboxId)) as Array<{ id: number; uid: number }>);
      if (!rows.length) return { result: { expunged: [] }, view };
      const first = this.takeModseqs(mb.accountId, rows.length);
      const t = Date.now();
      rows.forEach((r, k) => {
        this.insertChange.run(mb.accountId, first + k, mailboxId, r.id, r.uid, 'expunge', t);
        this.deleteMessage.run(r.id);
        view.expunged.push(r.uid);
      });
      view.to = first + rows.length - 1;
      this.setHighest.run(view.to, mailboxId);
      return { result: { expunged: rows.map((r, k) => ({ uid: r.uid, modseq: first + k })) }, view };
    });
  }

  /** RFC 9051 §6.4.6 STORE: DataStore.storeFlags. */
  storeFlags(mailboxId: number, uids: number[], mode: StoreMode, flags: string[], unchangedSince?: number): { result: StoreFlagsResult; view: ViewAdvance } {
    return this.storeTx.immediate(mailboxId, uids, mode, flags, unchangedSince);
  }

  /** RFC 9051 §6.4.3 EXPUNGE, RFC 4315 UID EXPUNGE: DataStore.expunge. */
  expunge(mailboxId: number, uids: number[] | null, seen: ExpungeCandidates | null): { result: ExpungeResult; view: ViewAdvance } {
    return this.expungeTx.immediate(mailboxId, uids, seen);
  }

  /** The mailbox under the write lock (it may have been deleted since the session looked). */
  private locked(mailboxId: number): { accountId: number; uidvalidity: number; highestmodseq: number } {
    const r = this.mailbox.get(mailboxId) as { account_id: number; uidvalidity: number; highestmodseq: number } | undefined;
    if (!r) throw new MailError('NOT_FOUND', `no mailbox ${mailboxId}`);
    return { accountId: r.account_id, uidvalidity: Number(r.uidvalidity), highestmodseq: Number(r.highestmodseq) };
  }

  /** `n` modseqs of the account at once; the first (they are first … first+n-1). */
  private takeModseqs(accountId: number, n: number): number {
    const last = this.bumpModseqs.get(n, accountId) as number | undefined;
    if (last === undefined) throw new MailError('NOT_FOUND', `no account ${accountId}`);
    return Number(last) - n + 1;
  }
}
