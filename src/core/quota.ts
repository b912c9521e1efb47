import type { DataStore } from '../store/data-store.ts';

/**
 * A user's quota: the limit (accounts.quota_bytes) and what all their mailboxes use. IMAP reports
 * it (RFC 9208, src/imap/commands/quota.ts) and enforces it on APPEND/COPY; SMTP/LMTP refuse a
 * recipient whose mailbox is full (src/smtp/server.ts).
 */
export interface QuotaUsage {
  /** Octets allowed; null: no limit. */
  limitBytes: number | null;
  /** Octets used by all messages of the account (all mailboxes). */
  bytes: number;
  messages: number;
}

/** The account's limit (accounts.quota_bytes) and usage (the mailbox list's sizes and counts). */
export async function accountQuota(data: DataStore, accountId: number): Promise<QuotaUsage> {
  const limit = await data.accountQuotaBytes(accountId);
  const mailboxes = await data.listMailboxes(accountId);
  let bytes = 0;
  let messages = 0;
  for (const m of mailboxes) {
    bytes += Number(m.size);
    messages += Number(m.messages);
  }
  return { limitBytes: limit, bytes, messages };
}


/**
 * The usage when adding `addBytes` would take the account over its limit, else null. An account
 * without a limit costs one indexed read (the usage is not summed). A check before the write, not
 * a lock: two concurrent additions may together go slightly over (as in Dovecot).
 */
export async function overQuota(data: DataStore, accountId: number, addBytes: number): Promise<QuotaUsage | null> {
  if ((await data.accountQuotaBytes(accountId)) === null) return null;
  const q = await accountQuota(data, accountId);
  return q.limitBytes !== null && q.bytes + addBytes > q.limitBytes ? q : null;
}
