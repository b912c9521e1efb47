import type { Context } from '../core/context.ts';
import { deliverFromServer } from '../core/notify.ts';
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
  const message = buildDsn({ ...input, hostname: ctx.config.hostname });
  const where = await deliverFromServer(ctx, input.to, Buffer.concat([Buffer.from('Return-Path: <>\r\n'), message]));
  if (where === 'unknown') {
    ctx.log.warn({ queue: input.queueId, to: input.to }, 'delivery status notification dropped: the sender address is local but nobody receives it');
    return 'dropped';
  }
  ctx.log.info({ queue: input.queueId, to: input.to, actions: [...new Set(input.recipients.map((r) => r.action))] }, 'delivery status notification sent');
  return where;
}

/** The stored message opens with our Return-Path (RFC 5321 §4.4: added at final delivery only); relays must not send it. */
export function withoutReturnPath(message: Buffer): Buffer {
  if (!/^return-path:/i.test(message.subarray(0, 12).toString('latin1'))) return message;
  const eol = message.indexOf('\r\n');
  return eol < 0 ? message : message.subarray(eol + 2);
}
