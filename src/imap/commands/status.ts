import { argCount, atomUpper, encodeName, isList, mailboxName } from '../args.ts';
import { bad, no } from '../errors.ts';
import { untagged } from '../writer.ts';
import type { Token } from '../parser.ts';
import type { ImapSession } from '../session.ts';
import type { MailboxInfo } from '../../store/imap-model.ts';
import type { CommandSpec } from './index.ts';

/**
 * STATUS (RFC 9051 §6.3.11; RFC 3501 §6.3.10 for RECENT; RFC 8438 SIZE;
 * RFC 7162 §3.1.6 HIGHESTMODSEQ; RFC 7889 APPENDLIMIT; RFC 9208 §4.4 DELETED-STORAGE). The same items serve
 * LIST … RETURN (STATUS (…)) (RFC 5819, list.ts).
 */

/** RFC 9051 §9 status-att, plus the extensions above. */
export const STATUS_ITEMS = ['MESSAGES', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN', 'DELETED', 'SIZE', 'RECENT', 'HIGHESTMODSEQ', 'APPENDLIMIT', 'DELETED-STORAGE'] as const;
export type StatusItem = (typeof STATUS_ITEMS)[number];

/** The parenthesized item list of STATUS or of LIST's STATUS return option; unknown items are BAD. */
export function parseStatusItems(command: string, t: Token | undefined): StatusItem[] {
  if (!isList(t) || t.items.length === 0) throw bad(`${command}: expected a parenthesized list of status items`);
  const out: StatusItem[] = [];
  for (const item of t.items) {
    const a = atomUpper(item);
    if (!a || !(STATUS_ITEMS as readonly string[]).includes(a)) throw bad(`${command}: unknown status item ${a ?? ''}`.trim());
    if (!out.includes(a as StatusItem)) out.push(a as StatusItem);
  }
  return out;
}

/** RFC 7162 §3.1: STATUS … HIGHESTMODSEQ is a CONDSTORE enabling command. */
export function noteCondstore(s: ImapSession, items: StatusItem[]): void {
  if (items.includes('HIGHESTMODSEQ')) s.enabled.add('CONDSTORE');
}

/** `* STATUS name (ITEM n …)` for one mailbox, as a response line with CRLF. */
export async function statusResponse(s: ImapSession, info: MailboxInfo, items: StatusItem[]): Promise<Buffer> {
  const values: string[] = [];
  for (const item of items) values.push(`${item} ${await statusValue(s, info, item)}`);
  return untagged(['STATUS', { astring: encodeName(s, info.name) }, `(${values.join(' ')})`], { utf8: s.utf8 });
}

async function statusValue(s: ImapSession, info: MailboxInfo, item: StatusItem): Promise<number> {
  switch (item) {
    case 'MESSAGES':
      return info.messages;
    case 'UIDNEXT':
      return info.uidnext;
    case 'UIDVALIDITY':
      return info.uidvalidity;
    case 'UNSEEN':
      return info.unseen;
    case 'SIZE':
      return info.size;
    case 'HIGHESTMODSEQ':
      // Never 0: CONDSTORE clients read 0 as "no mod-sequences" (SELECT reports at least 1 too).
      return Math.max(1, info.highestmodseq);
    case 'APPENDLIMIT':
      return s.ctx.config.smtp.max_message_size;
    case 'RECENT':
      // RFC 3501 §6.3.10; \Recent is tracked per session for the selected mailbox only.
      return s.selected && s.selected.info.id === info.id ? s.selected.recentCount : 0;
    case 'DELETED': {
      // RFC 9051 §6.3.11: messages with the \Deleted flag.
      const msgs = await s.ctx.data.listMessageUids(info.id);
      return msgs.reduce((n, m) => (m.flags.includes('\\Deleted') ? n + 1 : n), 0);
    }
    case 'DELETED-STORAGE': {
      // RFC 9208 §4.4: what EXPUNGE would free, in the STORAGE resource's unit (1024 octets,
      // rounded up like the usage in QUOTA responses).
      const msgs = await s.ctx.data.listMessageUids(info.id);
      const bytes = msgs.reduce((n, m) => (m.flags.includes('\\Deleted') ? n + m.size : n), 0);
      return Math.ceil(bytes / 1024);
    }
  }
}

export const statusCommands: CommandSpec[] = [
  {
    name: 'STATUS',
    states: ['authenticated', 'selected'],
    async run(s, cmd) {
      argCount(cmd, 2);
      const name = mailboxName(s, cmd, 0);
      const items = parseStatusItems(cmd.name, cmd.args[1]);
      const info = await s.ctx.data.getMailbox(s.account!.id, name);
      if (!info) throw no(`Mailbox does not exist: ${name}`, 'NONEXISTENT');
      noteCondstore(s, items);
      s.write(await statusResponse(s, info, items));
    },
  },
];
