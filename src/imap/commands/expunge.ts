import { argCount } from '../args.ts';
import type { Command } from '../parser.ts';
import type { ImapSession } from '../session.ts';
import { messagesOf, publishChange, removeFromView, requireWritable } from './store.ts';
import type { CommandSpec } from './index.ts';

/** EXPUNGE (RFC 9051 §6.4.3), UID EXPUNGE (RFC 4315 §2.1), CHECK (RFC 3501 §6.4.1). */

async function expunge(s: ImapSession, cmd: Command, byUid: boolean): Promise<string> {
  argCount(cmd, byUid ? 1 : 0);
  // UID EXPUNGE: only the named messages among the \Deleted ones (UIDs not in the view are ignored).
  const uids = byUid ? messagesOf(s, cmd, 0, true).map((x) => x.m.uid) : undefined;
  const sel = requireWritable(s, cmd);
  if (uids && !uids.length) return done(s, cmd);
  const r = await s.ctx.data.expunge(sel.info.id, uids);
  if (r.expunged.length) publishChange(s, sel.info.id, r.expunged.at(-1)!.modseq);
  // RFC 9051 §7.5.1: one EXPUNGE per message, each number valid when the client reads it (VANISHED with QRESYNC).
  for (const line of removeFromView(s, sel, r.expunged.map((e) => e.uid))) s.untagged(line);
  return done(s, cmd);
}

/**
 * RFC 7162 §3.2.7, §3.2.9: with QRESYNC the tagged OK of EXPUNGE and UID EXPUNGE
 * carries the mailbox's HIGHESTMODSEQ (expunges change it, and VANISHED does not
 * say to what). The pending changes go out first, so the value covers only what
 * the client has been told.
 */
async function done(s: ImapSession, cmd: Command): Promise<string> {
  if (!s.enabled.has('QRESYNC') || !s.selected) return `${cmd.name} completed`;
  s.selected.markDirty();
  await s.flushUpdates(true);
  return `[HIGHESTMODSEQ ${s.selected.highestModseq}] ${cmd.name} completed`;
}

export const expungeCommands: CommandSpec[] = [
  { name: 'EXPUNGE', states: ['selected'], run: (s, cmd) => expunge(s, cmd, false) },
  { name: 'UID EXPUNGE', states: ['selected'], run: (s, cmd) => expunge(s, cmd, true) },
  {
    // RFC 3501 §6.4.1 (gone in IMAP4rev2): a checkpoint; the store is always durable, so NOOP.
    name: 'CHECK',
    states: ['selected'],
    async run(s, cmd) {
      argCount(cmd, 0);
    },
  },
];
