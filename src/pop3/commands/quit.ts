import type { Pop3Session } from '../session.ts';
import type { CommandSpec } from './index.ts';

/**
 * RFC 1939 §6 QUIT and the UPDATE state. From AUTHORIZATION it just ends the
 * session. From TRANSACTION, the marked messages are removed and the retrieved ones
 * flagged \Seen (pop3.mark_seen) in one store transaction — committed and fsynced
 * before the +OK, logged as IMAP expunges and flag changes, and published so IMAP
 * sessions (IDLE included) see them — then the lock is released. A connection that
 * ends any other way never reaches this state: nothing is deleted.
 *
 * pop3.expire (RFC 2449 §6.7 EXPIRE): 0 also removes what this session retrieved;
 * N days also removes messages \Seen and unchanged for N days.
 */
async function update(s: Pop3Session): Promise<number> {
  const drop = s.maildrop!;
  const expunge = new Set(drop.deletedUids());
  const expire = s.cfg.expire;
  if (expire === 0) for (const uid of drop.retrievedUids()) expunge.add(uid);
  else if (expire !== 'never') {
    const old = new Set(await s.ctx.data.seenUnchangedSince(drop.mailbox.id, s.ctx.now() - expire * 86_400_000));
    // Only messages of this session's snapshot: mail that arrived since is for the next session to see.
    for (const m of drop.messages) if (old.has(m.uid)) expunge.add(m.uid);
  }
  const seen = s.cfg.mark_seen ? drop.newlySeenUids().filter((u) => !expunge.has(u)) : [];
  if (!expunge.size && !seen.length) return 0;
  const r = await s.ctx.data.pop3Update(drop.mailbox.id, [...expunge], seen);
  if (r.modseq !== null) s.ctx.pubsub.publish({ accountId: s.account!.id, mailboxId: drop.mailbox.id, modseq: r.modseq });
  return r.expunged.length;
}

export const quit: CommandSpec = {
  states: ['authorization', 'transaction'],
  async run(s) {
    if (s.state === 'authorization') {
      s.write('+OK Logging out\r\n');
      s.close();
      return;
    }
    s.state = 'update';
    let reply: string;
    try {
      const n = await update(s);
      s.stats.deleted = n;
      reply = `+OK Logging out${n ? `, ${n} message${n === 1 ? '' : 's'} deleted` : ''}\r\n`;
    } catch (e) {
      // RFC 1939 §6: "-ERR some deleted messages not removed"; nothing was (one transaction).
      s.log.error({ err: e, user: s.account?.email }, 'POP3 update failed: nothing deleted');
      reply = '-ERR [SYS/TEMP] Some deleted messages not removed, try again later\r\n';
    }
    // The next session may start the moment the client reads the reply.
    await s.releaseMaildrop();
    s.write(reply);
    s.close();
  },
};
