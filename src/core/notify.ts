import crypto from 'node:crypto';
import type { Context } from './context.ts';
import { rfc5322Date, newQueueId } from '../smtp/received.ts';

/** Header text is ours, but guard against anything that could split a header line. */
function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

/**
 * Delivers a message the server itself writes (notices, DSNs) through the one
 * ingest path, with the null sender: local recipients get it in their INBOX, a
 * remote address is queued. 'unknown' when the address is a local one nobody
 * receives (the caller logs how to fix it).
 */
export async function deliverFromServer(ctx: Context, to: string, message: Buffer): Promise<'delivered' | 'queued' | 'unknown'> {
  const resolution = await ctx.directory.resolve(to);
  const accounts = resolution.kind === 'deliver' ? resolution.accounts : [];
  const remote = resolution.kind === 'non-local' ? [to] : resolution.kind === 'deliver' ? resolution.remote : [];
  if (!accounts.length && !remote.length) return 'unknown';
  await ctx.ingest.ingestBuffer(message, {
    deliveries: accounts.map((a) => ({ accountId: a.id, mailbox: 'INBOX' })),
    queue: remote.length ? { queueId: newQueueId(), sender: '', recipients: remote } : null,
    internalDate: ctx.now(),
  });
  return accounts.length ? 'delivered' : 'queued';
}

/**
 * Delivers a short plain-text message from the server itself (ban notices; later
 * quota warnings, delay notices) through the one ingest path: local recipients get
 * it in their INBOX, a remote address is queued. Returns where it went; 'unknown'
 * when the address is a local one nobody receives (the caller logs how to fix it).
 */
export async function sendSystemMessage(ctx: Context, to: string, subject: string, body: string): Promise<'delivered' | 'queued' | 'unknown'> {
  const now = new Date(ctx.now());
  const from = `MAILER-DAEMON@${ctx.config.hostname}`;
  const text =
    `Return-Path: <>\r\n` +
    `From: Postern <${from}>\r\n` +
    `To: <${oneLine(to)}>\r\n` +
    `Subject: ${oneLine(subject)}\r\n` +
    `Date: ${rfc5322Date(now)}\r\n` +
    `Message-ID: <${crypto.randomUUID()}@${ctx.config.hostname}>\r\n` +
    // RFC 3834 §5: machine-generated, so auto-responders must not answer it.
    `Auto-Submitted: auto-generated\r\n` +
    `MIME-Version: 1.0\r\n` +
    `Content-Type: text/plain; charset=utf-8\r\n` +
    `Content-Transfer-Encoding: 8bit\r\n` +
    `\r\n` +
    body.replace(/\r?\n/g, '\r\n');
  return deliverFromServer(ctx, to, Buffer.from(text, 'utf8'));
}
