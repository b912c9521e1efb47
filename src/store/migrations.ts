import { PostgresAdapter, sql, type ColumnDefinitionBuilder, type Kysely, type Migration, type MigrationProvider } from 'kysely';

/**
 * Versioned schema migrations, one source of truth for every backend (kysely's
 * schema builder emits the right DDL per dialect). Never edit a released
 * migration: add the next one.
 */
const isPostgres = (db: Kysely<unknown>) => db.getExecutor().adapter instanceof PostgresAdapter;

/**
 * Surrogate keys: SQLite's INTEGER PRIMARY KEY AUTOINCREMENT, PostgreSQL's serial.
 * (The SQLite DDL is unchanged from the first release.)
 */
const idType = (db: Kysely<unknown>) => (isPostgres(db) ? 'serial' : 'integer');
const idColumn = (db: Kysely<unknown>, c: ColumnDefinitionBuilder) => (isPostgres(db) ? c.primaryKey() : c.primaryKey().autoIncrement());

const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('domains')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('accounts')
        .addColumn('id', idType(db), (c) => idColumn(db, c))
        .addColumn('email', 'text', (c) => c.notNull().unique())
        .addColumn('password_hash', 'text')
        .addColumn('display_name', 'text')
        .addColumn('quota_bytes', 'bigint')
        .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('modseq', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('aliases')
        .addColumn('id', idType(db), (c) => idColumn(db, c))
        .addColumn('address', 'text', (c) => c.notNull())
        .addColumn('target', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addUniqueConstraint('aliases_address_target', ['address', 'target'])
        .execute();
      await db.schema
        .createTable('mailboxes')
        .addColumn('id', idType(db), (c) => idColumn(db, c))
        .addColumn('account_id', 'integer', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('special_use', 'text')
        .addColumn('uidvalidity', 'bigint', (c) => c.notNull())
        .addColumn('uidnext', 'bigint', (c) => c.notNull().defaultTo(1))
        .addColumn('highestmodseq', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('subscribed', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addUniqueConstraint('mailboxes_account_name', ['account_id', 'name'])
        .execute();
      await db.schema
        .createTable('blobs')
        .addColumn('hash', 'text', (c) => c.primaryKey())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('meta', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('messages')
        .addColumn('id', idType(db), (c) => idColumn(db, c))
        .addColumn('account_id', 'integer', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
        .addColumn('mailbox_id', 'integer', (c) => c.notNull().references('mailboxes.id').onDelete('cascade'))
        .addColumn('uid', 'bigint', (c) => c.notNull())
        .addColumn('modseq', 'bigint', (c) => c.notNull())
        .addColumn('blob_hash', 'text', (c) => c.notNull())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('internal_date', 'bigint', (c) => c.notNull())
        .addColumn('flags', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('subject', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('from_addr', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('date_header', 'bigint')
        .addColumn('message_id', 'text')
        .addUniqueConstraint('messages_mailbox_uid', ['mailbox_id', 'uid'])
        .execute();
      await db.schema.createIndex('messages_blob').on('messages').column('blob_hash').execute();
      await db.schema
        .createTable('changes')
        .addColumn('id', idType(db), (c) => idColumn(db, c))
        .addColumn('account_id', 'integer', (c) => c.notNull())
        .addColumn('modseq', 'bigint', (c) => c.notNull())
        .addColumn('mailbox_id', 'integer')
        .addColumn('message_id', 'integer')
        .addColumn('uid', 'bigint')
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('changes_account_modseq').on('changes').columns(['account_id', 'modseq']).execute();
      await db.schema
        .createTable('queue')
        .addColumn('id', idType(db), (c) => idColumn(db, c))
        .addColumn('queue_id', 'text', (c) => c.notNull())
        .addColumn('sender', 'text', (c) => c.notNull())
        .addColumn('recipient', 'text', (c) => c.notNull())
        .addColumn('blob_hash', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt', 'bigint', (c) => c.notNull())
        .addColumn('last_error', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('queue_next').on('queue').columns(['status', 'next_attempt']).execute();
    },
  },
  '0002_inline_blobs': {
    // Small messages are stored in the row itself (store.inline_max_size), so one
    // group commit makes a whole batch of deliveries durable with one fsync.
    async up(db: Kysely<unknown>) {
      const type = isPostgres(db) ? 'bytea' : 'blob';
      await db.schema.alterTable('blobs').addColumn('data', type).execute();
    },
  },
  '0003_search_pending': {
    // Messages whose search text is not in the full-text index yet (it is filled
    // after the delivery is acknowledged; see SqliteMessageWriter.flushSearch).
    async up(db: Kysely<unknown>) {
      await db.schema.createTable('search_pending').addColumn('hash', 'text', (c) => c.primaryKey()).execute();
    },
  },
  '0004_blob_chunks': {
    // Messages over store.inline_max_size when the blobs live in the database
    // (PostgreSQL: nodes share no filesystem), in fixed-size pieces so reading and
    // writing stream with bounded memory. `hash` is "tmp:<id>" while being written.
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('blob_chunks')
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('seq', 'integer', (c) => c.notNull())
        .addColumn('data', isPostgres(db) ? 'bytea' : 'blob', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('blob_chunks_pk', ['hash', 'seq'])
        .execute();
    },
  },
  '0005_policy_state_queue_lease': {
    async up(db: Kysely<unknown>) {
      // Counters, bans, greylist entries: state every node must share (a ban on
      // node A holds on node B), each row with its expiry.
      await db.schema
        .createTable('policy_state')
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('value', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('policy_state_pk', ['kind', 'key'])
        .execute();
      await db.schema.createIndex('policy_state_expiry').on('policy_state').column('expires_at').execute();
      // A claimed queue entry belongs to one node until its lease runs out (a node
      // that dies mid-delivery gives its work back by letting the lease expire).
      await db.schema.alterTable('queue').addColumn('lease_until', 'bigint').execute();
    },
  },
  '0006_submission': {
    // Users who administer a domain may send as any address in it (submission's
    // sender rules) and, later, manage it in the admin UI. SCRAM-SHA-256 secrets
    // live beside the argon2id hash (auth/scram.ts).
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('accounts').addColumn('scram_sha256', 'text').execute();
      await db.schema
        .createTable('domain_admins')
        .addColumn('domain', 'text', (c) => c.notNull().references('domains.name').onDelete('cascade'))
        .addColumn('account_id', 'integer', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
        .addPrimaryKeyConstraint('domain_admins_pk', ['domain', 'account_id'])
        .execute();
    },
  },
  '0007_queue_delivery': {
    // The delivery agent (issue #5): RFC 3461 DSN parameters per recipient, whether
    // the sender asked for SMTPUTF8 (RFC 6531), whether the delay warning went out,
    // and which node holds a lease (a restarted node takes its own leases back at once).
    async up(db: Kysely<unknown>) {
      for (const [name, type] of [
        ['notify', 'text'],
        ['orcpt', 'text'],
        ['ret', 'text'],
        ['envid', 'text'],
        ['lease_owner', 'text'],
      ] as const) {
        await db.schema.alterTable('queue').addColumn(name, type).execute();
      }
      await db.schema.alterTable('queue').addColumn('smtputf8', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('queue').addColumn('warned', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    },
  },
  '0008_imap': {
    // IMAP (issue #6): subscriptions to names that have no mailbox (RFC 9051
    // §6.3.7: a subscription survives DELETE and may name a mailbox not created
    // yet). Existing mailboxes keep theirs in mailboxes.subscribed. The last
    // UIDVALIDITY handed out per account, so a recreated mailbox never reuses one.
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('accounts').addColumn('last_uidvalidity', 'bigint', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema
        .createTable('subscriptions')
        .addColumn('account_id', 'integer', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('subscriptions_pk', ['account_id', 'name'])
        .execute();
    },
  },
  '0009_imap_views_training': {
    // The shared per-mailbox message lists (mailbox-views.ts) catch up with
    // "messages of this mailbox changed after modseq N" — also RFC 7162
    // CHANGEDSINCE. And the spam filter's training signals: a user moving a message
    // into Junk (spam) or out of it (ham), recorded by IMAP (issue #6) for the
    // learning filter of the anti-spam issue to consume.
    async up(db: Kysely<unknown>) {
      await db.schema.createIndex('messages_mailbox_modseq').on('messages').columns(['mailbox_id', 'modseq']).execute();
      await db.schema
        .createTable('training_signals')
        .addColumn('id', idType(db), (c) => idColumn(db, c))
        .addColumn('account_id', 'integer', (c) => c.notNull().references('accounts.id').onDelete('cascade'))
        .addColumn('blob_hash', 'text', (c) => c.notNull())
        .addColumn('verdict', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('training_signals_account').on('training_signals').columns(['account_id', 'id']).execute();
    },
  },
  '0010_access_rules': {
    // Access lists (the anti-spam issue, #9): rules the administrator (scope '', everyone) or a
    // user (scope = their address; a name, not an account id, so LDAP users have them too) sets
    // on client addresses, senders and recipients: reject, or accept (skip the other checks).
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('access_rules')
        .addColumn('id', idType(db), (c) => idColumn(db, c))
        .addColumn('scope', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('value', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('access_rules_key').on('access_rules').columns(['scope', 'kind', 'value']).unique().execute();
    },
  },
  '0011_bayes': {
    // The builtin content filter's Bayesian classifier (src/policy/content/bayes.ts). Per scope
    // ('' global, else an account's address): in how many learned spam and ham messages each
    // token occurred (tokens as 16 hex digits of their SHA-1: fixed size, no mail text stored),
    // how many messages were learned, which message was learned as what (SpamAssassin's
    // "seen" database: relearning a message as the other kind first unlearns it), and the
    // trainer's cursor in training_signals.
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('bayes_tokens')
        .addColumn('scope', 'text', (c) => c.notNull())
        .addColumn('token', 'text', (c) => c.notNull())
        .addColumn('spam_count', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('ham_count', 'bigint', (c) => c.notNull().defaultTo(0))
        .addPrimaryKeyConstraint('bayes_tokens_pk', ['scope', 'token'])
        .execute();
      await db.schema
        .createTable('bayes_totals')
        .addColumn('scope', 'text', (c) => c.primaryKey())
        .addColumn('spam_messages', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('ham_messages', 'bigint', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .createTable('bayes_seen')
        .addColumn('scope', 'text', (c) => c.notNull())
        .addColumn('blob_hash', 'text', (c) => c.notNull())
        .addColumn('verdict', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('bayes_seen_pk', ['scope', 'blob_hash'])
        .execute();
      await db.schema
        .createTable('bayes_cursor')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
};

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};

/** SQLite-only: the FTS5 table behind the SQLite search index. */
export async function createSqliteSearchTable(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE VIRTUAL TABLE IF NOT EXISTS search_text USING fts5(hash UNINDEXED, body, tokenize = 'unicode61 remove_diacritics 2')`.execute(db);
}
