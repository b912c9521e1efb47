import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from './schema.ts';
import { chunks } from './imap-model.ts';

/**
 * The Bayes tables' SQL (migration 0011), behind DataStore's bayes* methods. The classifier
 * (src/policy/content/bayes.ts) hashes tokens before they get here: these functions see opaque
 * strings. One statement text for SQLite and PostgreSQL (both have INSERT … ON CONFLICT).
 */

export type BayesVerdict = 'spam' | 'ham';

export interface BayesTotals {
  spam: number;
  ham: number;
}

export interface BayesTokenCounts {
  scope: string;
  token: string;
  spam: number;
  ham: number;
}

/** Rows per INSERT: 4 parameters each, far below either backend's limit. */
const BATCH = 500;

export async function bayesTotals(db: Kysely<Database>, scopes: string[] | null): Promise<Map<string, BayesTotals>> {
  let q = db.selectFrom('bayes_totals').selectAll().orderBy('scope');
  if (scopes) q = q.where('scope', 'in', scopes.length ? scopes : ['']);
  const out = new Map<string, BayesTotals>();
  for (const r of await q.execute()) out.set(r.scope, { spam: Number(r.spam_messages), ham: Number(r.ham_messages) });
  return out;
}

/** Distinct tokens per scope, for `postern spam stats`. */
export async function bayesTokenCounts(db: Kysely<Database>): Promise<Map<string, number>> {
  const rows = await db.selectFrom('bayes_tokens').select(['scope', sql<number>`count(*)`.as('n')]).groupBy('scope').execute();
  return new Map(rows.map((r) => [r.scope, Number(r.n)]));
}

export async function bayesCounts(db: Kysely<Database>, scopes: string[], tokens: string[]): Promise<BayesTokenCounts[]> {
  if (!scopes.length || !tokens.length) return [];
  const out: BayesTokenCounts[] = [];
  for (const part of chunks([...new Set(tokens)], BATCH)) {
    const rows = await db.selectFrom('bayes_tokens').selectAll().where('scope', 'in', scopes).where('token', 'in', part).execute();
    for (const r of rows) out.push({ scope: r.scope, token: r.token, spam: Number(r.spam_count), ham: Number(r.ham_count) });
  }
  return out;
}

/**
 * Learns a message's tokens in one scope as `verdict`, or forgets it (null), in one transaction.
 * A message already learned as the same kind is left alone; one learned as the other kind is
 * unlearned first (SpamAssassin's sa-learn does the same with its "seen" database). Returns
 * what the message was learned as before.
 */
export async function bayesLearn(db: Kysely<Database>, scope: string, blobHash: string, tokens: string[], verdict: BayesVerdict | null, at: number): Promise<BayesVerdict | null> {
  const uniq = [...new Set(tokens)].sort(); // one order everywhere: no deadlocks between PostgreSQL nodes
  return db.transaction().execute(async (trx) => {
    const seen = await trx.selectFrom('bayes_seen').select('verdict').where('scope', '=', scope).where('blob_hash', '=', blobHash).executeTakeFirst();
    const before = seen?.verdict ?? null;
    if (before === verdict) return before;
    if (before) await adjust(trx, scope, uniq, before, -1);
    if (verdict) await adjust(trx, scope, uniq, verdict, +1);
    if (!verdict) await trx.deleteFrom('bayes_seen').where('scope', '=', scope).where('blob_hash', '=', blobHash).execute();
    else if (before) await trx.updateTable('bayes_seen').set({ verdict, created_at: at }).where('scope', '=', scope).where('blob_hash', '=', blobHash).execute();
    else await trx.insertInto('bayes_seen').values({ scope, blob_hash: blobHash, verdict, created_at: at }).execute();
    return before;
  });
}

/** Adds `delta` (+1 or -1) to the tokens' and the scope's counts of one kind; never below 0. */
async function adjust(trx: Transaction<Database>, scope: string, tokens: string[], verdict: BayesVerdict, delta: 1 | -1): Promise<void> {
  const col = verdict === 'spam' ? 'spam_count' : 'ham_count';
  const clamp = (ref: string) => sql<number>`CASE WHEN ${sql.ref(ref)} + ${delta} < 0 THEN 0 ELSE ${sql.ref(ref)} + ${delta} END`;
  const first = Math.max(0, delta);
  for (const part of chunks(tokens, BATCH)) {
    await trx
      .insertInto('bayes_tokens')
      .values(part.map((token) => ({ scope, token, spam_count: verdict === 'spam' ? first : 0, ham_count: verdict === 'ham' ? first : 0 })))
      .onConflict((oc) => oc.columns(['scope', 'token']).doUpdateSet({ [col]: clamp(`bayes_tokens.${col}`) }))
      .execute();
  }
  // Tokens no message holds any more take no space.
  if (delta < 0) {
    for (const part of chunks(tokens, BATCH)) {
      await trx.deleteFrom('bayes_tokens').where('scope', '=', scope).where('token', 'in', part).where('spam_count', '=', 0).where('ham_count', '=', 0).execute();
    }
  }
  const tcol = verdict === 'spam' ? 'spam_messages' : 'ham_messages';
  await trx
    .insertInto('bayes_totals')
    .values({ scope, spam_messages: verdict === 'spam' ? first : 0, ham_messages: verdict === 'ham' ? first : 0 })
    .onConflict((oc) => oc.column('scope').doUpdateSet({ [tcol]: clamp(`bayes_totals.${tcol}`) }))
    .execute();
}

/** The trainer's position in training_signals (0 before the first signal). */
export async function bayesCursor(db: Kysely<Database>, name: string): Promise<number> {
  const r = await db.selectFrom('bayes_cursor').select('value').where('name', '=', name).executeTakeFirst();
  return r ? Number(r.value) : 0;
}

/**
 * Moves the cursor from `from` to `to` unless someone else moved it meanwhile (another node's
 * trainer): false then, and the caller leaves that work to them.
 */
export async function bayesAdvanceCursor(db: Kysely<Database>, name: string, from: number, to: number): Promise<boolean> {
  if (from === 0) {
    const r = await db.insertInto('bayes_cursor').values({ name, value: to }).onConflict((oc) => oc.column('name').doNothing()).executeTakeFirst();
    if (Number(r.numInsertedOrUpdatedRows ?? 0n) > 0) return true;
  }
  const r = await db.updateTable('bayes_cursor').set({ value: to }).where('name', '=', name).where('value', '=', from).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}
