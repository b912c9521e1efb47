import type { Context } from '../core/context.ts';
import { newQueueId } from '../smtp/received.ts';
import { buildDsn, type DsnInput } from './dsn.ts';

/**
 * Sends a delivery status notification to a message's envelope sender, through the
 * one ingest path: a local sender gets it in their INBOX, a remote one is queued
 * with the null sender (RFC 5321 §4.5.5: MAIL FROM:<>), so a DSN that cannot be
 * delivered is dropped instead of bouncing again. Resolves once it is stored
 * (fsynced): callers remove the failed recipients from the queue only after that.
 */
export async function sendDsn(ctx: Context, input: Omit<DsnInput, 'hostname'>): Promise<'delivered' | 'queued' | 'dropped'> {
  // RFC 3461 §6.2 / RFC 5321 §4.5.5: never a notification about a notification.
  if (!input.to) return 'dropped';
  const resolution = await ctx.directory.resolve(input.to);
  const accounts = resolution.kind === 'deliver' ? resolution.accounts : [];
  const remote = resolution.kind === 'non-local' ? [input.to] : resolution.kind === 'deliver' ? resolution.remote : [];
  if (!accounts.length && !remote.length) {
    ctx.log.warn({ queue: input.queueId, to: input.to }, 'delivery status notification dropped: the sender address is local but nobody receives it');
    return 'dropped';
  }
  const message = buildDsn({ ...input, hostname: ctx.config.hostname });
  const queueId = newQueueId();
  await ctx.ingest.ingestBuffer(Buffer.concat([Buffer.from('Return-Path: <>\r\n'), message]), {
    deliveries: accounts.map((a) => ({ accountId: a.id, mailbox: 'INBOX' })),
    queue: remote.length ? { queueId, sender: '', recipients: remote } : null,
    internalDate: ctx.now(),
  });
  ctx.log.info({ queue: input.queueId, dsn_queue: queueId, to: input.to, actions: [...new Set(input.recipients.map((r) => r.action))] }, 'delivery status notification sent');
  return accounts.length ? 'delivered' : 'queued';
}
