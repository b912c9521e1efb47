import { CompiledQuery, PostgresAdapter, sql, type Compilable, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { ChunkStore } from './blob-chunks.ts';
import type { AccessRulesTable, Database, QueueTable } from './schema.ts';

/** An access rule as the policy checks and the CLI see it. */
export type AccessRule = Pick<AccessRulesTable, 'scope' | 'kind' | 'value' | 'action'>;
import { queueRows, type QueueSpec } from './queue-rows.ts';

export type { QueueSpec, RecipientDsn } from './queue-rows.ts';
import {
  applyStore,
  compareMailboxNames,
  chunks,
  isSelfOrChild,
  normalizeFlags,
  normalizeMailboxName,
  parentNames,
  sameFlags,
  splitFlags,
  type ChangesSince,
  type CopyResult,
  type ExpungeResult,
  type MailboxInfo,
  type MessageUid,
  type StoreFlagsResult,
  type StoreMode,
  uidLowerBound,
} from './imap-model.ts';
import type { Insertable, Selectable as Row } from 'kysely';
import type { ChangesTable, MailboxesTable, MessagesTable } from './schema.ts';
import { MailboxViews, type MailboxRow, type MailboxView, type ViewStep } from './mailbox-views.ts';
import { summaryOf } from './list-summary.ts';
import type { ExpungeCandidates, ViewAdvance } from './sqlite/imap-writer.ts';
import type { SqliteReader } from './sqlite/open.ts';
export type { ChangesSince, CopyResult, ExpungeResult, MailboxInfo, MessageUid, StoreFlagsResult, StoreMode } from './imap-model.ts';
import { MailError } from '../core/errors.ts';
import * as bayes from './bayes-rows.ts';
import type { BayesTokenCounts, BayesTotals, BayesVerdict } from './bayes-rows.ts';

/** The mailboxes every new account gets, with their RFC 6154 special-use attributes. */
export const DEFAULT_MAILBOXES: ReadonlyArray<{ name: string; specialUse: string | null }> = [
  { name: 'INBOX', specialUse: null },
  { name: 'Drafts', specialUse: '\\Drafts' },
  { name: 'Sent', specialUse: '\\Sent' },
  { name: 'Junk', specialUse: '\\Junk' },
  { name: 'Trash', specialUse: '\\Trash' },
  { name: 'Archive', specialUse: '\\Archive' },
];

export interface Account {
  id: number;
  email: string;
  passwordHash: string | null;
  /** SCRAM-SHA-256 secret in Dovecot notation (auth/scram.ts), or null until derived. */
  scramSecret: string | null;
  displayName: string | null;
  enabled: boolean;
}

export interface QueueRow {
  id: number;
  queueId: string;
  sender: string;
  recipient: string;
  blobHash: string;
  /** 'active' (waiting, or deferred when attempts > 0), 'sending', 'hold'. */
  status: string;
  attempts: number;
  nextAttempt: number;
  lastError: string | null;
  createdAt: number;
  size: number | null;
}

export interface MessageRow {
  id: number;
  mailboxId: number;
  uid: number;
  modseq: number;
  blobHash: string;
  size: number;
  internalDate: number;
  flags: string[];
  subject: string;
  from: string;
  date: number | null;
  messageId: string | null;
}

/** One message to put into one mailbox (a delivery). */
export interface Delivery {
  accountId: number;
  /** Mailbox name; INBOX when absent. A missing mailbox falls back to INBOX. */
  mailbox?: string;
  flags?: string[];
}

export interface NewMessage {
  blobHash: string;
  size: number;
  /** The message bytes when stored inline (small messages); null when in a blob file. */
  blobData: Uint8Array | null;
  /** JSON of the MIME index, stored once per blob. */
  meta: string;
  searchText: string;
  internalDate: number;
  subject: string;
  from: string;
  date: number | null;
  messageId: string | null;
  deliveries: Delivery[];
  /** Remote recipients to queue for outbound delivery. */
  queue: QueueSpec | null;
}

export interface QueueEntry {
  id: number;
  queueId: string;
  sender: string;
  recipient: string;
  blobHash: string;
  attempts: number;
  leaseUntil: number;
  createdAt: number;
  lastError: string | null;
  notify: string | null;
  orcpt: string | null;
  ret: 'FULL' | 'HDRS' | null;
  envid: string | null;
  smtputf8: boolean;
  warned: boolean;
}

/** What became of a claimed entry after an attempt. */
export type QueueOutcome =
  | { id: number; kind: 'done' }
  | { id: number; kind: 'retry'; nextAttempt: number; error: string; warned?: boolean };

type QueueDbRow = Selectable<QueueTable>;

function queueEntry(r: QueueDbRow): QueueEntry {
  return {
    id: r.id,
    queueId: r.queue_id,
    sender: r.sender,
    recipient: r.recipient,
    blobHash: r.blob_hash,
    attempts: Number(r.attempts),
    leaseUntil: Number(r.lease_until),
    createdAt: Number(r.created_at),
    lastError: r.last_error,
    notify: r.notify,
    orcpt: r.orcpt,
    ret: r.ret === 'FULL' || r.ret === 'HDRS' ? r.ret : null,
    envid: r.envid,
    smtputf8: Number(r.smtputf8) === 1,
    warned: Number(r.warned) === 1,
  };
}


export interface AddedMessage {
  accountId: number;
  mailboxId: number;
  messageId: number;
  uid: number;
  modseq: number;
  /**
   * From SQLite's writer: the mailbox as the delivery found it (uidvalidity, the
   * HIGHESTMODSEQ before) and left it (uidnext), and the new row's fields, so the views
   * in memory take the message without reading it back (MailboxViews.advance).
   */
  view?: { uidvalidity: number; from: number; uidnext: number; flags: string[]; size: number; internalDate: number };
}

const now = () => Date.now();

const MAILBOX_COLUMNS = ['id', 'account_id', 'name', 'special_use', 'uidvalidity', 'uidnext', 'highestmodseq', 'subscribed'] as const;

function toMessageUid(r: { id: number; uid: number | bigint; modseq: number | bigint; flags: string; size: number | bigint; internal_date: number | bigint; blob_hash: string }): MessageUid {
  return {
    id: r.id,
    uid: Number(r.uid),
    modseq: Number(r.modseq),
    flags: splitFlags(r.flags),
    size: Number(r.size),
    internalDate: Number(r.internal_date),
    blobHash: r.blob_hash,
  };
}

/** SQLite's writer thread (sqlite/imap-writer.ts): STORE and EXPUNGE, with what they did to the mailbox's list. */
export interface FastImapWriter {
  storeFlags(mailboxId: number, uids: number[], mode: StoreMode, flags: string[], unchangedSince?: number): Promise<{ result: StoreFlagsResult; view: ViewAdvance }>;
  expunge(mailboxId: number, uids: number[] | null, seen: ExpungeCandidates | null): Promise<{ result: ExpungeResult; view: ViewAdvance }>;
}

/**
 * The data store: every SQL statement of Postern lives behind this class, written
 * once in kysely's query builder for every backend. Protocol code never sees SQL.
 */
export class DataStore implements ChunkStore {
  constructor(
    readonly db: Kysely<Database>,
    /** SQLite's full-text table (search_text) exists: SEARCH may prefilter with it (search-index.ts). */
    readonly hasFts: boolean,
    /** A backend's faster equivalent of addMessages (same semantics), if it has one. */
    private readonly fastWriter: { addMessages(batch: NewMessage[]): AddedMessage[][] | Promise<AddedMessage[][]> } | null = null,
    /** A backend's faster STORE and EXPUNGE (same semantics): SQLite's writer thread. */
    private readonly fastImap: FastImapWriter | null = null,
    /** A direct read-only connection for the precompiled lookups (sqlite/open.ts SqliteReader). */
    private readonly reader: SqliteReader | null = null,
  ) {}

  /**
   * How many delivery commits may be outstanding at once (core/group-commit.ts): the
   * SQLite writer thread takes batches as they come and groups them into its flushes;
   * elsewhere one batch commits after the other.
   */
  get deliveryCommitsInFlight(): number {
    return this.fastImap ? 16 : 1;
  }

  /**
   * A query built and compiled once, run with new parameters: the per-RCPT lookups
   * (domain, account, alias) otherwise spend more time in the query builder than in
   * the database. `build` must use placeholders in the order of `params`.
   */
  private precompiled<R>(build: (db: Kysely<Database>) => Compilable<R>): (...params: unknown[]) => Promise<R[]> {
    let text: string | null = null;
    return async (...params) => {
      text ??= build(this.db).compile().sql;
      if (this.reader) return this.reader.all(text, params) as R[];
      return (await this.db.executeQuery<R>(CompiledQuery.raw(text, params))).rows;
    };
  }

  /**
   * A SELECT given as SQL text with positional parameters (a query compiled once by
   * its caller, blob-batch.ts): on the server's read-only connection when there is
   * one, else through kysely.
   */
  async selectRows<R>(text: string, params: readonly unknown[]): Promise<R[]> {
    if (this.reader) return this.reader.all(text, params) as R[];
    return (await this.db.executeQuery<R>(CompiledQuery.raw(text, [...params]))).rows;
  }

  private qQuota = this.precompiled((db) => db.selectFrom('accounts').select('quota_bytes').where('id', '=', '?' as unknown as number));
  private qDomain = this.precompiled((db) => db.selectFrom('domains').select('name').where('name', '=', '?'));
  private qAccount = this.precompiled((db) => db.selectFrom('accounts').selectAll().where('email', '=', '?'));
  private qAliasTargets = this.precompiled((db) => db.selectFrom('aliases').select('target').where('address', '=', '?').orderBy('target'));

  /** Whether this store is on PostgreSQL (some SQL differs: JSON, locking). */
  get postgres(): boolean {
    return this.db.getExecutor().adapter instanceof PostgresAdapter;
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }

  // ---- large message chunks (blobs in the database; see blob-chunks.ts) ----

  async putChunk(key: string, seq: number, data: Buffer): Promise<void> {
    await this.db.insertInto('blob_chunks').values({ hash: key, seq, data, created_at: now() }).execute();
  }

  async installChunks(tmpKey: string, hash: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const stored = await trx.selectFrom('blob_chunks').select('seq').where('hash', '=', hash).limit(1).executeTakeFirst();
      if (stored) await trx.deleteFrom('blob_chunks').where('hash', '=', tmpKey).execute();
      else await trx.updateTable('blob_chunks').set({ hash }).where('hash', '=', tmpKey).execute();
    });
  }

  async deleteChunks(key: string): Promise<void> {
    await this.db.deleteFrom('blob_chunks').where('hash', '=', key).execute();
  }

  async chunk(hash: string, seq: number): Promise<Buffer | null> {
    return (await this.db.selectFrom('blob_chunks').select('data').where('hash', '=', hash).where('seq', '=', seq).executeTakeFirst())?.data ?? null;
  }

  /**
   * Chunks of messages whose upload was interrupted (a crash mid-DATA). Only old
   * ones: another node may be receiving a message right now.
   */
  async deleteAbandonedChunks(olderThanMs: number): Promise<number> {
    const r = await this.db.deleteFrom('blob_chunks').where('hash', 'like', 'tmp:%').where('created_at', '<', now() - olderThanMs).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  // ---- domains ----

  async addDomain(name: string): Promise<void> {
    const d = name.toLowerCase();
    const exists = await this.db.selectFrom('domains').select('name').where('name', '=', d).executeTakeFirst();
    if (exists) throw new MailError('ALREADY_EXISTS', `domain ${d} exists already`);
    await this.db.insertInto('domains').values({ name: d, created_at: now() }).execute();
  }

  async ensureDomain(name: string): Promise<void> {
    await this.db.insertInto('domains').values({ name: name.toLowerCase(), created_at: now() }).onConflict((oc) => oc.doNothing()).execute();
  }

  async deleteDomain(name: string): Promise<void> {
    const d = name.toLowerCase();
    const users = await this.db.selectFrom('accounts').select('email').where('email', 'like', `%@${d}`).limit(1).execute();
    if (users.length) throw new MailError('INVALID', `domain ${d} still has users (remove them first with \`postern user del\`)`);
    await this.db.deleteFrom('domain_admins').where('domain', '=', d).execute();
    const r = await this.db.deleteFrom('domains').where('name', '=', d).executeTakeFirst();
    if (!r.numDeletedRows) throw new MailError('NOT_FOUND', `no domain ${d}`);
  }

  async listDomains(): Promise<string[]> {
    return (await this.db.selectFrom('domains').select('name').orderBy('name').execute()).map((r) => r.name);
  }

  async isLocalDomain(name: string): Promise<boolean> {
    return (await this.qDomain(name.toLowerCase())).length > 0;
  }

  // ---- accounts ----

  async addAccount(email: string, passwordHash: string | null, scramSecret: string | null = null): Promise<Account> {
    const e = email.toLowerCase();
    const domain = e.slice(e.lastIndexOf('@') + 1);
    if (!(await this.isLocalDomain(domain))) {
      throw new MailError('INVALID', `${domain} is not a local domain (add it with \`postern domain add ${domain}\`)`);
    }
    return this.db.transaction().execute(async (trx) => {
      const existing = await trx.selectFrom('accounts').select('id').where('email', '=', e).executeTakeFirst();
      if (existing) throw new MailError('ALREADY_EXISTS', `user ${e} exists already`);
      const row = await trx
        .insertInto('accounts')
        .values({ email: e, password_hash: passwordHash, scram_sha256: scramSecret, display_name: null, quota_bytes: null, enabled: 1, modseq: 0, created_at: now() })
        .returning('id')
        .executeTakeFirstOrThrow();
      const uidvalidity = Math.floor(Date.now() / 1000);
      for (const mb of DEFAULT_MAILBOXES) {
        await trx
          .insertInto('mailboxes')
          .values({ account_id: row.id, name: mb.name, special_use: mb.specialUse, uidvalidity, uidnext: 1, highestmodseq: 0, subscribed: 1, created_at: now() })
          .execute();
      }
      return { id: row.id, email: e, passwordHash, scramSecret, displayName: null, enabled: true };
    });
  }

  async deleteAccount(email: string): Promise<void> {
    const r = await this.db.deleteFrom('accounts').where('email', '=', email.toLowerCase()).executeTakeFirst();
    if (!r.numDeletedRows) throw new MailError('NOT_FOUND', `no user ${email.toLowerCase()}`);
  }

  /** A new password: the hash, and its SCRAM secret (null: none until the next PLAIN/LOGIN login derives it). */
  async setPassword(email: string, passwordHash: string, scramSecret: string | null = null): Promise<void> {
    const r = await this.db
      .updateTable('accounts')
      .set({ password_hash: passwordHash, scram_sha256: scramSecret })
      .where('email', '=', email.toLowerCase())
      .executeTakeFirst();
    if (!r.numUpdatedRows) throw new MailError('NOT_FOUND', `no user ${email.toLowerCase()}`);
  }

  /** Adds the SCRAM secret of the current password (derived at a PLAIN/LOGIN login), unless the password changed meanwhile. */
  async setScramSecret(email: string, passwordHash: string, scramSecret: string): Promise<void> {
    await this.db.updateTable('accounts').set({ scram_sha256: scramSecret }).where('email', '=', email.toLowerCase()).where('password_hash', '=', passwordHash).execute();
  }

  async getAccount(email: string): Promise<Account | null> {
    const [r] = await this.qAccount(email.toLowerCase());
    return r ? { id: r.id, email: r.email, passwordHash: r.password_hash, scramSecret: r.scram_sha256, displayName: r.display_name, enabled: !!r.enabled } : null;
  }

  async listAccounts(): Promise<Array<{ email: string; messages: number; bytes: number }>> {
    const rows = await this.db
      .selectFrom('accounts as a')
      .leftJoin('messages as m', 'm.account_id', 'a.id')
      .select(['a.email', sql<number>`count(m.id)`.as('messages'), sql<number>`coalesce(sum(m.size), 0)`.as('bytes')])
      .groupBy('a.email')
      .orderBy('a.email')
      .execute();
    return rows.map((r) => ({ email: r.email, messages: Number(r.messages), bytes: Number(r.bytes) }));
  }

  // ---- domain administrators ----

  async setDomainAdmin(domain: string, email: string, admin: boolean): Promise<void> {
    const d = domain.toLowerCase();
    const account = await this.getAccount(email);
    if (!account) throw new MailError('NOT_FOUND', `no user ${email.toLowerCase()}`);
    if (!(await this.isLocalDomain(d))) throw new MailError('NOT_FOUND', `no domain ${d}`);
    if (admin) await this.db.insertInto('domain_admins').values({ domain: d, account_id: account.id }).onConflict((oc) => oc.doNothing()).execute();
    else await this.db.deleteFrom('domain_admins').where('domain', '=', d).where('account_id', '=', account.id).execute();
  }

  /** Domains this account administers. */
  async adminDomains(accountId: number): Promise<string[]> {
    const rows = await this.db.selectFrom('domain_admins').select('domain').where('account_id', '=', accountId).orderBy('domain').execute();
    return rows.map((r) => r.domain);
  }

  async listDomainAdmins(): Promise<Array<{ domain: string; email: string }>> {
    return this.db
      .selectFrom('domain_admins as d')
      .innerJoin('accounts as a', 'a.id', 'd.account_id')
      .select(['d.domain', 'a.email'])
      .orderBy('d.domain')
      .orderBy('a.email')
      .execute();
  }

  // ---- aliases ----

  async addAlias(address: string, targets: string[]): Promise<void> {
    const a = address.toLowerCase();
    await this.db
      .insertInto('aliases')
      .values(targets.map((t) => ({ address: a, target: t.toLowerCase(), created_at: now() })))
      .onConflict((oc) => oc.doNothing())
      .execute();
  }

  async deleteAlias(address: string, targets: string[]): Promise<number> {
    let q = this.db.deleteFrom('aliases').where('address', '=', address.toLowerCase());
    if (targets.length) q = q.where('target', 'in', targets.map((t) => t.toLowerCase()));
    const r = await q.executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async aliasTargets(address: string): Promise<string[]> {
    return (await this.qAliasTargets(address.toLowerCase())).map((r) => r.target);
  }

  async listAliases(): Promise<Array<{ address: string; targets: string[] }>> {
    const rows = await this.db.selectFrom('aliases').select(['address', 'target']).orderBy('address').orderBy('target').execute();
    const out = new Map<string, string[]>();
    for (const r of rows) out.set(r.address, [...(out.get(r.address) ?? []), r.target]);
    return [...out].map(([address, targets]) => ({ address, targets }));
  }

  // ---- mailboxes and messages ----

  async listMessages(accountId: number, mailbox: string): Promise<MessageRow[]> {
    const mb = await this.db.selectFrom('mailboxes').select('id').where('account_id', '=', accountId).where('name', '=', mailbox).executeTakeFirst();
    if (!mb) throw new MailError('NOT_FOUND', `no mailbox "${mailbox}"`);
    const rows = await this.db.selectFrom('messages').selectAll().where('mailbox_id', '=', mb.id).orderBy('uid').execute();
    return rows.map((r) => ({
      id: r.id,
      mailboxId: r.mailbox_id,
      uid: Number(r.uid),
      modseq: Number(r.modseq),
      blobHash: r.blob_hash,
      size: Number(r.size),
      internalDate: Number(r.internal_date),
      flags: r.flags ? r.flags.split(' ') : [],
      subject: r.subject,
      from: r.from_addr,
      date: r.date_header === null ? null : Number(r.date_header),
      messageId: r.message_id,
    }));
  }

  async countMessages(): Promise<number> {
    const r = await this.db.selectFrom('messages').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  async blobMeta(hash: string): Promise<string | null> {
    return (await this.db.selectFrom('blobs').select('meta').where('hash', '=', hash).executeTakeFirst())?.meta ?? null;
  }

  /** Sets a user's storage limit in octets (null: none); IMAP QUOTA reports it, APPEND/COPY and delivery enforce it. */
  async setQuota(email: string, bytes: number | null): Promise<void> {
    const r = await this.db.updateTable('accounts').set({ quota_bytes: bytes }).where('email', '=', email.toLowerCase()).executeTakeFirst();
    if (!r.numUpdatedRows) throw new MailError('NOT_FOUND', `no user ${email.toLowerCase()}`);
  }

  /** Quota and display name of an account (a directory user's, copied from LDAP: directory/account-rows.ts). */
  async setAccountProfile(accountId: number, quotaBytes: number | null, displayName: string | null): Promise<void> {
    await this.db.updateTable('accounts').set({ quota_bytes: quotaBytes, display_name: displayName }).where('id', '=', accountId).execute();
  }

  /** An account's storage limit in bytes (RFC 9208 STORAGE), null when it has none. */
  async accountQuotaBytes(accountId: number): Promise<number | null> {
    const [row] = await this.qQuota(accountId);
    return row?.quota_bytes === null || row?.quota_bytes === undefined ? null : Number(row.quota_bytes);
  }

  /** The MIME index JSON of many blobs in one query per 500 (IMAP FETCH of thousands of headers). */
  async blobMetas(hashes: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const unique = [...new Set(hashes)];
    for (let i = 0; i < unique.length; i += 500) {
      const rows = await this.db.selectFrom('blobs').select(['hash', 'meta']).where('hash', 'in', unique.slice(i, i + 500)).execute();
      for (const r of rows) out.set(r.hash, r.meta);
    }
    return out;
  }

  /** Messages whose search text is not indexed yet (left over from a crash). */
  async pendingSearch(limit: number): Promise<string[]> {
    return (await this.db.selectFrom('search_pending').select('hash').limit(limit).execute()).map((r) => r.hash);
  }

  /** Stores a message's search text in the full-text index and clears it from search_pending. */
  async setSearchText(hash: string, text: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      if (this.hasFts && text) {
        await sql`DELETE FROM search_text WHERE hash = ${hash}`.execute(trx);
        await sql`INSERT INTO search_text (hash, body) VALUES (${hash}, ${text})`.execute(trx);
      }
      await trx.deleteFrom('search_pending').where('hash', '=', hash).execute();
    });
  }

  /** The bytes of an inline (small) message, or null when it lives in a blob file. */
  async inlineBlob(hash: string): Promise<Buffer | null> {
    return (await this.db.selectFrom('blobs').select('data').where('hash', '=', hash).executeTakeFirst())?.data ?? null;
  }

  // ---- policy state shared by every node (bans, failure counters, greylisting, rates) ----

  /**
   * Counts one event for `key` in a fixed window: the first event starts a window
   * of `windowMs`; later ones add to it until it expires, then counting restarts.
   * Atomic (one upsert), so concurrent nodes never lose a count. Returns the count.
   */
  async bumpCounter(kind: string, key: string, windowMs: number, at = now()): Promise<number> {
    const r = await this.db
      .insertInto('policy_state')
      .values({ kind, key, value: 1, expires_at: at + windowMs })
      .onConflict((oc) =>
        oc.columns(['kind', 'key']).doUpdateSet({
          value: sql`CASE WHEN policy_state.expires_at <= ${at} THEN 1 ELSE policy_state.value + 1 END`,
          expires_at: sql`CASE WHEN policy_state.expires_at <= ${at} THEN ${at + windowMs} ELSE policy_state.expires_at END`,
        }),
      )
      .returning('value')
      .executeTakeFirstOrThrow();
    return Number(r.value);
  }

  /** A live entry (e.g. a ban until expires_at), or null when absent or expired. */
  async getState(kind: string, key: string, at = now()): Promise<{ value: number; expiresAt: number } | null> {
    const r = await this.db.selectFrom('policy_state').select(['value', 'expires_at']).where('kind', '=', kind).where('key', '=', key).where('expires_at', '>', at).executeTakeFirst();
    return r ? { value: Number(r.value), expiresAt: Number(r.expires_at) } : null;
  }

  async putState(kind: string, key: string, value: number, expiresAt: number): Promise<void> {
    await this.db
      .insertInto('policy_state')
      .values({ kind, key, value, expires_at: expiresAt })
      .onConflict((oc) => oc.columns(['kind', 'key']).doUpdateSet({ value, expires_at: expiresAt }))
      .execute();
  }

  async deleteState(kind: string, key: string): Promise<void> {
    await this.db.deleteFrom('policy_state').where('kind', '=', kind).where('key', '=', key).execute();
  }

  /** Live entries of one kind (e.g. `postern ban list`). */
  async listState(kind: string, at = now()): Promise<Array<{ key: string; value: number; expiresAt: number }>> {
    const rows = await this.db.selectFrom('policy_state').select(['key', 'value', 'expires_at']).where('kind', '=', kind).where('expires_at', '>', at).orderBy('key').execute();
    return rows.map((r) => ({ key: r.key, value: Number(r.value), expiresAt: Number(r.expires_at) }));
  }

  async purgeExpiredState(at = now()): Promise<number> {
    const r = await this.db.deleteFrom('policy_state').where('expires_at', '<=', at).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  // ---- outbound queue: claiming work ----

  /**
   * Claims up to `limit` queue entries that are due, for `leaseMs`: they move to
   * status 'sending' with a lease, and no other node can claim them until the lease
   * expires (a node that died mid-delivery gives its work back that way). On
   * PostgreSQL, FOR UPDATE SKIP LOCKED lets nodes claim concurrently without waiting
   * for or duplicating each other; SQLite has one writer at a time anyway.
   */
  async claimQueue(limit: number, leaseMs: number, owner: string, at = now()): Promise<QueueEntry[]> {
    const due = this.db
      .selectFrom('queue')
      .select('id')
      .where((eb) => eb.or([eb.and([eb('status', '=', 'active'), eb('next_attempt', '<=', at)]), eb.and([eb('status', '=', 'sending'), eb('lease_until', '<', at)])]))
      .orderBy('next_attempt')
      .orderBy('id')
      .limit(limit);
    const rows = await this.db
      .updateTable('queue')
      .set({ status: 'sending', lease_until: at + leaseMs, lease_owner: owner, attempts: sql`attempts + 1` })
      .where('id', 'in', this.postgres ? due.forUpdate().skipLocked() : due)
      .returningAll()
      .execute();
    return rows.map(queueEntry).sort((x, y) => x.id - y.id);
  }

  /** Recipients an administrator asked to bounce (`postern queue bounce`), claimed like claimQueue. */
  async claimAdminBounces(limit: number, leaseMs: number, owner: string, at = now()): Promise<QueueEntry[]> {
    const due = this.db.selectFrom('queue').select('id').where('status', '=', 'bounce').orderBy('id').limit(limit);
    const rows = await this.db
      .updateTable('queue')
      .set({ status: 'sending', lease_until: at + leaseMs, lease_owner: owner })
      .where('id', 'in', this.postgres ? due.forUpdate().skipLocked() : due)
      .returningAll()
      .execute();
    return rows.map(queueEntry).sort((x, y) => x.id - y.id);
  }

  /** A node starting up takes back the leases it held when it stopped (it is not delivering them any more). */
  async releaseLeases(owner: string): Promise<number> {
    const r = await this.db.updateTable('queue').set({ status: 'active', lease_until: null, lease_owner: null }).where('status', '=', 'sending').where('lease_owner', '=', owner).executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Extends the lease of entries still being delivered (long transfers, slow servers). */
  async renewLeases(ids: number[], until: number): Promise<void> {
    for (let i = 0; i < ids.length; i += 500) {
      await this.db.updateTable('queue').set({ lease_until: until }).where('id', 'in', ids.slice(i, i + 500)).where('status', '=', 'sending').execute();
    }
  }

  /**
   * Records the outcome of attempts in one transaction (one fsync for many
   * recipients): delivered or bounced entries leave the queue, deferred ones wait
   * for their next attempt.
   */
  async finishQueueEntries(outcomes: QueueOutcome[]): Promise<void> {
    if (!outcomes.length) return;
    await this.db.transaction().execute(async (trx) => {
      const done = outcomes.filter((o) => o.kind === 'done').map((o) => o.id);
      for (let i = 0; i < done.length; i += 500) await trx.deleteFrom('queue').where('id', 'in', done.slice(i, i + 500)).execute();
      for (const o of outcomes) {
        if (o.kind !== 'retry') continue;
        await trx
          .updateTable('queue')
          .set({ status: 'active', lease_until: null, lease_owner: null, next_attempt: o.nextAttempt, last_error: o.error.slice(0, 1000), ...(o.warned ? { warned: 1 } : {}) })
          .where('id', '=', o.id)
          .execute();
      }
    });
  }



  // ---- outbound queue: inspection and steering (postern queue …) ----

  /** Every queued recipient, oldest message first, with its message's size (for `postern queue list`). */
  async listQueue(queueId?: string): Promise<QueueRow[]> {
    let q = this.db
      .selectFrom('queue as q')
      .leftJoin('blobs as b', 'b.hash', 'q.blob_hash')
      .select(['q.id', 'q.queue_id', 'q.sender', 'q.recipient', 'q.blob_hash', 'q.status', 'q.attempts', 'q.next_attempt', 'q.last_error', 'q.created_at', 'b.size'])
      .orderBy('q.created_at')
      .orderBy('q.id');
    if (queueId) q = q.where('q.queue_id', '=', queueId);
    return (await q.execute()).map((r) => ({
      id: r.id,
      queueId: r.queue_id,
      sender: r.sender,
      recipient: r.recipient,
      blobHash: r.blob_hash,
      status: r.status,
      attempts: Number(r.attempts),
      nextAttempt: Number(r.next_attempt),
      lastError: r.last_error,
      createdAt: Number(r.created_at),
      size: r.size === null ? null : Number(r.size),
    }));
  }

  /**
   * Moves a message's recipients between states (Postfix postsuper -h / -H, postqueue -i):
   * 'hold' parks the active ones; 'active' releases held ones, or with `due`, makes
   * active ones due at once (flush). Recipients being sent right now are left alone.
   * Returns how many changed.
   */
  async steerQueue(queueId: string | null, action: 'hold' | 'release' | 'flush', at = now()): Promise<number> {
    const q = this.db.updateTable('queue');
    const from = action === 'release' ? 'hold' : 'active';
    let u = action === 'hold' ? q.set({ status: 'hold' }) : q.set({ status: 'active', next_attempt: at });
    u = u.where('status', '=', from);
    if (queueId) u = u.where('queue_id', '=', queueId);
    const r = await u.executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  /** Removes a message's recipients from the queue (Postfix postsuper -d); not those being sent right now. */
  async deleteQueued(queueId: string): Promise<number> {
    const r = await this.db.deleteFrom('queue').where('queue_id', '=', queueId).where('status', '!=', 'sending').executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /** Removes every deferred recipient (tried at least once, waiting to retry): Postfix `postsuper -d ALL deferred`. */
  async deleteDeferred(): Promise<number> {
    const r = await this.db.deleteFrom('queue').where('status', '=', 'active').where('attempts', '>', 0).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /** Marks a message's waiting recipients to be bounced to the sender at once (the agent sends the DSN). */
  async markQueuedForBounce(queueId: string): Promise<number> {
    const r = await this.db.updateTable('queue').set({ status: 'bounce' }).where('queue_id', '=', queueId).where('status', 'in', ['active', 'hold']).executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  async countQueued(): Promise<number> {
    const r = await this.db.selectFrom('queue').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /**
   * Commits a batch of new messages in ONE transaction (group commit: one fsync of
   * the database log for many concurrent deliveries). Assigns UIDs and modseqs,
   * writes the change log. Returns, per message, what was added.
   */
  async addMessages(batch: NewMessage[]): Promise<AddedMessage[][]> {
    if (!this.fastWriter) return this.addMessagesPortable(batch);
    const added = await this.fastWriter.addMessages(batch);
    // In commit order, so each advance starts where the one before ended.
    added.forEach((per, i) => {
      for (const a of per) {
        if (!a.view) continue;
        const m: MessageUid = { id: a.messageId, uid: a.uid, modseq: a.modseq, flags: a.view.flags, size: a.view.size, internalDate: a.view.internalDate, blobHash: batch[i]!.blobHash };
        this.views.advance({ mailboxId: a.mailboxId, uidvalidity: a.view.uidvalidity, from: a.view.from, to: a.modseq, changed: [m], expunged: [], uidnext: a.view.uidnext });
      }
    });
    return added;
  }

  /** The backend-neutral version (kysely); tests run it against SQLite too. */
  async addMessagesPortable(batch: NewMessage[]): Promise<AddedMessage[][]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.transaction().execute(async (trx) => {
          if (this.postgres) await this.lockAccounts(trx, batch);
          const out: AddedMessage[][] = [];
          for (const m of batch) out.push(await this.addOne(trx, m));
          return out;
        });
      } catch (err) {
        // PostgreSQL may still abort a transaction for serialization reasons; it did
        // not commit, so running it again is safe.
        const code = (err as { code?: string }).code;
        if (attempt >= 5 || (code !== '40P01' && code !== '40001')) throw err;
      }
    }
  }

  /**
   * Several nodes commit deliveries concurrently. Each transaction bumps account
   * modseqs and mailbox uidnexts; taking the account rows first, in id order, makes
   * every transaction lock in the same order, so two batches for the same users
   * wait for each other instead of deadlocking. The row locks also serialise UID
   * and modseq assignment per account across nodes.
   */
  private async lockAccounts(trx: Transaction<Database>, batch: NewMessage[]): Promise<void> {
    const ids = [...new Set(batch.flatMap((m) => m.deliveries.map((d) => d.accountId)))].sort((a, b) => a - b);
    if (ids.length) await trx.selectFrom('accounts').select('id').where('id', 'in', ids).orderBy('id').forUpdate().execute();
  }

  private async addOne(trx: Transaction<Database>, m: NewMessage): Promise<AddedMessage[]> {
    const t = now();
    const inserted = await trx
      .insertInto('blobs')
      .values({ hash: m.blobHash, size: m.size, meta: m.meta, data: m.blobData ? Buffer.from(m.blobData) : null, created_at: t })
      .onConflict((oc) => oc.column('hash').doNothing())
      .returning('hash')
      .executeTakeFirst();
    if (this.hasFts && inserted && m.searchText) {
      await sql`INSERT INTO search_text (hash, body) VALUES (${m.blobHash}, ${m.searchText})`.execute(trx);
    }
    const added: AddedMessage[] = [];
    for (const d of m.deliveries) {
      const name = d.mailbox ?? 'INBOX';
      if (this.postgres) {
        added.push(await this.deliverPostgres(trx, m, d, name, t));
        continue;
      }
      let mb = await trx
        .updateTable('mailboxes')
        .set({ uidnext: sql`uidnext + 1` })
        .where('account_id', '=', d.accountId)
        .where('name', '=', name)
        .returning(['id', 'uidnext'])
        .executeTakeFirst();
      if (!mb && name !== 'INBOX') {
        mb = await trx
          .updateTable('mailboxes')
          .set({ uidnext: sql`uidnext + 1` })
          .where('account_id', '=', d.accountId)
          .where('name', '=', 'INBOX')
          .returning(['id', 'uidnext'])
          .executeTakeFirst();
      }
      if (!mb) throw new MailError('NOT_FOUND', `account ${d.accountId} has no INBOX`);
      const uid = Number(mb.uidnext) - 1;
      const acct = await trx
        .updateTable('accounts')
        .set({ modseq: sql`modseq + 1` })
        .where('id', '=', d.accountId)
        .returning('modseq')
        .executeTakeFirstOrThrow();
      const modseq = Number(acct.modseq);
      await trx.updateTable('mailboxes').set({ highestmodseq: modseq }).where('id', '=', mb.id).execute();
      const row = await trx
        .insertInto('messages')
        .values({
          account_id: d.accountId,
          mailbox_id: mb.id,
          uid,
          modseq,
          blob_hash: m.blobHash,
          size: m.size,
          internal_date: m.internalDate,
          flags: (d.flags ?? []).join(' '),
          subject: m.subject,
          from_addr: m.from,
          date_header: m.date,
          message_id: m.messageId,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      await trx
        .insertInto('changes')
        .values({ account_id: d.accountId, modseq, mailbox_id: mb.id, message_id: row.id, uid, kind: 'add', created_at: t })
        .execute();
      added.push({ accountId: d.accountId, mailboxId: mb.id, messageId: row.id, uid, modseq });
    }
    if (m.queue) {
      for (const row of queueRows(m.queue, m.blobHash, t)) await trx.insertInto('queue').values(row).execute();
    }
    return added;
  }

  /**
   * One delivery on PostgreSQL in ONE statement (data-modifying CTEs) instead of five
   * round trips: bump the account's modseq, take the mailbox's next UID and record
   * the highest modseq, insert the message and its change-log entry. The account row
   * is locked first, as in lockAccounts(), so concurrent nodes keep one lock order.
   * A missing mailbox falls back to INBOX, like the portable path.
   */
  private async deliverPostgres(trx: Transaction<Database>, m: NewMessage, d: Delivery, name: string, t: number): Promise<AddedMessage> {
    for (const box of name === 'INBOX' ? ['INBOX'] : [name, 'INBOX']) {
      const r = await sql<{ id: number; mailbox_id: number; uid: number; modseq: number }>`
        WITH acct AS (
          UPDATE accounts SET modseq = modseq + 1 WHERE id = ${d.accountId} RETURNING modseq
        ), mb AS (
          UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = (SELECT modseq FROM acct)
          WHERE account_id = ${d.accountId} AND name = ${box}
          RETURNING id, uidnext - 1 AS uid
        ), msg AS (
          INSERT INTO messages (account_id, mailbox_id, uid, modseq, blob_hash, size, internal_date, flags, subject, from_addr, date_header, message_id)
          SELECT ${d.accountId}, mb.id, mb.uid, acct.modseq, ${m.blobHash}, ${m.size}, ${m.internalDate}, ${(d.flags ?? []).join(' ')},
                 ${m.subject}, ${m.from}, ${m.date}, ${m.messageId}
          FROM mb, acct
          RETURNING id, mailbox_id, uid, modseq
        ), ch AS (
          INSERT INTO changes (account_id, modseq, mailbox_id, message_id, uid, kind, created_at)
          SELECT ${d.accountId}, modseq, mailbox_id, id, uid, 'add', ${t} FROM msg
        )
        SELECT id, mailbox_id, uid, modseq FROM msg`.execute(trx);
      const row = r.rows[0];
      if (row) return { accountId: d.accountId, mailboxId: row.mailbox_id, messageId: row.id, uid: Number(row.uid), modseq: Number(row.modseq) };
    }
    throw new MailError('NOT_FOUND', `account ${d.accountId} has no INBOX`);
  }

  // ---- IMAP mailbox operations ----
  //
  // What the IMAP server (issue #6) needs beyond delivery. Every operation that
  // writes runs in one transaction holding the account's row lock (imapTx), the
  // same lock deliveries take first (lockAccounts/deliverPostgres), so UIDs,
  // modseqs and flags of one account are never assigned by two writers at once;
  // SQLite has one writer at a time anyway. Every changed message takes the next
  // account modseq and writes a row to `changes` (kind 'flags' | 'add' |
  // 'expunge'); mailbox creation, rename and deletion write kind 'mailbox'.
  // Expunge rows are kept: they answer QRESYNC's VANISHED (RFC 7162 §3.2.5.1).
  // APPEND goes through the one write path (core/ingest.ts, deliveries
  // [{ accountId, mailbox, flags }] and internalDate); its AddedMessage gives the
  // UID and mailbox id, getMailboxById() the UIDVALIDITY for APPENDUID (RFC 4315).

  /** RFC 9051 §6.3.9 LIST, §6.3.11 STATUS (RFC 8438 SIZE): the account's mailboxes with counts, INBOX first, then by name. */
  async listMailboxes(accountId: number): Promise<MailboxInfo[]> {
    return this.mailboxInfos({ accountId });
  }

  /** RFC 9051 §6.3.2 SELECT / §6.3.11 STATUS: one mailbox by name (any case of "INBOX"), or null. */
  async getMailbox(accountId: number, name: string): Promise<MailboxInfo | null> {
    const n = normalizeMailboxName(name);
    return (await this.mailboxInfos({ accountId, name: n }))[0] ?? null;
  }

  /** One mailbox by id, or null (APPENDUID's UIDVALIDITY after an ingest). */
  async getMailboxById(mailboxId: number): Promise<MailboxInfo | null> {
    return (await this.mailboxInfos({ id: mailboxId }))[0] ?? null;
  }

  /**
   * RFC 9051 §6.3.4 CREATE: creates the mailbox and any missing superior ones
   * ("a/b/c" creates "a" and "a/b"), each with a new UIDVALIDITY. A trailing "/"
   * is dropped. ALREADY_EXISTS when the name exists (INBOX in any case too);
   * INVALID for a bad name. Subscribed when the name was subscribed before.
   */
  async createMailbox(accountId: number, name: string, specialUse: string | null = null): Promise<MailboxInfo> {
    const n = normalizeMailboxName(name);
    const id = await this.imapTx(accountId, async (trx) => {
      const existing = new Set((await trx.selectFrom('mailboxes').select('name').where('account_id', '=', accountId).execute()).map((r) => r.name));
      if (existing.has(n)) throw new MailError('ALREADY_EXISTS', `mailbox "${n}" exists already`);
      const modseq = await this.bumpModseqs(trx, accountId, 1);
      let created = 0;
      for (const p of [...parentNames(n), n]) {
        if (existing.has(p)) continue;
        created = await this.insertMailbox(trx, accountId, p, p === n ? specialUse : null, modseq);
      }
      return created;
    });
    return (await this.getMailboxById(id))!;
  }

  /**
   * RFC 9051 §6.3.5 DELETE, as Dovecot does it: INBOX cannot be deleted (INVALID),
   * nor a mailbox with inferiors (HAS_CHILDREN; IMAP: [HASCHILDREN],
   * RFC 5530). Its messages go with it (an 'expunge' change each, for JMAP). A
   * subscription to the name stays (RFC 9051 §6.3.9).
   */
  async deleteMailbox(accountId: number, name: string): Promise<void> {
    const n = normalizeMailboxName(name);
    if (n === 'INBOX') throw new MailError('INVALID', 'INBOX cannot be deleted');
    await this.imapTx(accountId, async (trx) => {
      const boxes = await trx.selectFrom('mailboxes').select(['id', 'name', 'subscribed']).where('account_id', '=', accountId).execute();
      const box = boxes.find((b) => b.name === n);
      if (!box) throw new MailError('NOT_FOUND', `no mailbox "${n}"`);
      if (boxes.some((b) => b.name !== n && isSelfOrChild(b.name, n))) throw new MailError('HAS_CHILDREN', `mailbox "${n}" has children; delete them first`);
      const msgs = await trx.selectFrom('messages').select(['id', 'uid']).where('mailbox_id', '=', box.id).execute();
      const modseq = await this.bumpModseqs(trx, accountId, 1);
      const t = now();
      await this.logChanges(trx, [
        ...msgs.map((m) => ({ account_id: accountId, modseq, mailbox_id: box.id, message_id: m.id, uid: Number(m.uid), kind: 'expunge', created_at: t })),
        { account_id: accountId, modseq, mailbox_id: box.id, message_id: null, uid: null, kind: 'mailbox', created_at: t },
      ]);
      await trx.deleteFrom('messages').where('mailbox_id', '=', box.id).execute();
      await trx.deleteFrom('mailboxes').where('id', '=', box.id).execute();
      if (Number(box.subscribed)) {
        await trx.insertInto('subscriptions').values({ account_id: accountId, name: n }).onConflict((oc) => oc.doNothing()).execute();
      }
    });
  }

  /**
   * RFC 9051 §6.3.6 RENAME. Inferior mailboxes move along ("a/x" → "b/x"); missing
   * superiors of the new name are created. Every renamed mailbox gets a new
   * UIDVALIDITY (its name may have belonged to a deleted mailbox whose UIDs a
   * client still caches); its messages, UIDs and subscription stay.
   * Renaming INBOX moves all its messages into a new mailbox and leaves INBOX
   * empty; INBOX's inferiors are not renamed.
   * NOT_FOUND: no such `from`; ALREADY_EXISTS: a target name exists; INVALID: into itself.
   */
  async renameMailbox(accountId: number, from: string, to: string): Promise<MailboxInfo> {
    const f = normalizeMailboxName(from);
    const t = normalizeMailboxName(to);
    const id = await this.imapTx(accountId, async (trx) => {
      const boxes = await trx.selectFrom('mailboxes').select(['id', 'name']).where('account_id', '=', accountId).execute();
      const names = new Set(boxes.map((b) => b.name));
      const src = boxes.find((b) => b.name === f);
      if (!src) throw new MailError('NOT_FOUND', `no mailbox "${f}"`);
      if (names.has(t)) throw new MailError('ALREADY_EXISTS', `mailbox "${t}" exists already`);
      if (f !== 'INBOX' && isSelfOrChild(t, f)) throw new MailError('INVALID', `cannot rename "${f}" into itself`);
      const renamed = f === 'INBOX' ? [] : boxes.filter((b) => isSelfOrChild(b.name, f)).map((b) => ({ ...b, to: t + b.name.slice(f.length) }));
      for (const r of renamed) if (names.has(r.to)) throw new MailError('ALREADY_EXISTS', `mailbox "${r.to}" exists already`);
      const modseq = await this.bumpModseqs(trx, accountId, 1);
      for (const p of parentNames(t)) if (!names.has(p)) await this.insertMailbox(trx, accountId, p, null, modseq);
      if (f === 'INBOX') {
        const target = await this.insertMailbox(trx, accountId, t, null, modseq);
        const uids = (await trx.selectFrom('messages').select('uid').where('mailbox_id', '=', src.id).orderBy('uid').execute()).map((r) => Number(r.uid));
        await this.moveInTx(trx, accountId, src.id, uids, target);
        return target;
      }
      for (const r of renamed) {
        const orphan = await trx.deleteFrom('subscriptions').where('account_id', '=', accountId).where('name', '=', r.to).executeTakeFirst();
        await trx
          .updateTable('mailboxes')
          .set({ name: r.to, uidvalidity: await this.nextUidvalidity(trx, accountId), highestmodseq: modseq, ...(Number(orphan.numDeletedRows) ? { subscribed: 1 } : {}) })
          .where('id', '=', r.id)
          .execute();
        await this.logChanges(trx, [{ account_id: accountId, modseq, mailbox_id: r.id, message_id: null, uid: null, kind: 'mailbox', created_at: now() }]);
      }
      return src.id;
    });
    return (await this.getMailboxById(id))!;
  }

  /** RFC 9051 §6.3.7 SUBSCRIBE: any valid name, existing or not. */
  async subscribe(accountId: number, name: string): Promise<void> {
    const n = normalizeMailboxName(name);
    await this.imapTx(accountId, async (trx) => {
      const r = await trx.updateTable('mailboxes').set({ subscribed: 1 }).where('account_id', '=', accountId).where('name', '=', n).executeTakeFirst();
      if (!Number(r.numUpdatedRows)) await trx.insertInto('subscriptions').values({ account_id: accountId, name: n }).onConflict((oc) => oc.doNothing()).execute();
    });
  }

  /** RFC 9051 §6.3.8 UNSUBSCRIBE. Returns whether the name was subscribed (IMAP may answer NO when not). */
  async unsubscribe(accountId: number, name: string): Promise<boolean> {
    const n = normalizeMailboxName(name);
    return this.imapTx(accountId, async (trx) => {
      const a = await trx.updateTable('mailboxes').set({ subscribed: 0 }).where('account_id', '=', accountId).where('name', '=', n).where('subscribed', '!=', 0).executeTakeFirst();
      const b = await trx.deleteFrom('subscriptions').where('account_id', '=', accountId).where('name', '=', n).executeTakeFirst();
      return Number(a.numUpdatedRows) + Number(b.numDeletedRows) > 0;
    });
  }

  /** RFC 9051 §6.3.9 LIST (SUBSCRIBED), RFC 3501 LSUB: subscribed names; `exists` false gives \NonExistent. */
  async listSubscriptions(accountId: number): Promise<Array<{ name: string; exists: boolean }>> {
    const boxes = await this.db.selectFrom('mailboxes').select('name').where('account_id', '=', accountId).where('subscribed', '!=', 0).execute();
    const orphans = await this.db.selectFrom('subscriptions').select('name').where('account_id', '=', accountId).execute();
    return [...boxes.map((b) => ({ name: b.name, exists: true })), ...orphans.map((o) => ({ name: o.name, exists: false }))].sort((x, y) => compareMailboxNames(x.name, y.name));
  }

  /**
   * A mailbox's messages for a session's message list (RFC 9051 §6.3.2 SELECT:
   * sequence numbers are positions in this UID-ordered list), compact.
   */
  /**
   * The mailbox's messages by ascending UID (SELECT): a new array (the caller may
   * change it) of shared MessageUid objects (the caller must not change those).
   */
  async listMessageUids(mailboxId: number): Promise<MessageUid[]> {
    const [row] = await this.mailboxRows({ id: mailboxId });
    if (!row) return [];
    return (await this.views.view(row)).messages.slice();
  }

  private qMessageUids = this.precompiled((db) =>
    db.selectFrom('messages').select(['id', 'uid', 'modseq', 'flags', 'size', 'internal_date', 'blob_hash']).where('mailbox_id', '=', '?' as unknown as number).orderBy('uid'),
  );

  /**
   * RFC 9051 §6.4.6 STORE (FLAGS / +FLAGS / -FLAGS), with RFC 7162 §3.1.3
   * UNCHANGEDSINCE: a message whose modseq is above it is left alone and reported
   * in `modified`. Each message whose flags change takes the next account modseq
   * and a 'flags' change row; the others keep theirs. \Recent is ignored; system
   * flags are stored in canonical case. UIDs not in the mailbox are skipped.
   */
  async storeFlags(mailboxId: number, uids: number[], mode: StoreMode, flags: string[], unchangedSince?: number): Promise<StoreFlagsResult> {
    if (this.fastImap) {
      const { result, view } = await this.fastImap.storeFlags(mailboxId, uids, mode, flags, unchangedSince);
      this.views.advance(view);
      return result;
    }
    const accountId = await this.mailboxAccount(mailboxId);
    return this.imapTx(accountId, async (trx) => {
      await this.lockedMailbox(trx, mailboxId);
      const rows = await this.messagesByUid(trx, mailboxId, uids);
      const out: StoreFlagsResult = { messages: [], modified: [] };
      const changed: Array<{ id: number; uid: number; flags: string[]; i: number }> = [];
      for (const r of rows) {
        const uid = Number(r.uid);
        if (unchangedSince !== undefined && Number(r.modseq) > unchangedSince) {
          out.modified.push(uid);
          continue;
        }
        const current = normalizeFlags(splitFlags(r.flags));
        const next = applyStore(current, mode, flags);
        const isChange = !sameFlags(current, next);
        out.messages.push({ uid, flags: isChange ? next : current, modseq: Number(r.modseq), changed: isChange });
        if (isChange) changed.push({ id: r.id, uid, flags: next, i: out.messages.length - 1 });
      }
      if (!changed.length) return out;
      const first = await this.bumpModseqs(trx, accountId, changed.length);
      changed.forEach((c, k) => (out.messages[c.i]!.modseq = first + k));
      await this.batchUpdate(trx, 'flags', changed.map((c, k) => [c.id, c.flags.join(' '), first + k]));
      const t = now();
      await this.logChanges(trx, changed.map((c, k) => ({ account_id: accountId, modseq: first + k, mailbox_id: mailboxId, message_id: c.id, uid: c.uid, kind: 'flags', created_at: t })));
      await trx.updateTable('mailboxes').set({ highestmodseq: first + changed.length - 1 }).where('id', '=', mailboxId).execute();
      return out;
    });
  }

  /**
   * RFC 9051 §6.4.3 EXPUNGE (and CLOSE, §6.4.1): removes the mailbox's messages
   * flagged \Deleted; with `uids`, only those among them (RFC 4315 UID EXPUNGE).
   * Each takes the next modseq and an 'expunge' change row (kept for VANISHED).
   */
  async expunge(mailboxId: number, uids?: number[]): Promise<ExpungeResult> {
    // The \Deleted messages from the shared message list's summary (list-summary.ts:
    // carried along the view's steps) instead of a scan of every row's flags (0.8 ms for
    // 500 messages, every EXPUNGE) or of the list (60 µs); it is used only if the mailbox
    // did not change between the look and the lock.
    const only = uids ? new Set(uids) : null;
    const markedIn = (view: MailboxView): MessageUid[] => {
      const out: MessageUid[] = [];
      for (const uid of summaryOf(view.messages, view.step).deleted) {
        if (only && !only.has(uid)) continue;
        const m = view.messages[uidLowerBound(view.messages, uid)];
        if (m?.uid === uid) out.push(m);
      }
      return out;
    };
    if (this.fastImap) {
      // The writer checks the list against the locked row (and reads the rows when it is
      // stale, or answers NOT_FOUND), so a view in memory needs no look at the row first.
      const view = this.views.peek(mailboxId) ?? (await this.viewOf(mailboxId));
      const seen = { uidvalidity: view.uidvalidity, modseq: view.modseq, marked: markedIn(view).map((m) => ({ id: m.id, uid: m.uid })) };
      const done = await this.fastImap.expunge(mailboxId, uids ?? null, seen);
      this.views.advance(done.view);
      return done.result;
    }
    const [row] = await this.mailboxRows({ id: mailboxId });
    if (!row) throw new MailError('NOT_FOUND', `no mailbox ${mailboxId}`);
    const view = await this.views.view(row);
    const marked = markedIn(view);
    return this.imapTx(row.accountId, async (trx) => {
      const accountId = row.accountId;
      const locked = await this.lockedMailbox(trx, mailboxId);
      const rows =
        locked.uidvalidity === view.uidvalidity && locked.highestmodseq === view.modseq
          ? marked
          : (await this.messagesByUid(trx, mailboxId, uids ?? null, true)).map((r) => ({ id: r.id, uid: Number(r.uid) }));
      if (!rows.length) return { expunged: [] };
      const first = await this.bumpModseqs(trx, accountId, rows.length);
      const t = now();
      await this.logChanges(trx, rows.map((r, k) => ({ account_id: accountId, modseq: first + k, mailbox_id: mailboxId, message_id: r.id, uid: Number(r.uid), kind: 'expunge', created_at: t })));
      for (const ids of chunks(rows.map((r) => r.id))) await trx.deleteFrom('messages').where('id', 'in', ids).execute();
      await trx.updateTable('mailboxes').set({ highestmodseq: first + rows.length - 1 }).where('id', '=', mailboxId).execute();
      return { expunged: rows.map((r, k) => ({ uid: Number(r.uid), modseq: first + k })) };
    });
  }

  /**
   * RFC 9051 §6.4.7 COPY with RFC 4315 COPYUID: new rows for the same blobs (no
   * copy of the bytes), new UIDs in source-UID order, a new modseq and an 'add'
   * change each; flags are copied (\Recent is never stored). Both mailboxes must
   * belong to one account; NOT_FOUND when the target is gone (IMAP: [TRYCREATE]).
   */
  async copyMessages(fromMailboxId: number, uids: number[], toMailboxId: number): Promise<CopyResult> {
    const accountId = await this.sameAccount(fromMailboxId, toMailboxId);
    return this.imapTx(accountId, async (trx) => {
      const src = await this.lockedMailbox(trx, fromMailboxId);
      const dst = await this.lockedMailbox(trx, toMailboxId);
      const rows = await this.messagesByUid(trx, fromMailboxId, uids);
      if (!rows.length) return { uidvalidity: dst.uidvalidity, pairs: [] };
      await this.recordTraining(trx, accountId, src, dst, rows.map((r) => r.blob_hash));
      const firstUid = await this.takeUids(trx, toMailboxId, rows.length);
      const first = await this.bumpModseqs(trx, accountId, rows.length);
      const added: Array<{ id: number; uid: number }> = [];
      for (const part of chunks(rows.map((r, k) => ({ r, k })), 200)) {
        added.push(
          ...(await trx
            .insertInto('messages')
            .values(
              part.map(({ r, k }) => ({
                account_id: accountId,
                mailbox_id: toMailboxId,
                uid: firstUid + k,
                modseq: first + k,
                blob_hash: r.blob_hash,
                size: r.size,
                internal_date: r.internal_date,
                flags: r.flags,
                subject: r.subject,
                from_addr: r.from_addr,
                date_header: r.date_header,
                message_id: r.message_id,
              })),
            )
            .returning(['id', 'uid'])
            .execute()),
        );
      }
      const idByUid = new Map(added.map((a) => [Number(a.uid), a.id]));
      const t = now();
      await this.logChanges(trx, rows.map((_, k) => ({ account_id: accountId, modseq: first + k, mailbox_id: toMailboxId, message_id: idByUid.get(firstUid + k)!, uid: firstUid + k, kind: 'add', created_at: t })));
      await trx.updateTable('mailboxes').set({ highestmodseq: first + rows.length - 1 }).where('id', '=', toMailboxId).execute();
      return { uidvalidity: dst.uidvalidity, pairs: rows.map((r, k) => [Number(r.uid), firstUid + k] as [number, number]) };
    });
  }

  /**
   * RFC 6851 MOVE (with COPYUID, RFC 4315): copy and expunge in one transaction.
   * The message row moves (its id, the JMAP Email id, stays): each message takes
   * one new modseq, written as an 'expunge' change in the source and an 'add'
   * change in the target.
   */
  async moveMessages(fromMailboxId: number, uids: number[], toMailboxId: number): Promise<CopyResult> {
    const accountId = await this.sameAccount(fromMailboxId, toMailboxId);
    return this.imapTx(accountId, async (trx) => {
      await this.lockedMailbox(trx, fromMailboxId);
      await this.lockedMailbox(trx, toMailboxId);
      return this.moveInTx(trx, accountId, fromMailboxId, uids, toMailboxId);
    });
  }

  /**
   * RFC 7162 CONDSTORE/QRESYNC (§3.1.4 CHANGEDSINCE, §3.2.5 SELECT QRESYNC,
   * §3.2.6 UID FETCH VANISHED): the mailbox's messages changed or added after
   * `modseq`, and the UIDs expunged or moved out after it.
   */
  async changesSince(accountId: number, mailboxId: number, modseq: number): Promise<ChangesSince> {
    const mb = await this.db.selectFrom('mailboxes').select('highestmodseq').where('id', '=', mailboxId).where('account_id', '=', accountId).executeTakeFirst();
    if (!mb) throw new MailError('NOT_FOUND', `no mailbox ${mailboxId}`);
    const gone = await this.db
      .selectFrom('changes')
      .select('uid')
      .where('account_id', '=', accountId)
      .where('modseq', '>', modseq)
      .where('mailbox_id', '=', mailboxId)
      .where('kind', '=', 'expunge')
      .execute();
    const changed = await this.db.selectFrom('messages').select(['uid', 'modseq', 'flags']).where('mailbox_id', '=', mailboxId).where('modseq', '>', modseq).orderBy('uid').execute();
    return {
      changed: changed.map((r) => ({ uid: Number(r.uid), modseq: Number(r.modseq), flags: splitFlags(r.flags) })),
      vanished: [...new Set(gone.map((g) => Number(g.uid)))].sort((x, y) => x - y),
      highestmodseq: Number(mb.highestmodseq),
    };
  }

  /** RFC 7162 §3.1.2 HIGHESTMODSEQ of a mailbox (0 before its first change). */
  async highestModseq(mailboxId: number): Promise<number> {
    const mb = await this.db.selectFrom('mailboxes').select('highestmodseq').where('id', '=', mailboxId).executeTakeFirst();
    if (!mb) throw new MailError('NOT_FOUND', `no mailbox ${mailboxId}`);
    return Number(mb.highestmodseq);
  }

  /**
   * Mailboxes with their counts: the rows from the database, the counts from the
   * shared message lists (mailbox-views.ts), brought up to date by the rows'
   * HIGHESTMODSEQ.
   */
  private async mailboxInfos(by: { accountId?: number; name?: string; id?: number }): Promise<MailboxInfo[]> {
    const rows = await this.mailboxRows(by);
    const infos = await Promise.all(rows.map((r) => this.views.info(r)));
    return infos.sort((x, y) => compareMailboxNames(x.name, y.name));
  }

  private qMailboxById = this.precompiled((db) => db.selectFrom('mailboxes').select(MAILBOX_COLUMNS).where('id', '=', '?' as unknown as number));
  private qMailboxByName = this.precompiled((db) =>
    db.selectFrom('mailboxes').select(MAILBOX_COLUMNS).where('account_id', '=', '?' as unknown as number).where('name', '=', '?'),
  );
  private qMessageDelta = this.precompiled((db) =>
    db
      .selectFrom('messages')
      .select(['id', 'uid', 'modseq', 'flags', 'size', 'internal_date', 'blob_hash'])
      .where('mailbox_id', '=', '?' as unknown as number)
      .where('modseq', '>', '?' as unknown as number),
  );
  private qExpungedSince = this.precompiled((db) =>
    db
      .selectFrom('changes')
      .select('uid')
      .where('account_id', '=', '?' as unknown as number)
      .where('modseq', '>', '?' as unknown as number)
      .where('mailbox_id', '=', '?' as unknown as number)
      .where('kind', '=', '?'),
  );

  private async mailboxRows(by: { accountId?: number; name?: string; id?: number }): Promise<MailboxRow[]> {
    let rows: Array<Pick<Row<MailboxesTable>, (typeof MAILBOX_COLUMNS)[number]>>;
    if (by.id !== undefined && by.accountId === undefined && by.name === undefined) rows = await this.qMailboxById(by.id);
    else if (by.accountId !== undefined && by.name !== undefined && by.id === undefined) rows = await this.qMailboxByName(by.accountId, by.name);
    else {
      let q = this.db.selectFrom('mailboxes').select(MAILBOX_COLUMNS);
      if (by.accountId !== undefined) q = q.where('account_id', '=', by.accountId);
      if (by.name !== undefined) q = q.where('name', '=', by.name);
      if (by.id !== undefined) q = q.where('id', '=', by.id);
      rows = await q.execute();
    }
    return rows.map((r) => ({
      id: r.id,
      accountId: r.account_id,
      name: r.name,
      specialUse: r.special_use,
      uidvalidity: Number(r.uidvalidity),
      uidnext: Number(r.uidnext),
      highestmodseq: Number(r.highestmodseq),
      subscribed: Number(r.subscribed) !== 0,
    }));
  }

  /**
   * A selected mailbox brought up to date in one go (SelectedMailbox.sync): its
   * info and its shared message list (never mutate it), or null when it is gone.
   */
  async mailboxView(mailboxId: number): Promise<{ info: MailboxInfo; messages: readonly MessageUid[]; step?: ViewStep } | null> {
    const [row] = await this.mailboxRows({ id: mailboxId });
    if (!row) return null;
    return this.views.infoAndView(row);
  }

  /**
   * mailboxView() from memory, when this process's view is known to be at HIGHESTMODSEQ
   * `atLeast` or later (MailboxViews.cached); null means: ask mailboxView().
   */
  cachedMailboxView(mailboxId: number, atLeast: number): { info: MailboxInfo; messages: readonly MessageUid[]; step?: ViewStep } | null {
    return this.views.cached(mailboxId, atLeast);
  }

  /** The mailbox's view after a look at its row; NOT_FOUND when it is gone. */
  private async viewOf(mailboxId: number): Promise<MailboxView> {
    const [row] = await this.mailboxRows({ id: mailboxId });
    if (!row) throw new MailError('NOT_FOUND', `no mailbox ${mailboxId}`);
    return this.views.view(row);
  }

  /** SELECT's look: the mailbox by name with its shared message list (never mutate it), or null. */
  async mailboxViewByName(accountId: number, name: string): Promise<{ info: MailboxInfo; messages: readonly MessageUid[]; step?: ViewStep } | null> {
    const [row] = await this.mailboxRows({ accountId, name: normalizeMailboxName(name) });
    if (!row) return null;
    return this.views.infoAndView(row);
  }

  private readonly views = new MailboxViews({
    messageUids: async (mailboxId) => (await this.qMessageUids(mailboxId)).map(toMessageUid),
    messageDelta: async (accountId, mailboxId, modseq) => {
      const [changed, gone] = await Promise.all([this.qMessageDelta(mailboxId, modseq), this.qExpungedSince(accountId, modseq, mailboxId, 'expunge')]);
      return { changed: changed.map(toMessageUid), expunged: gone.map((g) => Number(g.uid)) };
    },
  });

  /**
   * A transaction for one account's IMAP change: on PostgreSQL it first takes the
   * account row lock, as deliveries do (lockAccounts), so nothing else assigns
   * this account's UIDs or modseqs or changes its flags meanwhile. Retried like
   * addMessagesPortable when PostgreSQL aborts it for serialization reasons.
   */
  private async imapTx<T>(accountId: number, fn: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.transaction().execute(async (trx) => {
          const q = trx.selectFrom('accounts').select('id').where('id', '=', accountId);
          if (!(await (this.postgres ? q.forUpdate() : q).executeTakeFirst())) throw new MailError('NOT_FOUND', `no account ${accountId}`);
          return fn(trx);
        });
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (attempt >= 5 || (code !== '40P01' && code !== '40001')) throw err;
      }
    }
  }

  private async mailboxAccount(mailboxId: number): Promise<number> {
    const r = await this.db.selectFrom('mailboxes').select('account_id').where('id', '=', mailboxId).executeTakeFirst();
    if (!r) throw new MailError('NOT_FOUND', `no mailbox ${mailboxId}`);
    return r.account_id;
  }

  private async sameAccount(a: number, b: number): Promise<number> {
    const [x, y] = [await this.mailboxAccount(a), await this.mailboxAccount(b)];
    if (x !== y) throw new MailError('INVALID', 'cannot copy or move messages between accounts');
    return x;
  }

  /** The mailbox, read again under the account lock (it may have been deleted since). */
  private async lockedMailbox(trx: Transaction<Database>, mailboxId: number): Promise<{ uidvalidity: number; specialUse: string | null; highestmodseq: number }> {
    const r = await trx.selectFrom('mailboxes').select(['uidvalidity', 'special_use', 'highestmodseq']).where('id', '=', mailboxId).executeTakeFirst();
    if (!r) throw new MailError('NOT_FOUND', `no mailbox ${mailboxId}`);
    return { uidvalidity: Number(r.uidvalidity), specialUse: r.special_use, highestmodseq: Number(r.highestmodseq) };
  }

  /**
   * The user's own verdict on messages, for the learning spam filter: copied or
   * moved into the \Junk mailbox (RFC 6154) → spam; moved or copied out of it into
   * any mailbox but \Trash → ham (a message thrown away from Junk stays spam).
   */
  private async recordTraining(
    trx: Transaction<Database>,
    accountId: number,
    from: { specialUse: string | null },
    to: { specialUse: string | null },
    hashes: string[],
  ): Promise<void> {
    const junk = (m: { specialUse: string | null }) => m.specialUse === '\\Junk';
    let verdict: 'spam' | 'ham' | null = null;
    if (junk(to) && !junk(from)) verdict = 'spam';
    else if (junk(from) && !junk(to) && to.specialUse !== '\\Trash') verdict = 'ham';
    if (!verdict || !hashes.length) return;
    const t = now();
    for (const part of chunks(hashes, 500)) {
      await trx
        .insertInto('training_signals')
        .values(part.map((h) => ({ account_id: accountId, blob_hash: h, verdict: verdict!, source: 'imap', created_at: t })))
        .execute();
    }
  }

  /** Adds an access rule (src/policy/access.ts); false when the same scope, kind and value has one already. */
  async addAccessRule(r: AccessRule): Promise<boolean> {
    const existing = await this.db.selectFrom('access_rules').select('id').where('scope', '=', r.scope).where('kind', '=', r.kind).where('value', '=', r.value).executeTakeFirst();
    if (existing) {
      await this.db.updateTable('access_rules').set({ action: r.action }).where('id', '=', existing.id).execute();
      return false;
    }
    await this.db.insertInto('access_rules').values({ scope: r.scope, kind: r.kind, value: r.value, action: r.action, created_at: Date.now() }).execute();
    return true;
  }

  /** Removes a rule; false when there was none. */
  async deleteAccessRule(scope: string, kind: AccessRule['kind'], value: string): Promise<boolean> {
    const res = await this.db.deleteFrom('access_rules').where('scope', '=', scope).where('kind', '=', kind).where('value', '=', value).executeTakeFirst();
    return Number(res.numDeletedRows) > 0;
  }

  /** The rules of these scopes ('' is everyone's), oldest first; every rule when `scopes` is null. */
  async accessRules(scopes: string[] | null): Promise<AccessRule[]> {
    let q = this.db.selectFrom('access_rules').select(['scope', 'kind', 'value', 'action']).orderBy('id');
    if (scopes) q = q.where('scope', 'in', scopes.length ? scopes : ['']);
    return q.execute();
  }

  /** Training signals after `afterId` (the learning filter's cursor), oldest first. */
  async trainingSignals(afterId = 0, limit = 1000): Promise<Array<{ id: number; accountId: number; blobHash: string; verdict: 'spam' | 'ham'; source: string; createdAt: number }>> {
    const rows = await this.db.selectFrom('training_signals').selectAll().where('id', '>', afterId).orderBy('id').limit(limit).execute();
    return rows.map((r) => ({ id: r.id, accountId: r.account_id, blobHash: r.blob_hash, verdict: r.verdict, source: r.source, createdAt: Number(r.created_at) }));
  }

  // ---- the builtin spam filter's Bayes statistics (bayes-rows.ts, src/policy/content/bayes.ts) ----

  /** Learned message counts per scope ('' global, else an account's address); every scope when null. */
  async bayesTotals(scopes: string[] | null): Promise<Map<string, BayesTotals>> {
    return bayes.bayesTotals(this.db, scopes);
  }

  /** The spam/ham counts of these (hashed) tokens in these scopes; tokens never seen are absent. */
  async bayesCounts(scopes: string[], tokens: string[]): Promise<BayesTokenCounts[]> {
    return bayes.bayesCounts(this.db, scopes, tokens);
  }

  /** Learns (or, with null, forgets) one message in one scope; returns what it was learned as before. */
  async bayesLearn(scope: string, blobHash: string, tokens: string[], verdict: BayesVerdict | null): Promise<BayesVerdict | null> {
    return bayes.bayesLearn(this.db, scope, blobHash, tokens, verdict, now());
  }

  /** Distinct tokens per scope. */
  async bayesTokenCounts(): Promise<Map<string, number>> {
    return bayes.bayesTokenCounts(this.db);
  }

  async bayesCursor(name: string): Promise<number> {
    return bayes.bayesCursor(this.db, name);
  }

  /** Compare-and-set of a cursor: false when another node moved it first. */
  async bayesAdvanceCursor(name: string, from: number, to: number): Promise<boolean> {
    return bayes.bayesAdvanceCursor(this.db, name, from, to);
  }

  /** The address of an account by id (training signals name accounts by id), or null. */
  async accountEmail(accountId: number): Promise<string | null> {
    return (await this.db.selectFrom('accounts').select('email').where('id', '=', accountId).executeTakeFirst())?.email ?? null;
  }

  /**
   * Rows of the given UIDs that exist (null: the whole mailbox), by ascending UID;
   * with `deletedOnly`, those flagged \Deleted.
   */
  private async messagesByUid(trx: Transaction<Database>, mailboxId: number, uids: number[] | null, deletedOnly = false): Promise<Array<Row<MessagesTable>>> {
    const out: Array<Row<MessagesTable>> = [];
    for (const part of uids ? chunks([...new Set(uids)]) : [null]) {
      let q = trx.selectFrom('messages').selectAll().where('mailbox_id', '=', mailboxId);
      if (part) q = q.where('uid', 'in', part);
      if (deletedOnly) q = q.where(sql<boolean>`lower(' ' || flags || ' ') LIKE ${'% \\deleted %'} ESCAPE '!'`);
      out.push(...(await q.execute()));
    }
    return out.sort((x, y) => Number(x.uid) - Number(y.uid));
  }

  /** Takes `n` modseqs of the account at once; returns the first (they are first … first+n-1). */
  private async bumpModseqs(trx: Transaction<Database>, accountId: number, n: number): Promise<number> {
    const r = await trx.updateTable('accounts').set({ modseq: sql`modseq + ${n}` }).where('id', '=', accountId).returning('modseq').executeTakeFirstOrThrow();
    return Number(r.modseq) - n + 1;
  }

  /** Takes `n` UIDs of a mailbox at once; returns the first. */
  private async takeUids(trx: Transaction<Database>, mailboxId: number, n: number): Promise<number> {
    const r = await trx.updateTable('mailboxes').set({ uidnext: sql`uidnext + ${n}` }).where('id', '=', mailboxId).returning('uidnext').executeTakeFirstOrThrow();
    return Number(r.uidnext) - n;
  }

  /**
   * A UIDVALIDITY never given to a mailbox of this account before (RFC 9051
   * §2.3.1.1): the time in seconds, but always above every earlier one.
   */
  private async nextUidvalidity(trx: Transaction<Database>, accountId: number): Promise<number> {
    const a = await trx.selectFrom('accounts').select('last_uidvalidity').where('id', '=', accountId).executeTakeFirstOrThrow();
    const m = await trx.selectFrom('mailboxes').select(sql<number | null>`max(uidvalidity)`.as('v')).where('account_id', '=', accountId).executeTakeFirst();
    const v = Math.max(Math.floor(now() / 1000), Number(a.last_uidvalidity) + 1, Number(m?.v ?? 0) + 1);
    await trx.updateTable('accounts').set({ last_uidvalidity: v }).where('id', '=', accountId).execute();
    return v;
  }

  /** A new mailbox row (subscribed when the name was) and its 'mailbox' change. */
  private async insertMailbox(trx: Transaction<Database>, accountId: number, name: string, specialUse: string | null, modseq: number): Promise<number> {
    const orphan = await trx.deleteFrom('subscriptions').where('account_id', '=', accountId).where('name', '=', name).executeTakeFirst();
    const row = await trx
      .insertInto('mailboxes')
      .values({
        account_id: accountId,
        name,
        special_use: specialUse,
        uidvalidity: await this.nextUidvalidity(trx, accountId),
        uidnext: 1,
        highestmodseq: modseq,
        subscribed: Number(orphan.numDeletedRows) ? 1 : 0,
        created_at: now(),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await this.logChanges(trx, [{ account_id: accountId, modseq, mailbox_id: row.id, message_id: null, uid: null, kind: 'mailbox', created_at: now() }]);
    return row.id;
  }

  /** MOVE inside a transaction that holds the account lock (moveMessages, RENAME INBOX). */
  private async moveInTx(trx: Transaction<Database>, accountId: number, fromId: number, uids: number[], toId: number): Promise<CopyResult> {
    const src = await this.lockedMailbox(trx, fromId);
    const dst = await this.lockedMailbox(trx, toId);
    const rows = await this.messagesByUid(trx, fromId, uids);
    if (!rows.length) return { uidvalidity: dst.uidvalidity, pairs: [] };
    await this.recordTraining(trx, accountId, src, dst, rows.map((r) => r.blob_hash));
    const firstUid = await this.takeUids(trx, toId, rows.length);
    const first = await this.bumpModseqs(trx, accountId, rows.length);
    await this.batchUpdate(trx, 'move', rows.map((r, k) => [r.id, firstUid + k, first + k]), toId);
    const t = now();
    await this.logChanges(trx, [
      ...rows.map((r, k) => ({ account_id: accountId, modseq: first + k, mailbox_id: fromId, message_id: r.id, uid: Number(r.uid), kind: 'expunge', created_at: t })),
      ...rows.map((r, k) => ({ account_id: accountId, modseq: first + k, mailbox_id: toId, message_id: r.id, uid: firstUid + k, kind: 'add', created_at: t })),
    ]);
    const last = first + rows.length - 1;
    await trx.updateTable('mailboxes').set({ highestmodseq: last }).where('id', 'in', [fromId, toId]).execute();
    return { uidvalidity: dst.uidvalidity, pairs: rows.map((r, k) => [Number(r.uid), firstUid + k] as [number, number]) };
  }

  /**
   * Many rows, each with its own values, in few statements: UPDATE … FROM (VALUES …),
   * which SQLite (≥ 3.33) and PostgreSQL both take; VALUES columns are column1…
   * in both. 'flags': [id, flags, modseq]; 'move': [id, uid, modseq] into `toId`.
   */
  private async batchUpdate(trx: Transaction<Database>, kind: 'flags' | 'move', rows: Array<[number, string | number, number]>, toId?: number): Promise<void> {
    for (const part of chunks(rows, 500)) {
      const values = sql.join(
        part.map(([id, v, modseq]) => (kind === 'flags' ? sql`(CAST(${id} AS bigint), CAST(${v} AS text), CAST(${modseq} AS bigint))` : sql`(CAST(${id} AS bigint), CAST(${v} AS bigint), CAST(${modseq} AS bigint))`)),
      );
      if (kind === 'flags') await sql`UPDATE messages SET flags = v.column2, modseq = v.column3 FROM (VALUES ${values}) AS v WHERE messages.id = v.column1`.execute(trx);
      else await sql`UPDATE messages SET mailbox_id = ${toId}, uid = v.column2, modseq = v.column3 FROM (VALUES ${values}) AS v WHERE messages.id = v.column1`.execute(trx);
    }
  }

  private async logChanges(trx: Transaction<Database>, rows: Array<Insertable<ChangesTable>>): Promise<void> {
    for (const part of chunks(rows, 500)) await trx.insertInto('changes').values(part).execute();
  }

  // ---- POP3 (issue #7) ----

  /**
   * The POP3 UPDATE state (RFC 1939 §6) in one transaction: removes the messages
   * `expunge` names (whatever their flags: DELE is the user's decision) and adds
   * \Seen to the `seen` ones that lack it. Written exactly as IMAP EXPUNGE and STORE
   * write theirs (a modseq and a change row each, HIGHESTMODSEQ), so IMAP sessions,
   * QRESYNC and JMAP see POP3's changes. UIDs no longer in the mailbox are skipped.
   * `modseq`: the last one taken (to publish), null when nothing changed.
   */
  async pop3Update(mailboxId: number, expunge: number[], seen: number[]): Promise<{ expunged: number[]; seen: number[]; modseq: number | null }> {
    const accountId = await this.mailboxAccount(mailboxId);
    return this.imapTx(accountId, async (trx) => {
      await this.lockedMailbox(trx, mailboxId);
      const gone = expunge.length ? await this.messagesByUid(trx, mailboxId, expunge) : [];
      const goneUids = new Set(gone.map((r) => Number(r.uid)));
      const flagRows = (seen.length ? await this.messagesByUid(trx, mailboxId, seen.filter((u) => !goneUids.has(u))) : []).filter(
        (r) => !splitFlags(r.flags).some((f) => f.toLowerCase() === '\\seen'),
      );
      const n = gone.length + flagRows.length;
      if (!n) return { expunged: [], seen: [], modseq: null };
      const first = await this.bumpModseqs(trx, accountId, n);
      const t = now();
      if (flagRows.length) {
        await this.batchUpdate(trx, 'flags', flagRows.map((r, k) => [r.id, normalizeFlags([...splitFlags(r.flags), '\\Seen']).join(' '), first + k]));
      }
      const at = first + flagRows.length;
      await this.logChanges(trx, [
        ...flagRows.map((r, k) => ({ account_id: accountId, modseq: first + k, mailbox_id: mailboxId, message_id: r.id, uid: Number(r.uid), kind: 'flags', created_at: t })),
        ...gone.map((r, k) => ({ account_id: accountId, modseq: at + k, mailbox_id: mailboxId, message_id: r.id, uid: Number(r.uid), kind: 'expunge', created_at: t })),
      ]);
      for (const ids of chunks(gone.map((r) => r.id))) await trx.deleteFrom('messages').where('id', 'in', ids).execute();
      await trx.updateTable('mailboxes').set({ highestmodseq: first + n - 1 }).where('id', '=', mailboxId).execute();
      return { expunged: gone.map((r) => Number(r.uid)), seen: flagRows.map((r) => Number(r.uid)), modseq: first + n - 1 };
    });
  }

  /**
   * POP3 EXPIRE (RFC 2449 §6.7): UIDs of the mailbox's \Seen messages whose last
   * change (delivery or flag change, from the change log) is older than `before`.
   * The last change is never earlier than the retrieval that set \Seen, so a message
   * is kept at least that long after it was read.
   */
  async seenUnchangedSince(mailboxId: number, before: number): Promise<number[]> {
    const rows = await this.db
      .selectFrom('messages as m')
      .innerJoin('changes as c', (j) => j.onRef('c.account_id', '=', 'm.account_id').onRef('c.modseq', '=', 'm.modseq').onRef('c.mailbox_id', '=', 'm.mailbox_id'))
      .select('m.uid')
      .where('m.mailbox_id', '=', mailboxId)
      .where('c.kind', '!=', 'expunge')
      .where('c.created_at', '<', before)
      .where(sql<boolean>`lower(' ' || m.flags || ' ') LIKE ${'% \\seen %'} ESCAPE '!'`)
      .orderBy('m.uid')
      .execute();
    return [...new Set(rows.map((r) => Number(r.uid)))];
  }
}
