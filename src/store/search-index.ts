import { sql, type RawBuilder } from 'kysely';
import type { DataStore } from './data-store.ts';

/**
 * Store queries behind IMAP SEARCH (src/imap/search-keys.ts): batched loads of what
 * the exact evaluator reads, and a prefilter over the SQLite full-text copy of each
 * message (`search_text`, filled from MimeIndexer's searchText) that proves, for most
 * messages, that a body cannot contain a term — so only the rest is decoded.
 *
 * The prefilter answers "cannot contain" only when that is certain; every other
 * message stays for the exact evaluator. Why it is sound:
 * - searchText holds the decoded text of every text/plain and text/html part
 *   (html through htmlToText), in order, separated by "\n", plus Subject/From/To/Cc
 *   of the message and of embedded messages. The exact BODY text is the decoded text
 *   of every text/* part plus every header line of embedded messages, also joined by
 *   "\n". So for a message with no message/* part and no other text/* subtype
 *   (textIndexedWhole), every piece of the exact body text is, character for
 *   character, a piece of searchText — as long as both were made by the same
 *   decodeText/htmlToText: a change to those must re-index the stored messages.
 * - searchText is capped (MimeIndexer maxSearchText, 256 Ki characters, and 4× that
 *   in raw bytes per part): a message over 1 MiB or with text at the cap may have been
 *   cut, so it is left to the exact evaluator.
 * - The probe is ASCII and without "\n", so a match of it lies inside one piece (the
 *   exact text also joins empty pieces, which searchText leaves out)
 *   and its characters come from the same characters of the stored text:
 *   the exact evaluator folds with NFC + toLowerCase, which turns only four non-ASCII
 *   characters into ASCII ones (U+0130 → "i̇", U+037E → ";", U+1FEF → "`",
 *   U+212A → "k"); a text containing one of those that the probe needs stays.
 *   SQLite's LIKE folds ASCII case only, which is all the probe needs; it stops at a
 *   NUL, so a text with one stays too.
 * - A message still in search_pending (delivered, not indexed yet) or indexed with an
 *   empty text has no row: it is never proven, so it stays.
 * The token index itself (MATCH) cannot serve: IMAP matches substrings
 * ("fish" in "zebrafish"), FTS5 unicode61 matches whole tokens or prefixes, so a
 * MATCH answer would not be a superset. The scan reads the table's text instead.
 */

/** MimeIndexer's default cap on searchText, in UTF-16 code units (its `maxSearchText`). */
export const SEARCH_TEXT_CAP = 256 * 1024;
/** Raw bytes of one text part the indexer keeps (4 × the cap): no part of a smaller message was cut. */
export const SEARCH_TEXT_MAX_MESSAGE = 4 * SEARCH_TEXT_CAP;

/** Non-ASCII characters that NFC + toLowerCase turn into ASCII, by the ASCII character they give. */
export const FOLDS_INTO_ASCII: ReadonlyArray<readonly [ascii: string, source: string]> = [
  ['i', '\u0130'],
  [';', '\u037e'],
  ['`', '\u1fef'],
  ['k', '\u212a'],
];

/**
 * The scan reads the whole full-text table (its hash column is not indexed), so it
 * is used only when the messages asked about are at least 1/SCAN_RATIO of its rows;
 * for fewer, the exact evaluator is cheaper. Measured: ~10 µs per scanned row against
 * ~70 µs per message decoded.
 */
const SCAN_RATIO = 6;
/** IN-list size for batched lookups (below every backend's parameter limit). */
const BATCH = 500;
/** Messages whose bytes are loaded per query: bounds memory (inline messages are ≤ 64 KiB by default). */
const DATA_BATCH = 200;

function* chunks<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

export interface StoredMessage {
  /** JSON of the MIME index (blobs.meta). */
  meta: string;
  /** The message bytes when stored in the database (small messages); null when in a file or in chunks. */
  data: Buffer | null;
}

/**
 * MIME indexes and, with `withData`, the bytes of messages stored inline, one query
 * per batch. A hash absent from the answer has no blob row (the message is gone).
 */
export async function loadMessages(data: DataStore, hashes: readonly string[], withData: boolean): Promise<Map<string, StoredMessage>> {
  const out = new Map<string, StoredMessage>();
  const unique = [...new Set(hashes)];
  for (const part of chunks(unique, withData ? DATA_BATCH : BATCH)) {
    if (withData) {
      const rows = await data.db.selectFrom('blobs').select(['hash', 'meta', 'data']).where('hash', 'in', part).execute();
      for (const r of rows) out.set(r.hash, { meta: r.meta, data: r.data ? Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength) : null });
    } else {
      const rows = await data.db.selectFrom('blobs').select(['hash', 'meta']).where('hash', 'in', part).execute();
      for (const r of rows) out.set(r.hash, { meta: r.meta, data: null });
    }
  }
  return out;
}

/**
 * Whether the exact BODY text of a message is made of pieces of its searchText, in
 * full: no message/* part (the exact text has every header line of an embedded
 * message, searchText only four of them), no text/* part but plain and html (the
 * only ones indexed), and small enough that no part was cut. `meta` is the stored
 * MIME index, compact JSON (JSON.stringify), where `"type":"…"` can only be a key
 * and its value: a text part must read `"type":"text","subtype":"plain"` (or html);
 * any other `"type":"text"` or `"type":"message"` — even a parameter called type —
 * keeps the message for the exact evaluator, and so does JSON in any other layout.
 */
export function textIndexedWhole(meta: string, size: number): boolean {
  return size <= SEARCH_TEXT_MAX_MESSAGE && meta.includes('"type":"') && !OTHER_PARTS.test(meta);
}
const OTHER_PARTS = /"type":"(?:message"|text"(?!,"subtype":"(?:plain|html)"))/;

/**
 * Whether bodiesWithout can answer for `messages` messages at a lower cost than the
 * exact evaluator: there is a full-text table, and they are a large enough share of
 * its rows (the scan reads all of them).
 */
export async function bodyPrefilterPays(data: DataStore, messages: number): Promise<boolean> {
  if (!messages || !data.hasFts) return false;
  // rowid is ascending (rows are only inserted): the highest is a cheap upper bound of the rows.
  const top = await sql<{ rowid: number }>`SELECT rowid FROM search_text ORDER BY rowid DESC LIMIT 1`.execute(data.db);
  const rows = Number(top.rows[0]?.rowid ?? 0);
  return rows > 0 && messages * SCAN_RATIO >= rows;
}

/**
 * SQLite: of the messages, those whose body text provably does not contain `probe`
 * (lower-case ASCII without LF or NUL; see the top of this file). Only messages
 * passing textIndexedWhole are considered. null when there is no full-text table
 * or the scan would cost more than the exact evaluation.
 */
export async function bodiesWithout(data: DataStore, messages: ReadonlyArray<{ hash: string; meta: string; size: number }>, probe: string): Promise<Set<string> | null> {
  if (!probe || /[^\x01-\x09\x0b-\x7f]/.test(probe) || probe !== probe.toLowerCase()) throw new Error('bodiesWithout: the probe must be lower-case ASCII without LF or NUL');
  const whole = [...new Set(messages.filter((m) => textIndexedWhole(m.meta, m.size)).map((m) => m.hash))];
  if (!whole.length) return new Set();
  if (!(await bodyPrefilterPays(data, whole.length))) return null;
  const pattern = `%${probe.replace(/[!%_]/g, '!$&')}%`;
  // Texts that might hold the probe where LIKE does not see it: after a NUL (LIKE stops
  // there), or as a character that folds into an ASCII one the probe has.
  const unsure: RawBuilder<unknown>[] = [sql`instr(s.body, char(0)) > 0`];
  for (const [ascii, source] of FOLDS_INTO_ASCII) if (probe.includes(ascii)) unsure.push(sql`instr(s.body, ${source}) > 0`);
  // One parameter (a JSON array), not IN lists: every statement is a scan of the whole
  // table. octet_length (SQLite ≥ 3.43) counts bytes, at least the UTF-16 length the cap
  // counts. LIKE folds ASCII case (PRAGMA case_sensitive_like must stay off).
  const r = await sql<{ hash: string }>`
    SELECT s.hash FROM search_text s
    WHERE s.hash IN (SELECT value FROM json_each(${JSON.stringify(whole)}))
      AND octet_length(s.body) < ${SEARCH_TEXT_CAP}
      AND NOT (s.body LIKE ${pattern} ESCAPE '!' OR ${sql.join(unsure, sql` OR `)})`.execute(data.db);
  return new Set(r.rows.map((x) => x.hash));
}
