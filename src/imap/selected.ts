import type { DataStore } from '../store/data-store.ts';
import { sameFlags, type MailboxInfo, type MessageUid } from '../store/imap-model.ts';
import type { ViewStep } from '../store/mailbox-views.ts';
import { formatSequenceSet } from './sequence-set.ts';

/** How sync() words its untagged responses for this session. */
export interface SyncRender {
  /** The FETCH response for a flag change made elsewhere (with MODSEQ once CONDSTORE is enabled). */
  flags: (m: MessageUid, seq: number) => string;
  /** QRESYNC enabled (RFC 7162 §3.2.10): expunges as one `* VANISHED uid-set` instead of `* n EXPUNGE`. */
  vanished?: boolean;
}

/**
 * Removed messages as untagged responses: EXPUNGE per message, highest sequence
 * number first so each number is still right when the client reads it (RFC 9051
 * §7.5.1); with QRESYNC enabled one VANISHED with their UIDs (RFC 7162 §3.2.10).
 */
export function expungeResponses(removed: Array<{ seq: number; uid: number }>, vanished: boolean): string[] {
  if (!removed.length) return [];
  if (vanished) return [`* VANISHED ${formatSequenceSet(removed.map((r) => r.uid))}`];
  return removed.map((r) => r.seq).sort((a, b) => b - a).map((n) => `* ${n} EXPUNGE`);
}

/**
 * The selected mailbox as one session sees it (RFC 9051 §2.3.1.2, §7.4, §7.5):
 * message sequence numbers are positions in this session's list, which changes
 * only when the session tells the client — EXISTS for new messages, EXPUNGE (or
 * VANISHED) for removed ones, FETCH FLAGS for flag changes made elsewhere. Other
 * sessions' changes arrive as "dirty" notices and are folded in by sync() at the
 * moments the RFC allows.
 */
/** How syncs caught up, for tests (test/imap/sync-steps.test.ts checks both ways run). */
export const syncStats = { steps: 0, merges: 0, fromMemory: 0 };

export class SelectedMailbox {
  /**
   * messages[seq - 1]. Often the shared list of the mailbox's view itself
   * (mailbox-views.ts: never mutated), while this session's numbering matches it:
   * then a sync that finds the view unchanged costs nothing, and one a step ahead
   * costs only that step. The session's own changes copy it first (own()).
   */
  private list: readonly MessageUid[];
  /** `list` is a view's shared array. */
  private shared: boolean;
  /** Something changed in the store since the last sync (another session, a delivery): markDirty(). */
  dirty = false;
  /** The highest modseq announced with those changes (Infinity: unknown, read the mailbox row). */
  private dirtyAt = 0;
  /** \Recent (RFC 3501 §2.3.2): messages this session is the first to see (IMAP4rev1 only). */
  private readonly recent = new Set<number>();

  /**
   * `seen` holds, per mailbox, the highest UID some session of this process has
   * already been told about; messages above it are \Recent for the session that
   * claims them (a read-only EXAMINE does not claim). After a restart every message
   * counts as recent once — "if it is not possible to determine … the message SHOULD
   * be considered recent" (RFC 3501 §2.3.2).
   */
  constructor(
    public info: MailboxInfo,
    /** A view's shared list (SELECT), kept as it is until this session changes it. */
    messages: readonly MessageUid[],
    readonly readOnly: boolean,
    private readonly seen: Map<number, number>,
  ) {
    this.list = messages;
    this.shared = true;
    this.claimRecent(messages, true);
  }

  /**
   * A change to the mailbox, announced with the modseq it reached (none: unknown):
   * the next sync folds it in, from this process's view alone when that view already
   * has it (the session's own STORE or EXPUNGE), else after a look at the mailbox row.
   */
  markDirty(modseq?: number): void {
    this.dirty = true;
    this.dirtyAt = Math.max(this.dirtyAt, modseq ?? Infinity);
  }

  /** messages[seq - 1]: the session's numbering. Never mutate it: setMessage and removeSeqs do. */
  get messages(): readonly MessageUid[] {
    return this.list;
  }

  /** The list, made this session's own first when it is a view's. */
  private own(): MessageUid[] {
    if (this.shared) {
      this.list = this.list.slice();
      this.shared = false;
    }
    return this.list as MessageUid[];
  }

  /** The session's own change to one message (its STORE, its FETCH setting \Seen), seen at once. */
  setMessage(seq: number, m: MessageUid): void {
    this.own()[seq - 1] = m;
  }

  /**
   * The session's own STORE, when the view it leads to is one step on from this
   * session's list and that step holds exactly the write's changes (`changed`: UID →
   * the modseq it took): the list becomes the view's list as it is, with no copy now
   * and no merge at the next sync. False when anything else moved the view meanwhile;
   * the caller then applies its change with setMessage.
   */
  adoptOwnStore(view: { info: MailboxInfo; messages: readonly MessageUid[]; step?: ViewStep } | null, changed: ReadonlyMap<number, number>): boolean {
    const step = view?.step;
    if (!view || !step || !this.shared || step.base !== this.list || step.expunged.length || step.changed.length !== changed.size) return false;
    if (!step.changed.every((m) => changed.get(m.uid) === m.modseq && this.seqOf(m.uid) > 0)) return false;
    this.list = view.messages;
    this.info = view.info;
    return true;
  }

  /** Takes the messages at these sequence numbers out (the session's own EXPUNGE). */
  removeSeqs(seqs: readonly number[]): void {
    const list = this.own();
    for (const n of [...seqs].sort((a, b) => b - a)) list.splice(n - 1, 1);
  }

  /** `ascending`: the messages are in UID order (a session's list), else any order (a sync's new ones). */
  private claimRecent(messages: readonly MessageUid[], ascending = false): void {
    const before = this.seen.get(this.info.id) ?? 0;
    let top = before;
    // In UID order the messages above the watermark are the last ones.
    let lo = 0;
    let hi = messages.length;
    while (ascending && lo < hi) {
      const mid = (lo + hi) >> 1;
      if (messages[mid]!.uid > before) hi = mid;
      else lo = mid + 1;
    }
    for (let i = lo; i < messages.length; i++) {
      const uid = messages[i]!.uid;
      if (uid <= before) continue;
      this.recent.add(uid);
      top = Math.max(top, uid);
    }
    if (!this.readOnly && top > before) this.seen.set(this.info.id, top);
  }

  /**
   * RFC 7162 §3.1.2.1: the HIGHESTMODSEQ to tell the client — at least 1, since a
   * mailbox without any change yet has 0 and the response code needs a positive value.
   */
  get highestModseq(): number {
    return Math.max(1, this.info.highestmodseq);
  }

  get exists(): number {
    return this.messages.length;
  }

  get uidnext(): number {
    return Math.max(this.info.uidnext, (this.messages.at(-1)?.uid ?? 0) + 1);
  }

  /** 1-based sequence number of a UID, or 0. Binary search: UIDs ascend. */
  seqOf(uid: number): number {
    let lo = 0;
    let hi = this.messages.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const u = this.messages[mid]!.uid;
      if (u === uid) return mid + 1;
      if (u < uid) lo = mid + 1;
      else hi = mid - 1;
    }
    return 0;
  }

  byUid(uid: number): MessageUid | undefined {
    const s = this.seqOf(uid);
    return s ? this.messages[s - 1] : undefined;
  }

  isRecent(uid: number): boolean {
    return this.recent.has(uid);
  }

  get recentCount(): number {
    if (this.recent.size === 0) return 0;
    let n = 0;
    if (this.recent.size * 8 < this.messages.length) {
      // Few recent UIDs (the usual case): look each up. One no longer listed was
      // expunged and never comes back (UIDs are not reused), so it is dropped.
      for (const uid of this.recent) {
        if (this.seqOf(uid)) n++;
        else this.recent.delete(uid);
      }
      return n;
    }
    for (const m of this.messages) if (this.recent.has(m.uid)) n++;
    return n;
  }

  /**
   * Folds in what changed in the store. Returns the untagged responses to send:
   * EXPUNGE (highest sequence first, so the numbers stay right for the client) or,
   * with QRESYNC, VANISHED, only when `expungeAllowed`; then EXISTS, then FETCH
   * FLAGS for changed flags. When expunges may not be reported yet, the vanished
   * messages stay in the list (their flags are no longer updated) until a later
   * sync may report them.
   */
  async sync(data: DataStore, expungeAllowed: boolean, render: SyncRender, withRecent = false): Promise<string[]> {
    if (!this.dirty) return [];
    const at = this.dirtyAt;
    this.dirty = false;
    this.dirtyAt = 0;
    // The shared list (mailbox-views.ts) as of at least the row's HIGHESTMODSEQ, which therefore never runs ahead of it.
    const cached = at !== Infinity ? data.cachedMailboxView(this.info.id, at) : null;
    if (cached) syncStats.fromMemory++;
    const view = cached ?? (await data.mailboxView(this.info.id));
    // A deleted mailbox: its messages are gone (reported as expunged when allowed).
    if (view) this.info = view.info;
    const fresh = view?.messages ?? [];
    if (fresh === this.list) return [];
    if (view?.step && view.step.base === this.list) {
      const out = this.applyStep(view.step, fresh, expungeAllowed, render, withRecent);
      if (out) {
        syncStats.steps++;
        return out;
      }
    }
    syncStats.merges++;
    const out: string[] = [];
    // Both lists ascend by UID: one merge pass finds removed, changed and kept messages.
    const kept: MessageUid[] = [];
    const removed: Array<{ seq: number; uid: number }> = [];
    const changed: Array<{ m: MessageUid; seq: number }> = [];
    let j = 0;
    let pendingExpunge = false;
    for (let i = 0; i < this.list.length; i++) {
      const old = this.list[i]!;
      while (j < fresh.length && fresh[j]!.uid < old.uid) j++;
      const now = j < fresh.length && fresh[j]!.uid === old.uid ? fresh[j]! : undefined;
      if (!now) {
        // 1. removed messages: reported now, or kept (flags frozen) until a later sync may report them.
        if (expungeAllowed) removed.push({ seq: i + 1, uid: old.uid });
        else {
          kept.push(old);
          pendingExpunge = true;
        }
        continue;
      }
      // 2. flag changes of messages we keep; the view's object when it says the same
      // (the session's own STORE made its own copy), so the list can be the view's again.
      if (now !== old && now.modseq > old.modseq) {
        kept.push(now);
        if (!sameFlags(now.flags, old.flags)) changed.push({ m: now, seq: kept.length });
      } else kept.push(now.modseq === old.modseq ? now : old);
    }
    if (pendingExpunge) this.markDirty();
    out.push(...expungeResponses(removed, !!render.vanished));
    // 3. new messages (UIDs above our last one)
    const last = kept.at(-1)?.uid ?? 0;
    let k = fresh.length;
    while (k > 0 && fresh[k - 1]!.uid > last) k--;
    const added = fresh.slice(k);
    if (kept.length + added.length === fresh.length && kept.every((m, x) => m === fresh[x])) {
      this.list = fresh;
      this.shared = true;
    } else {
      this.list = kept.concat(added);
      this.shared = false;
    }
    if (added.length) {
      this.claimRecent(added);
      out.push(`* ${this.list.length} EXISTS`);
      if (withRecent) out.push(`* ${this.recentCount} RECENT`);
    }
    for (const c of changed) out.push(render.flags(c.m, c.seq));
    return out;
  }

  /**
   * sync() for a session whose list is the view's previous one: only the step's
   * messages are looked at (binary search), and the list becomes the new view's.
   * Null when the step holds what the merge must handle: an expunge that may not be
   * reported yet, or a new message below the list's last UID.
   */
  private applyStep(step: ViewStep, fresh: readonly MessageUid[], expungeAllowed: boolean, render: SyncRender, withRecent: boolean): string[] | null {
    const removed: Array<{ seq: number; uid: number }> = [];
    for (const uid of step.expunged) {
      const seq = this.seqOf(uid);
      if (seq) removed.push({ seq, uid });
    }
    if (removed.length && !expungeAllowed) return null;
    removed.sort((a, b) => a.seq - b.seq);
    const last = this.list.at(-1)?.uid ?? 0;
    const gone = new Set(step.expunged);
    const added: MessageUid[] = [];
    const flagged: MessageUid[] = [];
    for (const m of step.changed) {
      if (gone.has(m.uid)) continue;
      const old = this.byUid(m.uid);
      if (old) {
        if (m !== old && m.modseq > old.modseq && !sameFlags(m.flags, old.flags)) flagged.push(m);
      } else if (m.uid > last) added.push(m);
      else return null;
    }
    const out = expungeResponses(removed, !!render.vanished);
    this.list = fresh;
    this.shared = true;
    if (added.length) {
      this.claimRecent(added);
      out.push(`* ${this.list.length} EXISTS`);
      if (withRecent) out.push(`* ${this.recentCount} RECENT`);
    }
    // In the order the merge reports them: by sequence number.
    for (const m of flagged.sort((a, b) => a.uid - b.uid)) out.push(render.flags(m, this.seqOf(m.uid)));
    return out;
  }
}
