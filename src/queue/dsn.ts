import crypto from 'node:crypto';
import { rfc5322Date } from '../smtp/received.ts';

/**
 * Delivery status notifications (RFC 3464) in a multipart/report (RFC 6522): what
 * the delivery agent sends to the envelope sender when recipients fail for good,
 * are delayed, or (NOTIFY=SUCCESS, RFC 3461) were delivered. Always sent with the
 * null sender (RFC 5321 §4.5.5) so a failing bounce never bounces again.
 */
export interface DsnRecipient {
  /** The address we tried (Final-Recipient). */
  recipient: string;
  /** RFC 3461 ORCPT as given at submission, e.g. "rfc822;bob@example.org". */
  originalRecipient?: string | null;
  action: 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded';
  /** RFC 3463 status, e.g. "5.1.1". */
  status: string;
  /** The remote host that answered, if any. */
  remoteMta?: string | null;
  /** The remote reply, e.g. "550 5.1.1 <bob@example.org>: user unknown". */
  diagnostic?: string | null;
  lastAttempt?: Date | null;
  /** For "delayed": when we give up. */
  willRetryUntil?: Date | null;
}

export interface DsnInput {
  /** Our host name (Reporting-MTA, From). */
  hostname: string;
  queueId: string;
  /** The envelope sender being notified. */
  to: string;
  arrival: Date;
  now: Date;
  /** RFC 3461 ENVID. */
  envid?: string | null;
  recipients: DsnRecipient[];
  /** The original message (CRLF). */
  original: Buffer;
  /** RFC 3461 RET: the whole message or only its header. */
  ret: 'FULL' | 'HDRS';
  /** Larger originals are returned as headers only, like Postfix's bounce_size_limit (50 000 bytes). */
  fullLimit?: number;
}

/** Field values we write must stay on one line (addresses and remote replies are foreign data). */
function line(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').slice(0, 990);
}

function headerOf(message: Buffer): Buffer {
  const end = message.indexOf('\r\n\r\n');
  return end < 0 ? message : message.subarray(0, end + 2);
}

const EXPLAIN: Record<DsnRecipient['action'], string> = {
  failed: 'could not be delivered to the following recipient(s); this is a permanent error',
  delayed: 'has not been delivered yet to the following recipient(s); delivery is still being tried',
  delivered: 'was delivered to the following recipient(s)',
  relayed: 'was passed on to a system that does not send delivery notifications, for the following recipient(s)',
  expanded: 'was delivered to the following alias(es), which forward it further',
};

export function buildDsn(d: DsnInput): Buffer {
  const boundary = `postern-dsn-${crypto.randomBytes(9).toString('base64url')}`;
  const actions = new Set(d.recipients.map((r) => r.action));
  const subject = actions.has('failed')
    ? 'Undelivered Mail Returned to Sender'
    : actions.has('delayed')
      ? 'Delayed Mail (still being retried)'
      : 'Successful Mail Delivery Report';

  const human = [
    `This is the mail system at ${d.hostname}.`,
    '',
    ...[...actions].flatMap((a) => [
      `Your message ${EXPLAIN[a]}:`,
      '',
      ...d.recipients.filter((r) => r.action === a).map((r) => `  <${line(r.recipient)}>${r.diagnostic ? `: ${line(r.diagnostic)}` : ''}${r.remoteMta ? ` (from ${line(r.remoteMta)})` : ''}`),
      '',
    ]),
    ...(actions.has('delayed') && d.recipients.some((r) => r.willRetryUntil)
      ? [`Delivery will be tried until ${rfc5322Date(d.recipients.find((r) => r.willRetryUntil)!.willRetryUntil!)}; you need not send it again.`, '']
      : []),
    `Queue id: ${d.queueId}`,
    '',
  ].join('\r\n');

  // RFC 3464 §2.2: per-message fields, then §2.3: one block per recipient.
  const perMessage = [
    `Reporting-MTA: dns; ${line(d.hostname)}`,
    `X-Postern-Queue-ID: ${d.queueId}`,
    ...(d.envid ? [`Original-Envelope-Id: ${line(d.envid)}`] : []),
    `Arrival-Date: ${rfc5322Date(d.arrival)}`,
  ].join('\r\n');
  const perRecipient = d.recipients.map((r) =>
    [
      `Final-Recipient: rfc822; ${line(r.recipient)}`,
      ...(r.originalRecipient ? [`Original-Recipient: ${line(r.originalRecipient)}`] : []),
      `Action: ${r.action}`,
      `Status: ${line(r.status)}`,
      ...(r.remoteMta ? [`Remote-MTA: dns; ${line(r.remoteMta)}`] : []),
      ...(r.diagnostic ? [`Diagnostic-Code: smtp; ${line(r.diagnostic)}`] : []),
      ...(r.lastAttempt ? [`Last-Attempt-Date: ${rfc5322Date(r.lastAttempt)}`] : []),
      ...(r.willRetryUntil ? [`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`] : []),
    ].join('\r\n'),
  );

  const full = d.ret === 'FULL' && d.original.length <= (d.fullLimit ?? 50_000);
  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${d.hostname}>`,
    `To: <${line(d.to)}>`,
    `Subject: ${subject}`,
    `Date: ${rfc5322Date(d.now)}`,
    `Message-ID: <${d.queueId}.dsn.${crypto.randomBytes(6).toString('hex')}@${d.hostname}>`,
    // RFC 3834 §5: DSNs are auto-replied; auto-responders must not answer them.
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated delivery status notification (RFC 3464).',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    human,
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    [perMessage, ...perRecipient].join('\r\n\r\n'),
    '',
    `--${boundary}`,
    full ? 'Content-Type: message/rfc822' : 'Content-Type: text/rfc822-headers',
    '',
    '',
  ].join('\r\n');
  const returned = full ? d.original : headerOf(d.original);
  const tail = `${returned.subarray(-2).toString() === '\r\n' ? '' : '\r\n'}\r\n--${boundary}--\r\n`;
  return Buffer.concat([Buffer.from(head, 'utf8'), returned, Buffer.from(tail, 'utf8')]);
}
