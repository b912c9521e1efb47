import type { Insertable } from 'kysely';
import type { QueueTable } from './schema.ts';

/** RFC 3461 parameters of one recipient, as received. */
export interface RecipientDsn {
  /** "NEVER" or a comma list of SUCCESS, FAILURE, DELAY. */
  notify?: string | null;
  /** "rfc822;addr" (decoded). */
  orcpt?: string | null;
}

/** What a message leaves in the outbound queue: one row per remote recipient. */
export interface QueueSpec {
  queueId: string;
  /** The envelope sender; '' for bounces (null sender). */
  sender: string;
  recipients: string[];
  /** RFC 3461 RET and ENVID of the transaction. */
  ret?: 'FULL' | 'HDRS' | null;
  envid?: string | null;
  /** Per recipient address (after alias expansion), when the client gave NOTIFY/ORCPT. */
  dsn?: Record<string, RecipientDsn>;
  /** Received with SMTPUTF8 (RFC 6531): pass it on. */
  smtputf8?: boolean;
}

/** The queue row values for each remote recipient of a new message. */
export function queueRows(q: QueueSpec, blobHash: string, t: number): Array<Insertable<QueueTable>> {
  return q.recipients.map((rcpt) => ({
    queue_id: q.queueId,
    sender: q.sender,
    recipient: rcpt,
    blob_hash: blobHash,
    status: 'active',
    attempts: 0,
    next_attempt: t,
    last_error: null,
    created_at: t,
    notify: q.dsn?.[rcpt]?.notify ?? null,
    orcpt: q.dsn?.[rcpt]?.orcpt ?? null,
    ret: q.ret ?? null,
    envid: q.envid ?? null,
    smtputf8: q.smtputf8 ? 1 : 0,
  }));
}
