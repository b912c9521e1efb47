import { SelectedMailbox } from '../selected.ts';
import { summaryOf } from '../../store/list-summary.ts';
import type { DataStore } from '../../store/data-store.ts';
import type { MessageUid } from '../../store/imap-model.ts';

/** Per store (one per process): the highest UID per mailbox some session was told about (\\Recent). */
const watermarks = new WeakMap<DataStore, Map<number, number>>();
function recentWatermarks(s: ImapSession): Map<number, number> {
  let m = watermarks.get(s.ctx.data);
  if (!m) watermarks.set(s.ctx.data, (m = new Map()));
  return m;
}
import { argCount, atomUpper, encodeName, isList, mailboxName } from '../args.ts';
import { bad, no } from '../errors.ts';
import { quoted } from '../writer.ts';
import { formatSequenceSet, inIntervals, parseSequenceSet, resolve, type SequenceSet } from '../sequence-set.ts';
import type { ImapSession } from '../session.ts';
import { tokenText, type Command, type Token } from '../parser.ts';
import type { CommandSpec } from './index.ts';

/**
 * SELECT / EXAMINE (RFC 9051 §6.3.2, §6.3.3) with RFC 7162 CONDSTORE and QRESYNC
 * parameters, CLOSE (§6.4.1), UNSELECT (RFC 3691).
 */

const SYSTEM = '\\Answered \\Flagged \\Deleted \\Seen \\Draft';

/** RFC 7162 §3.2.5: `QRESYNC (uidvalidity modseq [known-uids] [(seq-set uid-set)])`. */
interface QresyncParams {
  uidvalidity: number;
  modseq: number;
  /** Resolved against the mailbox later (`*` is its highest UID). */
  knownUids: SequenceSet | null;
}

interface SelectParams {
  condstore: boolean;
  qresync: QresyncParams | null;
}

function seqSetOf(t: Token | undefined, what: string): SequenceSet {
  const text = t && (t.kind === 'atom' || t.kind === 'number') ? tokenText(t) : null;
  const parsed = text ? parseSequenceSet(text, { allowSaved: false }) : null;
  if (!parsed?.ok) throw bad(`QRESYNC: expected ${what}`);
  return parsed.value;
}

/** select-params (RFC 4466 §2.1): `(CONDSTORE)` (RFC 7162 §3.1.8), `(QRESYNC (…))` (§3.2.5). */
function parseSelectParams(s: ImapSession, cmd: Command): SelectParams {
  const out: SelectParams = { condstore: false, qresync: null };
  const list = cmd.args[1];
  if (!list) return out;
  if (!isList(list) || !list.items.length) throw bad(`${cmd.name}: expected a parenthesized list of select parameters`);
  for (let i = 0; i < list.items.length; i++) {
    const name = atomUpper(list.items[i]);
    if (name === 'CONDSTORE') out.condstore = true;
    else if (name === 'QRESYNC') {
      // RFC 7162 §3.2.5: the QRESYNC parameter without ENABLE QRESYNC first is a BAD.
      if (!s.enabled.has('QRESYNC')) throw bad(`${cmd.name}: QRESYNC needs ENABLE QRESYNC first`);
      const p = list.items[++i];
      if (!isList(p) || p.items.length < 2 || p.items.length > 4) throw bad('QRESYNC: expected (uidvalidity modseq [known-uids] [(seq-set uid-set)])');
      const [v, m, ...rest] = p.items;
      if (v?.kind !== 'number' || v.value < 1) throw bad('QRESYNC: expected a UIDVALIDITY');
      if (m?.kind !== 'number') throw bad('QRESYNC: expected a mod-sequence');
      const q: QresyncParams = { uidvalidity: v.value, modseq: m.value, knownUids: null };
      let k = 0;
      if (rest[k] && !isList(rest[k])) q.knownUids = seqSetOf(rest[k++], 'a set of known UIDs');
      const match = rest[k++];
      if (match) {
        // Message sequence match data (§3.2.5.2): checked for syntax only. The change log keeps every
        // expunge, so VANISHED (EARLIER) is always exact and needs no guessing from it.
        if (!isList(match) || match.items.length !== 2) throw bad('QRESYNC: expected (known-sequence-set known-uid-set)');
        seqSetOf(match.items[0], 'a known sequence set');
        seqSetOf(match.items[1], 'a known UID set');
      }
      if (k < rest.length) throw bad('QRESYNC: too many parameters');
      out.qresync = q;
    } else throw bad(`${cmd.name}: unknown select parameter ${(name ?? '').slice(0, 30)}`.trim());
  }
  return out;
}

async function open(s: ImapSession, cmd: Command, readOnly: boolean): Promise<string> {
  argCount(cmd, 1, 2);
  const name = mailboxName(s, cmd, 0);
  const params = parseSelectParams(s, cmd);
  // RFC 9051 §6.3.2: a failed SELECT leaves no mailbox selected.
  if (s.selected) {
    s.selected = null;
    s.state = 'authenticated';
    s.untagged('* OK [CLOSED] Previous mailbox closed');
  }
  // One look: the row, and the view's shared list the session starts from.
  const found = await s.ctx.data.mailboxViewByName(s.account!.id, name);
  if (!found) throw no(`Mailbox does not exist: ${name}`, 'NONEXISTENT');
  const { info, messages, step } = found;
  const sel = new SelectedMailbox(info, messages, readOnly, recentWatermarks(s));
  s.selected = sel;
  s.state = 'selected';
  const { keywords, firstUnseen } = summaryOf(messages, step);
  const flags = [SYSTEM, ...keywords].join(' ');
  s.untagged(`* ${sel.exists} EXISTS`);
  if (!s.rev2) s.untagged(`* ${sel.recentCount} RECENT`);
  s.untagged(`* FLAGS (${flags})`);
  s.untagged(`* OK [PERMANENTFLAGS (${readOnly ? '' : `${flags} \\*`})] Flags permitted`);
  if (!s.rev2 && firstUnseen >= 0) s.untagged(`* OK [UNSEEN ${firstUnseen + 1}] First unseen`);
  s.untagged(`* OK [UIDVALIDITY ${info.uidvalidity}] UIDs valid`);
  s.untagged(`* OK [UIDNEXT ${sel.uidnext}] Predicted next UID`);
  // RFC 7162 §3.1.2.1: always, CONDSTORE enabled or not (every mailbox has mod-sequences); SELECT … (CONDSTORE) enables it.
  if (params.condstore) s.enabled.add('CONDSTORE');
  s.untagged(`* OK [HIGHESTMODSEQ ${sel.highestModseq}] Highest`);
  if (s.rev2) s.untagged(`* LIST () "/" ${quoted(encodeName(s, info.name), { utf8: s.utf8 })?.toString() ?? `"${info.name}"`}`);
  if (params.qresync && params.qresync.uidvalidity === info.uidvalidity) await resync(s, sel, params.qresync);
  return `[${readOnly ? 'READ-ONLY' : 'READ-WRITE'}] ${readOnly ? 'EXAMINE' : 'SELECT'} completed`;
}

/**
 * RFC 7162 §3.2.5.1: the client's cache of this mailbox is at `modseq` (same
 * UIDVALIDITY; with another one the parameter is ignored and the client starts
 * over). First `* VANISHED (EARLIER)` with the UIDs expunged since — of the known
 * UIDs when the client named them — then a FETCH (UID FLAGS MODSEQ) for every
 * message changed or added since. Both come from this session's fresh view, so
 * a message expunged while SELECT ran is still listed and reported later.
 */
async function resync(s: ImapSession, sel: SelectedMailbox, q: QresyncParams): Promise<void> {
  const ch = await s.ctx.data.changesSince(s.account!.id, sel.info.id, q.modseq);
  // With known UIDs, flag changes and expunges are reported for those messages only (§3.2.5.1).
  const known = q.knownUids ? resolve(q.knownUids, Math.max(sel.uidnext - 1, ch.vanished.at(-1) ?? 0)) : null;
  const isKnown = (uid: number) => !known || inIntervals(known, uid);
  const vanished = ch.vanished.filter((u) => !sel.seqOf(u) && isKnown(u));
  if (vanished.length) s.untagged(`* VANISHED (EARLIER) ${formatSequenceSet(vanished)}`);
  sel.messages.forEach((m, i) => {
    if (m.modseq > q.modseq && isKnown(m.uid)) s.untagged(s.flagsFetch(m, i + 1));
  });
}

export const selectCommands: CommandSpec[] = [
  { name: 'SELECT', states: ['authenticated', 'selected'], run: (s, cmd) => open(s, cmd, false) },
  { name: 'EXAMINE', states: ['authenticated', 'selected'], run: (s, cmd) => open(s, cmd, true) },
  {
    name: 'CLOSE',
    states: ['selected'],
    async run(s, cmd) {
      argCount(cmd, 0);
      const sel = s.selected!;
      s.selected = null;
      s.state = 'authenticated';
      // RFC 9051 §6.4.1: messages marked \Deleted are removed, silently.
      if (!sel.readOnly) {
        const r = await s.ctx.data.expunge(sel.info.id);
        if (r.expunged.length) s.ctx.pubsub.publish({ accountId: s.account!.id, mailboxId: sel.info.id, modseq: r.expunged.at(-1)!.modseq });
      }
    },
  },
  {
    name: 'UNSELECT',
    states: ['selected'],
    async run(s, cmd) {
      argCount(cmd, 0);
      s.selected = null;
      s.state = 'authenticated';
    },
  },
];
