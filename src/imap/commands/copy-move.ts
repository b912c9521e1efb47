import { argCount, mailboxName } from '../args.ts';
import { no } from '../errors.ts';
import { formatOrdered } from '../sequence-set.ts';
import type { Command } from '../parser.ts';
import type { ImapSession } from '../session.ts';
import type { CopyResult, MailboxInfo } from '../../store/imap-model.ts';
import { messagesOf, publishChange, removeFromView, requireWritable } from './store.ts';
import type { CommandSpec } from './index.ts';

/**
 * COPY / UID COPY (RFC 9051 §6.4.7) and MOVE / UID MOVE (RFC 6851), both with
 * UIDPLUS COPYUID (RFC 4315 §3). A missing target is NO [TRYCREATE].
 * Moving or copying into or out of the \Junk mailbox (RFC 6154) is recorded by
 * the store as a training signal for the spam filter (DataStore.recordTraining).
 */

/** The target mailbox, or NO [TRYCREATE] (RFC 9051 §6.4.7: the client may CREATE it and retry). */
async function target(s: ImapSession, cmd: Command): Promise<MailboxInfo> {
  const name = mailboxName(s, cmd, 1);
  const info = await s.ctx.data.getMailbox(s.account!.id, name);
  if (!info) throw no(`Mailbox does not exist: ${name}`, 'TRYCREATE');
  return info;
}

/** RFC 4315 §3: `COPYUID uidvalidity source-uids dest-uids`, the two sets pairing up in order. */
function copyUid(r: CopyResult): string {
  return `COPYUID ${r.uidvalidity} ${formatOrdered(r.pairs.map((p) => p[0]))} ${formatOrdered(r.pairs.map((p) => p[1]))}`;
}

/** A MailError NOT_FOUND from the store means the target went away meanwhile: TRYCREATE too. */
function tryCreate(err: unknown): never {
  if ((err as { code?: string }).code === 'NOT_FOUND') throw no('Mailbox does not exist', 'TRYCREATE');
  throw err;
}

async function copy(s: ImapSession, cmd: Command, byUid: boolean): Promise<string> {
  argCount(cmd, 2);
  const msgs = messagesOf(s, cmd, 0, byUid);
  const dst = await target(s, cmd);
  const sel = s.selected!;
  if (!msgs.length) return `${cmd.name} completed`;
  const r = await s.ctx.data.copyMessages(sel.info.id, msgs.map((x) => x.m.uid), dst.id).catch(tryCreate);
  if (!r.pairs.length) return `${cmd.name} completed`;
  publishChange(s, dst.id, await s.ctx.data.highestModseq(dst.id));
  return `[${copyUid(r)}] ${cmd.name} completed`;
}

async function move(s: ImapSession, cmd: Command, byUid: boolean): Promise<string> {
  argCount(cmd, 2);
  const msgs = messagesOf(s, cmd, 0, byUid);
  const sel = requireWritable(s, cmd);
  const dst = await target(s, cmd);
  if (dst.id === sel.info.id) throw no(`${cmd.name}: the message is in that mailbox already`, 'CANNOT');
  if (!msgs.length) return `${cmd.name} completed`;
  const r = await s.ctx.data.moveMessages(sel.info.id, msgs.map((x) => x.m.uid), dst.id).catch(tryCreate);
  if (!r.pairs.length) return `${cmd.name} completed`;
  const modseq = await s.ctx.data.highestModseq(dst.id);
  publishChange(s, sel.info.id, modseq);
  publishChange(s, dst.id, modseq);
  // RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGE responses (one VANISHED once QRESYNC is enabled, RFC 7162 §3.2.10).
  s.untagged(`* OK [${copyUid(r)}] Moved`);
  for (const line of removeFromView(s, sel, r.pairs.map((p) => p[0]))) s.untagged(line);
  return `${cmd.name} completed`;
}

export const copyMoveCommands: CommandSpec[] = [
  { name: 'COPY', states: ['selected'], run: (s, cmd) => copy(s, cmd, false) },
  { name: 'UID COPY', states: ['selected'], run: (s, cmd) => copy(s, cmd, true) },
  { name: 'MOVE', states: ['selected'], run: (s, cmd) => move(s, cmd, false) },
  { name: 'UID MOVE', states: ['selected'], run: (s, cmd) => move(s, cmd, true) },
];
