import { uidLowerBound, type MessageUid } from './imap-model.ts';
import type { ViewStep } from './mailbox-views.ts';

/**
 * What SELECT tells of a message list (RFC 9051 §7.3.5 FLAGS, RFC 3501 §7.1 UNSEEN):
 * the keywords in use and the first message without \Seen; and what EXPUNGE removes
 * (the messages with \Deleted, RFC 9051 §6.4.3).
 *
 * Kept per list: a view's shared list (mailbox-views.ts) never changes, and every
 * session that selects the mailbox before its next change starts from that same
 * array. A list one step on from a summarised one (the view after a STORE, an
 * EXPUNGE, a delivery) is summarised from that summary and the step's messages
 * alone, and the views carry a summary along every step they make (carrySummary):
 * a mailbox changes several times between two SELECTs of a busy client, and a pass
 * over every message's flags was most of SELECT's and EXPUNGE's cost.
 */
export interface ListSummary {
  /** The keywords in use (the first 200, by first use). */
  readonly keywords: readonly string[];
  /** Index of the first message without \Seen; -1: none. */
  readonly firstUnseen: number;
  /** Messages per keyword (only keywords in use). */
  readonly counts: ReadonlyMap<string, number>;
  /** UID of that first unseen message; 0: none. */
  readonly firstUnseenUid: number;
  /** UIDs of the messages with \Deleted, ascending. */
  readonly deleted: readonly number[];
}

const MAX_KEYWORDS = 200;
const summaries = new WeakMap<readonly MessageUid[], ListSummary>();

/** The summary of `messages`; `step`: how they came from an earlier list (the view's step). */
export function summaryOf(messages: readonly MessageUid[], step?: ViewStep): ListSummary {
  let sum = summaries.get(messages);
  if (sum) return sum;
  const base = step ? summaries.get(step.base) : undefined;
  sum = base && step ? stepped(base, step, messages) : full(messages);
  summaries.set(messages, sum);
  return sum;
}

/**
 * After a view's step: the new list's summary from the base's, when the base has
 * one (a mailbox some session selected or expunged); else nothing (made on first use).
 */
export function carrySummary(messages: readonly MessageUid[], step: ViewStep): void {
  if (summaries.has(messages)) return;
  const base = summaries.get(step.base);
  // A step as big as the list (a mass delivery, a rebuilt view) is cheaper as a full pass, when asked.
  if (!base || step.changed.length + step.expunged.length > Math.max(64, messages.length / 4)) return;
  summaries.set(messages, stepped(base, step, messages));
}

const isSeen = (m: MessageUid) => m.flags.includes('\\Seen');
const isDeleted = (m: MessageUid) => m.flags.includes('\\Deleted');

function full(messages: readonly MessageUid[]): ListSummary {
  const counts = new Map<string, number>();
  const deleted: number[] = [];
  let firstUnseen = -1;
  for (let i = 0; i < messages.length; i++) {
    let seen = false;
    for (const f of messages[i]!.flags) {
      // Flags are canonical (normalizeFlags): system flags start with a backslash.
      if (f.charCodeAt(0) !== 0x5c) counts.set(f, (counts.get(f) ?? 0) + 1);
      else if (f === '\\Seen') seen = true;
      else if (f === '\\Deleted') deleted.push(messages[i]!.uid);
    }
    if (!seen && firstUnseen < 0) firstUnseen = i;
  }
  return finish(counts, firstUnseen, firstUnseen < 0 ? 0 : messages[firstUnseen]!.uid, deleted);
}

/**
 * The step says which UIDs differ between the lists (changed or added, expunged);
 * every other message is the same in both. Each of those UIDs is looked up in both
 * lists (binary search), so the counts move by exactly what changed.
 */
function stepped(base: ListSummary, step: ViewStep, messages: readonly MessageUid[]): ListSummary {
  const counts = new Map(base.counts);
  const bump = (m: MessageUid, d: number) => {
    for (const f of m.flags) {
      if (f.charCodeAt(0) === 0x5c) continue;
      const n = (counts.get(f) ?? 0) + d;
      if (n > 0) counts.set(f, n);
      else counts.delete(f);
    }
  };
  const uids = new Set<number>(step.expunged);
  for (const m of step.changed) uids.add(m.uid);
  // Every unseen message before the base's first unseen one is among the step's.
  let first = Infinity;
  const nowDeleted: number[] = [];
  for (const uid of uids) {
    const old = at(step.base, uid);
    const now = at(messages, uid);
    if (old) bump(old, -1);
    if (now) {
      bump(now, +1);
      if (!isSeen(now) && uid < first) first = uid;
      if (isDeleted(now)) nowDeleted.push(uid);
    }
  }
  // The step's UIDs decide for themselves; every other message kept its flags.
  const deleted = base.deleted.filter((uid) => !uids.has(uid));
  if (nowDeleted.length) {
    deleted.push(...nowDeleted);
    deleted.sort((a, b) => a - b);
  }
  const b = base.firstUnseenUid;
  if (b && b < first) {
    const now = at(messages, b);
    if (now && !isSeen(now)) first = b;
    else {
      // It was read or expunged: the next unseen one after it, if before the step's.
      for (let k = uidLowerBound(messages, b); k < messages.length && messages[k]!.uid < first; k++) {
        if (!isSeen(messages[k]!)) {
          first = messages[k]!.uid;
          break;
        }
      }
    }
  }
  return first === Infinity ? finish(counts, -1, 0, deleted) : finish(counts, uidLowerBound(messages, first), first, deleted);
}

function finish(counts: Map<string, number>, firstUnseen: number, firstUnseenUid: number, deleted: number[]): ListSummary {
  return { keywords: [...counts.keys()].slice(0, MAX_KEYWORDS), firstUnseen, counts, firstUnseenUid, deleted };
}

function at(list: readonly MessageUid[], uid: number): MessageUid | undefined {
  const k = uidLowerBound(list, uid);
  return k < list.length && list[k]!.uid === uid ? list[k] : undefined;
}
