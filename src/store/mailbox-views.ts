import type { MailboxInfo, MessageUid } from './imap-model.ts';
import { carrySummary } from './list-summary.ts';

/**
 * One in-memory message list per mailbox, shared by every IMAP session (and
 * STATUS/LIST counts) of this process, instead of each SELECT and each sync
 * reading and building the whole list again (0.8 ms and ~240 bytes per message
 * for 500 messages, per session).
 *
 * A view is valid for the mailbox's HIGHESTMODSEQ it was built at: every change
 * to a mailbox's messages (delivery, APPEND, STORE, EXPUNGE, COPY/MOVE in or out)
 * raises it, and changes are committed in modseq order per account (one writer on
 * SQLite, the account row lock on PostgreSQL). So a caller reads the mailbox row
 * (one indexed row), and when its HIGHESTMODSEQ is above the view's, applies only
 * the messages changed and the UIDs expunged after the view's modseq — which also
 * covers changes made by other processes (the CLI) and other nodes.
 *
 * Views and their MessageUid objects are immutable: a change makes a new array
 * and new objects for the changed messages, so sessions may hold references
 * (their own arrays of shared objects) without copying.
 */

/** The mailbox row, without the counts (they come from the view). */
export type MailboxRow = Omit<MailboxInfo, 'messages' | 'unseen' | 'size'> & { accountId: number };

export interface MailboxView {
  /** The HIGHESTMODSEQ this list reflects (at least). */
  readonly modseq: number;
  readonly uidvalidity: number;
  /** By ascending UID. Never mutate: shared. */
  readonly messages: readonly MessageUid[];
  /** Computed on first use. */
  counts?: { messages: number; unseen: number; size: number };
  /** How this list was made from the previous view's (SelectedMailbox.sync applies just that to a session still at it). */
  readonly step?: ViewStep;
  /** The latest mailbox row seen with it (for cached(): uidnext and the rest; highestmodseq is the view's). */
  row?: MailboxRow;
}

/** One step between views: `messages` = applyDelta(base, changed, expunged). */
export interface ViewStep {
  readonly base: readonly MessageUid[];
  readonly changed: readonly MessageUid[];
  readonly expunged: readonly number[];
}

export interface ViewSource {
  /** Every message of the mailbox, by ascending UID. */
  messageUids(mailboxId: number): Promise<MessageUid[]>;
  /** Messages of the mailbox with a modseq above `modseq`, and UIDs expunged (or moved out) after it. */
  messageDelta(accountId: number, mailboxId: number, modseq: number): Promise<{ changed: MessageUid[]; expunged: number[] }>;
}

/** Views kept (least recently used dropped first); a dropped view is rebuilt on next use. */
const MAX_VIEWS = 1000;

export class MailboxViews {
  private readonly views = new Map<number, MailboxView>();

  constructor(private readonly source: ViewSource) {}

  /** The message list of a mailbox as of (at least) `row`'s HIGHESTMODSEQ. */
  async view(row: MailboxRow): Promise<MailboxView> {
    const cur = this.views.get(row.id);
    if (cur && cur.uidvalidity === row.uidvalidity && cur.modseq >= row.highestmodseq) {
      this.views.delete(row.id);
      this.views.set(row.id, cur);
      cur.row = row;
      return cur;
    }
    let next: MailboxView;
    if (cur && cur.uidvalidity === row.uidvalidity) {
      const delta = await this.source.messageDelta(row.accountId, row.id, cur.modseq);
      next = {
        modseq: row.highestmodseq,
        uidvalidity: row.uidvalidity,
        messages: applyDelta(cur.messages, delta.changed, delta.expunged),
        step: { base: cur.messages, changed: delta.changed, expunged: delta.expunged },
        row,
      };
      if (cur.counts) next.counts = adjustCounts(cur.counts, cur.messages, delta.changed, delta.expunged);
      carrySummary(next.messages, next.step!);
    } else {
      next = { modseq: row.highestmodseq, uidvalidity: row.uidvalidity, messages: await this.source.messageUids(row.id), row };
    }
    // Another caller may have installed a newer view meanwhile: keep the newest.
    const latest = this.views.get(row.id);
    if (!latest || latest.uidvalidity !== next.uidvalidity || latest.modseq <= next.modseq) {
      this.views.delete(row.id);
      this.views.set(row.id, next);
      if (this.views.size > MAX_VIEWS) this.views.delete(this.views.keys().next().value as number);
    }
    return next;
  }

  /**
   * A write's own changes (sqlite/imap-writer.ts ViewAdvance; a delivery's, from
   * message-writer.ts, with the mailbox's new uidnext): a view still at the
   * HIGHESTMODSEQ the write found under the lock becomes the view at the one it left,
   * which then needs no read of the changed rows. Any other view is left to the next
   * look (it is behind by more than this write, or gone).
   */
  advance(a: { mailboxId: number; uidvalidity: number; from: number; to: number; changed: MessageUid[]; expunged: number[]; uidnext?: number }): void {
    if (a.to === a.from) return;
    const cur = this.views.get(a.mailboxId);
    if (!cur || cur.uidvalidity !== a.uidvalidity || cur.modseq !== a.from) return;
    const next: MailboxView = {
      modseq: a.to,
      uidvalidity: a.uidvalidity,
      messages: applyDelta(cur.messages, a.changed, a.expunged),
      step: { base: cur.messages, changed: a.changed, expunged: a.expunged },
      // STORE and EXPUNGE leave the rest of the row as it was; a delivery says its uidnext.
      row: cur.row && a.uidnext !== undefined ? { ...cur.row, uidnext: a.uidnext, highestmodseq: a.to } : cur.row,
    };
    if (cur.counts) next.counts = adjustCounts(cur.counts, cur.messages, a.changed, a.expunged);
    carrySummary(next.messages, next.step!);
    this.views.set(a.mailboxId, next);
  }

  /** MailboxInfo of a row: its fields plus the counts of its view. */
  async info(row: MailboxRow): Promise<MailboxInfo> {
    return (await this.infoAndView(row)).info;
  }

  /** The info and the message list, from one look at the view. */
  async infoAndView(row: MailboxRow): Promise<{ info: MailboxInfo; messages: readonly MessageUid[]; step?: ViewStep }> {
    const v = await this.view(row);
    const c = (v.counts ??= countsOf(v.messages));
    const { accountId: _, ...rest } = row;
    return { info: { ...rest, ...c }, messages: v.messages, step: v.step };
  }

  /**
   * The info and list without a look at the row, when this process's view already
   * reflects the mailbox at HIGHESTMODSEQ `atLeast` (its own STORE or EXPUNGE advanced
   * it: advance()); null when it does not, or nothing is cached. A change announced
   * with modseq m is in every view at m or later (changes commit in modseq order).
   */
  cached(mailboxId: number, atLeast: number): { info: MailboxInfo; messages: readonly MessageUid[]; step?: ViewStep } | null {
    const v = this.views.get(mailboxId);
    if (!v?.row || v.modseq < atLeast || v.uidvalidity !== v.row.uidvalidity) return null;
    const c = (v.counts ??= countsOf(v.messages));
    const { accountId: _, ...rest } = v.row;
    return { info: { ...rest, highestmodseq: v.modseq, ...c }, messages: v.messages, step: v.step };
  }

  /** The view in memory, whatever its modseq (a caller that checks it against the row under the lock). */
  peek(mailboxId: number): MailboxView | undefined {
    return this.views.get(mailboxId);
  }

  /** Forget a mailbox (deleted): its id is never reused, this only frees memory. */
  drop(mailboxId: number): void {
    this.views.delete(mailboxId);
  }
}

function countsOf(messages: readonly MessageUid[]): { messages: number; unseen: number; size: number } {
  let unseen = 0;
  let size = 0;
  for (const m of messages) {
    size += m.size;
    // Flags are stored in canonical case (normalizeFlags).
    if (!m.flags.includes('\\Seen')) unseen++;
  }
  return { messages: messages.length, unseen, size };
}

/** Index of `uid` in a list ascending by UID, or -(insertion point) - 1. */
function findUid(list: readonly MessageUid[], uid: number): number {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const u = list[mid]!.uid;
    if (u === uid) return mid;
    if (u < uid) lo = mid + 1;
    else hi = mid - 1;
  }
  return -lo - 1;
}

const unseenOf = (m: MessageUid) => (m.flags.includes('\\Seen') ? 0 : 1);

/**
 * The counts after a small delta, from the counts before (countsOf walks the whole
 * list: with a STORE's one message that was most of the work of keeping a view).
 */
function adjustCounts(c: { messages: number; unseen: number; size: number }, base: readonly MessageUid[], changed: readonly MessageUid[], expunged: readonly number[]) {
  if (changed.length + expunged.length > SMALL_DELTA) return undefined;
  let { messages, unseen, size } = c;
  const gone = new Set(expunged);
  for (const uid of gone) {
    const i = findUid(base, uid);
    if (i < 0) continue;
    messages--;
    size -= base[i]!.size;
    unseen -= unseenOf(base[i]!);
  }
  for (const m of changed) {
    if (gone.has(m.uid)) continue;
    const i = findUid(base, m.uid);
    if (i >= 0) {
      size += m.size - base[i]!.size;
      unseen += unseenOf(m) - unseenOf(base[i]!);
    } else {
      messages++;
      size += m.size;
      unseen += unseenOf(m);
    }
  }
  return { messages, unseen, size };
}

/** Deltas up to this many messages are applied in place on a copy (binary search), not by a merge. */
const SMALL_DELTA = 16;

/**
 * The list after a delta: changed messages replace theirs (or are inserted by
 * UID), expunged UIDs go. Applying a delta twice gives the same list (UIDs are
 * never reused in a mailbox), so a view built from rows read a little later than
 * its modseq is still right.
 */
export function applyDelta(base: readonly MessageUid[], changed: readonly MessageUid[], expunged: readonly number[]): MessageUid[] {
  if (changed.length + expunged.length <= SMALL_DELTA) {
    const out = base.slice();
    for (const uid of expunged) {
      const i = findUid(out, uid);
      if (i >= 0) out.splice(i, 1);
    }
    for (const m of changed) {
      if (expunged.includes(m.uid)) continue;
      const i = findUid(out, m.uid);
      if (i >= 0) out[i] = m;
      else out.splice(-i - 1, 0, m);
    }
    return out;
  }
  const gone = new Set(expunged);
  const byUid = new Map<number, MessageUid>();
  for (const m of changed) if (!gone.has(m.uid)) byUid.set(m.uid, m);
  const out: MessageUid[] = [];
  for (const m of base) {
    if (gone.has(m.uid)) continue;
    const c = byUid.get(m.uid);
    if (c) {
      byUid.delete(m.uid);
      out.push(c);
    } else out.push(m);
  }
  if (byUid.size) {
    // New messages: usually all above the last UID (appended in order); merge otherwise.
    const added = [...byUid.values()].sort((a, b) => a.uid - b.uid);
    if (!out.length || added[0]!.uid > out.at(-1)!.uid) out.push(...added);
    else {
      out.push(...added);
      out.sort((a, b) => a.uid - b.uid);
    }
  }
  return out;
}
