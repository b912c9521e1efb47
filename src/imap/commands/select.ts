import { SelectedMailbox } from '../selected.ts';
import type { DataStore } from '../../store/data-store.ts';

/** Per store (one per process): the highest UID per mailbox some session was told about (\\Recent). */
const watermarks = new WeakMap<DataStore, Map<number, number>>();
function recentWatermarks(s: ImapSession): Map<number, number> {
  let m = watermarks.get(s.ctx.data);
  if (!m) watermarks.set(s.ctx.data, (m = new Map()));
  return m;
}
import { argCount, mailboxName, encodeName } from '../args.ts';
import { no } from '../errors.ts';
import { quoted } from '../writer.ts';
import type { ImapSession } from '../session.ts';
import type { Command } from '../parser.ts';
import type { CommandSpec } from './index.ts';

/** SELECT / EXAMINE (RFC 9051 §6.3.2, §6.3.3), CLOSE (§6.4.1), UNSELECT (RFC 3691). */

const SYSTEM = '\\Answered \\Flagged \\Deleted \\Seen \\Draft';

async function open(s: ImapSession, cmd: Command, readOnly: boolean): Promise<string> {
  argCount(cmd, 1);
  const name = mailboxName(s, cmd, 0);
  // RFC 9051 §6.3.2: a failed SELECT leaves no mailbox selected.
  if (s.selected) {
    s.selected = null;
    s.state = 'authenticated';
    s.untagged('* OK [CLOSED] Previous mailbox closed');
  }
  const info = await s.ctx.data.getMailbox(s.account!.id, name);
  if (!info) throw no(`Mailbox does not exist: ${name}`, 'NONEXISTENT');
  const messages = await s.ctx.data.listMessageUids(info.id);
  const sel = new SelectedMailbox(info, messages, readOnly, recentWatermarks(s));
  s.selected = sel;
  s.state = 'selected';
  const keywords = new Set<string>();
  for (const m of messages) for (const f of m.flags) if (!f.startsWith('\\')) keywords.add(f);
  const flags = [SYSTEM, ...[...keywords].slice(0, 200)].join(' ');
  s.untagged(`* ${sel.exists} EXISTS`);
  if (!s.rev2) s.untagged(`* ${sel.recentCount} RECENT`);
  s.untagged(`* FLAGS (${flags})`);
  s.untagged(`* OK [PERMANENTFLAGS (${readOnly ? '' : `${flags} \\*`})] Flags permitted`);
  if (!s.rev2) {
    const firstUnseen = messages.findIndex((m) => !m.flags.includes('\\Seen'));
    if (firstUnseen >= 0) s.untagged(`* OK [UNSEEN ${firstUnseen + 1}] First unseen`);
  }
  s.untagged(`* OK [UIDVALIDITY ${info.uidvalidity}] UIDs valid`);
  s.untagged(`* OK [UIDNEXT ${sel.uidnext}] Predicted next UID`);
  if (s.rev2) s.untagged(`* LIST () "/" ${quoted(encodeName(s, info.name), { utf8: s.utf8 })?.toString() ?? `"${info.name}"`}`);
  return `[${readOnly ? 'READ-ONLY' : 'READ-WRITE'}] ${readOnly ? 'EXAMINE' : 'SELECT'} completed`;
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
