import { bad, no } from '../errors.ts';
import { tokenText, type Command, type Token } from '../parser.ts';
import { atomUpper, isList } from '../args.ts';
import { formatSequenceSet, parseSequenceSet, resolve } from '../sequence-set.ts';
import type { ImapSession } from '../session.ts';
import { expungeResponses, type SelectedMailbox } from '../selected.ts';
import { uidLowerBound, type MessageUid, type StoreMode } from '../../store/imap-model.ts';
import type { CommandSpec } from './index.ts';
import { savedNumbers } from '../search-keys.ts';

/**
 * STORE and UID STORE (RFC 9051 §6.4.6, §6.4.9), with RFC 7162 §3.1.3
 * UNCHANGEDSINCE. Also the helpers the other message commands of this group
 * (COPY, MOVE, UID EXPUNGE) share: the set of messages a sequence set names, the
 * read-write check, and the in-place update of the session's message list.
 */

/**
 * The messages a sequence-set argument names in the session's view (RFC 9051 §9):
 * by sequence number, where a number above the message count is a BAD (`*` is the
 * last message); by UID, where UIDs that do not exist are ignored (§6.4.9).
 * Returned in ascending order with their sequence numbers.
 */
export function messagesOf(s: ImapSession, cmd: Command, i: number, byUid: boolean): Array<{ m: MessageUid; seq: number }> {
  const sel = s.selected!;
  const t = cmd.args[i];
  const text = t && (t.kind === 'atom' || t.kind === 'number') ? tokenText(t) : null;
  if (!text) throw bad(`${cmd.name}: expected a sequence set`);
  // `$` (RFC 5182 SEARCHRES): the result of the last SEARCH ... SAVE.
  const parsed = parseSequenceSet(text);
  if (!parsed.ok) throw bad(`${cmd.name}: ${parsed.error}`);
  const out: Array<{ m: MessageUid; seq: number }> = [];
  if (byUid) {
    // The intervals ascend and do not overlap, and so do the list's UIDs: each interval's
    // first message by binary search, then the run up to its end (not a pass over the list).
    const list = sel.messages;
    for (const iv of resolve(parsed.value, list.at(-1)?.uid ?? 0, savedNumbers(sel, true))) {
      for (let k = uidLowerBound(list, iv.lo); k < list.length && list[k]!.uid <= iv.hi; k++) out.push({ m: list[k]!, seq: k + 1 });
    }
    return out;
  }
  for (const r of parsed.value.ranges) {
    for (const n of [r.from, r.to]) if (n !== '*' && n > sel.exists) throw bad(`${cmd.name}: no message with sequence number ${n}`);
  }
  for (const iv of resolve(parsed.value, sel.exists, savedNumbers(sel, false))) {
    for (let n = iv.lo; n <= Math.min(iv.hi, sel.exists); n++) out.push({ m: sel.messages[n - 1]!, seq: n });
  }
  return out;
}

/** RFC 9051 §6.3.3: a mailbox opened with EXAMINE cannot be changed. */
export function requireWritable(s: ImapSession, cmd: Command): SelectedMailbox {
  const sel = s.selected!;
  if (sel.readOnly) throw no(`${cmd.name}: the mailbox is read-only (EXAMINE)`, 'READ-ONLY');
  return sel;
}

/** Tells other sessions (and IDLE, push) that a mailbox changed. */
export function publishChange(s: ImapSession, mailboxId: number, modseq: number): void {
  s.ctx.pubsub.publish({ accountId: s.account!.id, mailboxId, modseq });
}

/**
 * Takes expunged UIDs out of the session's own list and returns the responses for
 * them: EXPUNGE (RFC 9051 §7.5.1), highest sequence number first so each number is
 * still right when the client reads it; once QRESYNC is enabled one VANISHED with
 * their UIDs instead (RFC 7162 §3.2.10).
 */
export function removeFromView(s: ImapSession, sel: SelectedMailbox, uids: Iterable<number>): string[] {
  const removed = [...new Set(uids)].map((uid) => ({ uid, seq: sel.seqOf(uid) })).filter((r) => r.seq > 0);
  sel.removeSeqs(removed.map((r) => r.seq));
  return expungeResponses(removed, s.enabled.has('QRESYNC'));
}

const SYSTEM = new Map(['\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft'].map((f) => [f.toLowerCase(), f]));
/** flag-keyword = atom (RFC 9051 §9): no atom-specials, no "]". */
// eslint-disable-next-line no-control-regex
const KEYWORD = /^[^\u0000-\u0020\u007f-\uffff(){%*"\\\]]+$/;
const MAX_FLAG_LENGTH = 200;
const MAX_FLAGS = 100;

/** A flag of STORE's flag list (RFC 9051 §9 `flag`): a system flag or a keyword; \Recent and unknown \-flags are refused. */
function parseFlag(cmd: Command, t: Token): string {
  const text = t.kind === 'atom' || t.kind === 'number' || t.kind === 'nil' ? tokenText(t) : null;
  if (!text) throw bad(`${cmd.name}: expected a flag`);
  if (text.startsWith('\\')) {
    const sys = SYSTEM.get(text.toLowerCase());
    if (sys) return sys;
    if (text.toLowerCase() === '\\recent') throw bad(`${cmd.name}: \\Recent cannot be stored`);
    throw bad(`${cmd.name}: unknown system flag ${text.slice(0, 40)}`);
  }
  if (!KEYWORD.test(text) || text.length > MAX_FLAG_LENGTH) throw bad(`${cmd.name}: invalid keyword ${text.slice(0, 40)}`);
  return text;
}

interface StoreArgs {
  mode: StoreMode;
  silent: boolean;
  flags: string[];
  unchangedSince?: number;
}

/** store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag))); RFC 7162 store-modifiers before it. */
function parseStoreArgs(cmd: Command): StoreArgs {
  let i = 1;
  let unchangedSince: number | undefined;
  const mods = cmd.args[i];
  if (isList(mods)) {
    if (mods.items.length !== 2 || atomUpper(mods.items[0]) !== 'UNCHANGEDSINCE' || mods.items[1]!.kind !== 'number') {
      throw bad(`${cmd.name}: expected (UNCHANGEDSINCE modseq)`);
    }
    unchangedSince = mods.items[1].value;
    i++;
  }
  const item = atomUpper(cmd.args[i]);
  const m = item ? /^([+-]?)FLAGS(\.SILENT)?$/.exec(item) : null;
  if (!m) throw bad(`${cmd.name}: expected FLAGS, +FLAGS or -FLAGS`);
  const rest = cmd.args.slice(i + 1);
  let tokens: Token[];
  if (rest.length === 1 && isList(rest[0])) tokens = rest[0].items;
  else if (rest.length >= 1 && !rest.some((t) => isList(t))) tokens = rest;
  else throw bad(`${cmd.name}: expected a flag list`);
  if (tokens.length > MAX_FLAGS) throw bad(`${cmd.name}: too many flags`);
  const flags = tokens.map((t) => parseFlag(cmd, t));
  const out: StoreArgs = { mode: m[1] === '+' ? 'add' : m[1] === '-' ? 'remove' : 'set', silent: !!m[2], flags };
  if (unchangedSince !== undefined) out.unchangedSince = unchangedSince;
  return out;
}

async function store(s: ImapSession, cmd: Command, byUid: boolean): Promise<string> {
  if (cmd.args.length < 3) throw bad(`${cmd.name}: expected a sequence set, a FLAGS item and flags`);
  const args = parseStoreArgs(cmd);
  const targets = messagesOf(s, cmd, 0, byUid);
  const sel = requireWritable(s, cmd);
  // RFC 7162 §3.1: UNCHANGEDSINCE is a CONDSTORE enabling command (MODSEQ in FETCH responses from now on).
  if (args.unchangedSince !== undefined) s.enabled.add('CONDSTORE');
  if (!targets.length) return `${cmd.name} completed`;
  const r = await s.ctx.data.storeFlags(
    sel.info.id,
    targets.map((x) => x.m.uid),
    args.mode,
    args.flags,
    args.unchangedSince,
  );
  const condstore = s.enabled.has('CONDSTORE');
  let top = 0;
  const changed = new Map<number, number>();
  for (const res of r.messages) {
    if (!res.changed) continue;
    top = Math.max(top, res.modseq);
    changed.set(res.uid, res.modseq);
  }
  // The session's own view takes the change now, so its next sync does not report it
  // again: the view's new list when it is just this write on from the session's.
  const adopted = top > 0 && sel.adoptOwnStore(s.ctx.data.cachedMailboxView(sel.info.id, top), changed);
  for (const res of r.messages) {
    if (!res.changed) continue;
    const seq = sel.seqOf(res.uid);
    if (!seq) continue;
    let m: MessageUid;
    if (adopted) m = sel.messages[seq - 1]!;
    else {
      m = { ...sel.messages[seq - 1]!, flags: res.flags, modseq: res.modseq };
      sel.setMessage(seq, m);
    }
    // RFC 7162 §3.1.3: with CONDSTORE the FETCH (with MODSEQ) goes out even for .SILENT.
    if (args.silent && !condstore) continue;
    // RFC 7162 §3.2.4: once QRESYNC is enabled, FETCH responses for flag changes carry the UID too.
    const items = [...(byUid || s.enabled.has('QRESYNC') ? [`UID ${m.uid}`] : []), `FLAGS (${s.flagList(m).join(' ')})`, ...(condstore ? [`MODSEQ (${m.modseq})`] : [])];
    s.untagged(`* ${seq} FETCH (${items.join(' ')})`);
  }
  if (top) publishChange(s, sel.info.id, top);
  if (r.modified.length) {
    // RFC 7162 §3.1.3: the messages that failed UNCHANGEDSINCE, as UIDs for UID STORE, else sequence numbers.
    const ids = byUid ? r.modified : r.modified.map((u) => sel.seqOf(u)).filter((n) => n > 0);
    return `[MODIFIED ${formatSequenceSet(ids)}] Conditional ${cmd.name} failed`;
  }
  return `${cmd.name} completed`;
}

export const storeCommands: CommandSpec[] = [
  // RFC 9051 §7.5.1: no EXPUNGE responses while answering STORE (the client still uses its sequence numbers).
  { name: 'STORE', states: ['selected'], expungeSafe: false, run: (s, cmd) => store(s, cmd, false) },
  { name: 'UID STORE', states: ['selected'], run: (s, cmd) => store(s, cmd, true) },
];
