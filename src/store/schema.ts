import type { ColumnType, Generated } from 'kysely';

/**
 * Table types for the query layer (kysely). One schema serves every backend;
 * migrations.ts creates it. Timestamps are milliseconds since the epoch.
 *
 * Model, with IMAP CONDSTORE/QRESYNC (RFC 7162) and JMAP /changes (RFC 8620 §5.2) in view:
 * - every account has one modseq counter; every change to the account (a message
 *   added, flagged, moved or expunged; a mailbox created/renamed/deleted) takes the
 *   next value and is written to `changes`. A mailbox's HIGHESTMODSEQ is the highest
 *   modseq of a change in it; a JMAP state string is the account's modseq.
 * - a row in `messages` is one message in one mailbox (an IMAP UID); its id is stable
 *   across MOVE, so it can serve as the JMAP Email id.
 * - blobs are content-addressed and shared (one copy for many recipients).
 */
export interface DomainsTable {
  name: string;
  created_at: number;
}

export interface AccountsTable {
  id: Generated<number>;
  email: string;
  password_hash: string | null;
  /** "{SCRAM-SHA-256}iter,salt,StoredKey,ServerKey" (migration 0006). */
  scram_sha256: string | null;
  display_name: string | null;
  quota_bytes: number | null;
  enabled: number;
  modseq: number;
  created_at: number;
  /**
   * The last UIDVALIDITY given to a mailbox created or renamed by IMAP (migration
   * 0008): a mailbox recreated under an old name never gets an old UIDVALIDITY
   * back (RFC 9051 §2.3.1.1), even within the same second.
   */
  last_uidvalidity: Generated<number>;
}

export interface AliasesTable {
  id: Generated<number>;
  address: string;
  target: string;
  created_at: number;
}

export interface MailboxesTable {
  id: Generated<number>;
  account_id: number;
  name: string;
  special_use: string | null;
  uidvalidity: number;
  uidnext: number;
  highestmodseq: number;
  subscribed: number;
  created_at: number;
}

export interface BlobsTable {
  hash: string;
  size: number;
  /** JSON of the MIME index (envelope, structure, offsets), without the search text. */
  meta: string;
  /** The message itself when it is small (store.inline_max_size); else it is a file. */
  data: Buffer | null;
  created_at: number;
}

export interface MessagesTable {
  id: Generated<number>;
  account_id: number;
  mailbox_id: number;
  uid: number;
  modseq: number;
  blob_hash: string;
  size: number;
  internal_date: number;
  /** IMAP flags and keywords, space-separated. */
  flags: string;
  subject: string;
  from_addr: string;
  date_header: number | null;
  message_id: string | null;
}

export interface ChangesTable {
  id: Generated<number>;
  account_id: number;
  modseq: number;
  mailbox_id: number | null;
  message_id: number | null;
  uid: number | null;
  /** 'add' | 'flags' | 'expunge' | 'mailbox' */
  kind: string;
  created_at: number;
}

/** Outbound queue: one row per remote recipient (delivery comes with the queue manager). */
export interface QueueTable {
  id: Generated<number>;
  queue_id: string;
  sender: string;
  recipient: string;
  blob_hash: string;
  status: string;
  attempts: number;
  next_attempt: number;
  last_error: string | null;
  created_at: number;
  /** While status = 'sending': the claiming node's lease (ms since epoch). */
  lease_until: number | null;
  /** The node holding the lease (migration 0007). */
  lease_owner: Generated<string | null>;
  /** RFC 3461: "NEVER" or a comma list of SUCCESS, FAILURE, DELAY; null: not given (FAILURE,DELAY). */
  notify: Generated<string | null>;
  /** RFC 3461 ORCPT, "rfc822;addr" (xtext decoded). */
  orcpt: Generated<string | null>;
  /** RFC 3461 RET: 'FULL' | 'HDRS'; null: not given. */
  ret: Generated<string | null>;
  envid: Generated<string | null>;
  /** The message was received with SMTPUTF8 (RFC 6531). */
  smtputf8: Generated<number>;
  /** A delay warning DSN was sent for this recipient. */
  warned: Generated<number>;
}

/**
 * IMAP subscriptions (RFC 9051 §6.3.7) to names with no mailbox (migration 0008):
 * a subscription outlives its mailbox and may precede it. An existing mailbox's
 * subscription is its `subscribed` column; a name moves between the two when its
 * mailbox is created or deleted.
 */
export interface SubscriptionsTable {
  account_id: number;
  name: string;
}

/**
 * Spam filter training signals (migration 0009): a user's own judgement of a
 * message — moved into Junk ('spam') or out of it ('ham') — kept for the learning
 * filter to consume. `source` says where it came from ('imap', 'jmap', 'cli').
 */
export interface TrainingSignalsTable {
  id: Generated<number>;
  account_id: number;
  blob_hash: string;
  verdict: 'spam' | 'ham';
  source: string;
  created_at: number;
}

/** An access rule (src/policy/access.ts): scope '' is everyone's, else a user's address. */
export interface AccessRulesTable {
  id: Generated<number>;
  scope: string;
  kind: 'client' | 'sender' | 'recipient';
  value: string;
  action: 'reject' | 'accept';
  created_at: number;
}

/** Bayes token statistics (migration 0011; src/policy/content/bayes.ts): scope '' is global, else an account's address. */
export interface BayesTokensTable {
  scope: string;
  /** First 8 bytes of the token's SHA-1, hex. */
  token: string;
  spam_count: number;
  ham_count: number;
}

export interface BayesTotalsTable {
  scope: string;
  spam_messages: number;
  ham_messages: number;
}

/** What a message (by blob hash, or SHA-256 of a trained file) was learned as, per scope. */
export interface BayesSeenTable {
  scope: string;
  blob_hash: string;
  verdict: 'spam' | 'ham';
  created_at: number;
}

export interface PolicyStateTable {
  kind: string;
  key: string;
  value: number;
  expires_at: number;
}

export interface Database {
  domains: DomainsTable;
  accounts: AccountsTable;
  aliases: AliasesTable;
  mailboxes: MailboxesTable;
  blobs: BlobsTable;
  search_pending: { hash: string };
  policy_state: PolicyStateTable;
  domain_admins: { domain: string; account_id: number };
  blob_chunks: { hash: string; seq: number; data: Buffer; created_at: number };
  messages: MessagesTable;
  changes: ChangesTable;
  queue: QueueTable;
  subscriptions: SubscriptionsTable;
  training_signals: TrainingSignalsTable;
  access_rules: AccessRulesTable;
  bayes_tokens: BayesTokensTable;
  bayes_totals: BayesTotalsTable;
  bayes_seen: BayesSeenTable;
  bayes_cursor: { name: string; value: number };
}

export type Timestamp = ColumnType<number, number, number>;
