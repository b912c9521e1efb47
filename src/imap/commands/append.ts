import { bad, no } from '../errors.ts';
import { atomUpper, isList, mailboxName } from '../args.ts';
import type { Command, StreamToken, Token } from '../parser.ts';
import { formatSequenceSet } from '../sequence-set.ts';
import { normalizeFlags, SYSTEM_FLAGS } from '../../store/imap-model.ts';
import type { ImapSession } from '../session.ts';
import type { CommandSpec } from './index.ts';
import { assertQuota } from './quota.ts';

/**
 * APPEND (RFC 9051 §6.3.12) with RFC 3502 MULTIAPPEND (several messages, all or
 * none), RFC 4315 UIDPLUS `[APPENDUID uidvalidity uid-set]`, RFC 6855 `UTF8 (~{n})`
 * and RFC 3516 literal8. The message literals never reach this handler as bytes:
 * the reader streams each into its own ingest sink while it arrives (session.ts
 * readerEvent, `appendStreams` by stream index), so a large message is never held
 * in memory; here the sinks are committed through the one write path
 * (core/ingest.ts), which also publishes the change (other sessions, IDLE).
 * Size limits are the reader's (`NO [TOOBIG]`, RFC 7889).
 */

export interface AppendItem {
  flags: string[];
  /** ms since epoch; null: now. */
  internalDate: number | null;
  stream: StreamToken;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
/** RFC 9051 §9 flag-keyword is an atom: no atom-specials, no "]" either. */
const KEYWORD = /^[^\u0000-\u0020\u007f-\uffff(){%*"\\\]]+$/;
const MAX_FLAGS = 100;
/**
 * Messages in one MULTIAPPEND: each has its own open sink until the command ends
 * (up to 256 KiB buffered, then a temp file). session.ts should stop opening sinks
 * beyond this many; a message without a sink is answered NO [LIMIT].
 */
export const MAX_MULTIAPPEND = 100;

/**
 * RFC 9051 §9 date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
 * (a one-digit day is accepted without its leading space too). ms since epoch, or null.
 */
export function parseDateTime(s: string): number | null {
  const m = /^ ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(s);
  if (!m) return null;
  const month = MONTHS.indexOf(m[2]!.toLowerCase());
  const [day, year, hh, mm, ss, zh, zm] = [m[1], m[3], m[4], m[5], m[6], m[8], m[9]].map(Number) as [number, number, number, number, number, number, number];
  if (month < 0 || day < 1 || hh > 23 || mm > 59 || ss > 60 || zm > 59) return null;
  const local = Date.UTC(year, month, day, hh, mm, Math.min(ss, 59));
  if (new Date(local).getUTCDate() !== day) return null;
  const offset = (zh * 60 + zm) * 60_000 * (m[7] === '-' ? -1 : 1);
  return local - offset;
}

function flag(cmd: Command, t: Token): string {
  const text = t.kind === 'atom' && !t.section && !t.partial ? t.value : null;
  if (!text) throw bad(`${cmd.name}: expected a flag`);
  if (text.startsWith('\\')) {
    const system = SYSTEM_FLAGS.find((f) => f.toLowerCase() === text.toLowerCase());
    if (system) return system;
    // RFC 3501 allowed \Recent in the list; it is never stored.
    if (text.toLowerCase() === '\\recent') return '';
    throw bad(`${cmd.name}: unknown system flag ${text.slice(0, 40)}`);
  }
  if (!KEYWORD.test(text) || text.length > 200) throw bad(`${cmd.name}: invalid keyword ${text.slice(0, 40)}`);
  return text;
}

/** The messages of an APPEND after the mailbox name: 1*(SP [flag-list SP] [date-time SP] message-literal). */
export function parseAppendItems(cmd: Command): AppendItem[] {
  const items: AppendItem[] = [];
  const args = cmd.args;
  let i = 1;
  while (i < args.length) {
    let flags: string[] = [];
    let internalDate: number | null = null;
    let t = args[i];
    if (isList(t)) {
      if (t.items.length > MAX_FLAGS) throw bad(`${cmd.name}: too many flags`);
      flags = normalizeFlags(t.items.map((x) => flag(cmd, x)));
      t = args[++i];
    }
    if (t && t.kind === 'string') {
      const d = parseDateTime(t.value.toString('latin1'));
      if (d === null) throw bad(`${cmd.name}: invalid date-time "${t.value.toString('latin1').slice(0, 40)}"`);
      internalDate = d;
      t = args[++i];
    }
    const word = atomUpper(t);
    if (word === 'CATENATE') throw no(`${cmd.name}: CATENATE is not supported`, 'CANNOT');
    if (word === 'UTF8') {
      // RFC 6855 §4: UTF8 (literal8)
      const inner = args[++i];
      const s = isList(inner) && inner.items.length === 1 ? inner.items[0] : undefined;
      if (!s || s.kind !== 'stream') throw bad(`${cmd.name}: expected UTF8 (~{n}) with one literal8`);
      t = s;
    }
    if (!t || t.kind !== 'stream') throw bad(`${cmd.name}: expected a message literal`);
    items.push({ flags, internalDate, stream: t });
    if (items.length > MAX_MULTIAPPEND) throw no(`${cmd.name}: more than ${MAX_MULTIAPPEND} messages in one APPEND`, 'LIMIT');
    i++;
  }
  if (!items.length) throw bad(`${cmd.name}: expected a message literal`);
  return items;
}

async function append(s: ImapSession, cmd: Command): Promise<string> {
  if (!cmd.args.length) throw bad(`${cmd.name}: expected a mailbox name`);
  const name = mailboxName(s, cmd, 0);
  const items = parseAppendItems(cmd);
  const account = s.account!;
  // The selected mailbox needs no look at its row: the delivery finds it by name under
  // the lock, and one deleted or renamed meanwhile shows below as another mailbox id
  // (the delivery fell back to INBOX, or the name is another mailbox's now): undone, TRYCREATE.
  const sel = s.selected;
  const fromSelected = !!sel && sel.info.name === name;
  let info = fromSelected ? sel!.info : await s.ctx.data.getMailbox(account.id, name);
  // RFC 9051 §6.3.12: the client may CREATE it and try again.
  if (!info) throw no(`Mailbox does not exist: ${name}`, 'TRYCREATE');
  for (const it of items) {
    const a = s.appendStreams.get(it.stream.index);
    if (!a) throw no(`${cmd.name}: too many messages in one APPEND (at most ${MAX_MULTIAPPEND})`, 'LIMIT');
    if (a.size === 0 || a.sink.size === 0) throw no(`${cmd.name}: cannot store an empty message`);
  }
  // RFC 9208 §4.4: over the quota → NO [OVERQUOTA], nothing stored.
  await assertQuota(s.ctx.data, account.id, items.reduce((n, it) => n + s.appendStreams.get(it.stream.index)!.sink.size, 0), items.length);
  const uids: number[] = [];
  /** The mailbox's UIDVALIDITY under the delivery's lock, when the store says (SQLite's writer). */
  let uidvalidity: number | null = null;
  try {
    for (const it of items) {
      const a = s.appendStreams.get(it.stream.index)!;
      s.appendStreams.delete(it.stream.index);
      const r = await a.sink.commit({
        deliveries: [{ accountId: account.id, mailbox: info.name, flags: it.flags }],
        queue: null,
        internalDate: it.internalDate ?? s.ctx.now(),
      });
      const added = r.added.find((x) => x.accountId === account.id);
      if (!added) throw new Error('APPEND: the message was not added');
      if (added.mailboxId !== info.id) {
        // The selected mailbox was renamed and another one has its name now: that one is
        // the mailbox the client named.
        const now = fromSelected && !uids.length ? await s.ctx.data.getMailbox(account.id, name) : null;
        if (now?.id === added.mailboxId) info = now;
        else {
          // The mailbox went away meanwhile and the delivery fell back to INBOX: undo it.
          await undo(s, added.mailboxId, [added.uid]);
          throw no(`Mailbox does not exist: ${name}`, 'TRYCREATE');
        }
      }
      uids.push(added.uid);
      uidvalidity = added.view?.uidvalidity ?? null;
    }
  } catch (err) {
    // RFC 3502 §6.3.11: a MULTIAPPEND that fails appends none of its messages.
    if (uids.length) await undo(s, info.id, uids).catch((e: unknown) => s.log.error({ err: e }, 'APPEND: could not undo a partial MULTIAPPEND'));
    throw err;
  }
  // Else read again: a RENAME meanwhile gives the mailbox a new UIDVALIDITY.
  uidvalidity ??= (await s.ctx.data.getMailboxById(info.id))?.uidvalidity ?? info.uidvalidity;
  return `[APPENDUID ${uidvalidity} ${formatSequenceSet(uids)}] ${cmd.name} completed`;
}

/** Removes messages this APPEND added before it failed. */
async function undo(s: ImapSession, mailboxId: number, uids: number[]): Promise<void> {
  await s.ctx.data.storeFlags(mailboxId, uids, 'add', ['\\Deleted']);
  const r = await s.ctx.data.expunge(mailboxId, uids);
  if (r.expunged.length) s.ctx.pubsub.publish({ accountId: s.account!.id, mailboxId, modseq: r.expunged.at(-1)!.modseq });
}

export const appendCommands: CommandSpec[] = [{ name: 'APPEND', states: ['authenticated', 'selected'], run: append }];
