import { bad, no } from '../errors.ts';
import { atomUpper, isList } from '../args.ts';
import { tokenText, type Command, type Token } from '../parser.ts';
import { parseSearchKeys, runSearch, SearchSyntaxError, usesModseq, type MessageSource } from '../search-keys.ts';
import {
  baseSubject,
  casemap,
  formatThreads,
  orderedSubject,
  referencesThreads,
  sortItems,
  SORT_KEYS,
  threadReferences,
  type ReferencesItem,
  type SortCriterion,
  type SortItem,
  type SortKey,
} from '../sort-thread.ts';
import { decodeWords, first, parseHeaderBlock } from '../../mime/headers.ts';
import type { EnvelopeAddress, MessageIndex } from '../../mime/types.ts';
import type { MessageUid } from '../../store/imap-model.ts';
import type { ImapSession } from '../session.ts';
import type { CommandSpec } from './index.ts';
import { readRange, searchContext, source } from './search.ts';

/**
 * SORT, UID SORT, THREAD and UID THREAD (RFC 5256; RFC 5957 SORT=DISPLAY).
 *   SORT (criteria) charset search-key…      → * SORT n…
 *   THREAD algorithm charset search-key…     → * THREAD (…)(…)
 * The charset is required (UTF-8 or US-ASCII, else NO [BADCHARSET]); the search
 * keys are SEARCH's (../search-keys.ts), evaluated by the same code. The ordering
 * and threading algorithms are in ../sort-thread.ts; this file gathers what they
 * need: the stored MIME index of each matching message (envelope, decoded subject,
 * parsed Date), and for THREAD=REFERENCES the References header from the blob.
 * RFC 7162 §3.1.5: with a MODSEQ search key, SORT adds "(MODSEQ n)".
 */

const CHARSETS = new Set(['UTF-8', 'US-ASCII']);
export const THREAD_ALGORITHMS = ['ORDEREDSUBJECT', 'REFERENCES'] as const;
/** Blob reads in flight for THREAD=REFERENCES header blocks. */
const PARALLEL = 16;
/** MIME indexes fetched per query. */
const META_BATCH = 500;


/** RFC 5256 §3: sort-criteria = "(" sort-criterion *(SP sort-criterion) ")"; sort-criterion = ["REVERSE" SP] sort-key. */
export function parseSortCriteria(t: Token | undefined, cmdName: string): SortCriterion[] {
  if (!isList(t) || !t.items.length) throw bad(`${cmdName}: expected a list of sort criteria`);
  const out: SortCriterion[] = [];
  let reverse = false;
  for (const item of t.items) {
    const w = atomUpper(item);
    if (w === 'REVERSE' && !reverse) {
      reverse = true;
      continue;
    }
    if (!w || !SORT_KEYS.has(w)) throw bad(`${cmdName}: unknown sort criterion ${(tokenText(item) ?? '').slice(0, 30)}`);
    out.push({ key: w as SortKey, reverse });
    reverse = false;
  }
  if (reverse) throw bad(`${cmdName}: REVERSE must be followed by a sort key`);
  return out;
}

/** The first real address (group markers have no host). */
function firstAddress(list: EnvelopeAddress[] | null | undefined): EnvelopeAddress | null {
  return list?.find((a) => a.host !== null && a.mailbox !== null) ?? null;
}

/** RFC 5256 §3: "addr-mailbox of the first … address"; "" when none. */
function addrMailbox(list: EnvelopeAddress[] | null | undefined): string {
  return casemap(firstAddress(list)?.mailbox ?? '');
}

/** RFC 5957 §2: the display name (RFC 2047-decoded) if there is one, else the addr-spec. */
function displayName(list: EnvelopeAddress[] | null | undefined): string {
  const a = firstAddress(list);
  if (!a) return '';
  const name = a.name ? decodeWords(a.name).trim() : '';
  return casemap(name || `${a.mailbox}@${a.host}`);
}

export function sortItemFor(m: MessageUid, seq: number, n: number, ix: MessageIndex | null): SortItem {
  const env = ix?.envelope;
  const subj = baseSubject(ix?.subject ?? '');
  return {
    n,
    seq,
    arrival: m.internalDate,
    // RFC 5256 §2.2: the Date header (in UTC), else the internal date.
    date: ix?.date ?? m.internalDate,
    size: m.size,
    subject: casemap(subj.base),
    replyOrForward: subj.replyOrForward,
    from: addrMailbox(env?.from),
    to: addrMailbox(env?.to),
    cc: addrMailbox(env?.cc),
    displayFrom: displayName(env?.from),
    displayTo: displayName(env?.to),
  };
}

/** The charset and the search program after it; returns the matching messages and whether MODSEQ was used. */
async function searchFrom(s: ImapSession, cmd: Command, at: number) {
  const cs = tokenText(cmd.args[at]);
  if (cs === null || cmd.args[at]?.kind === 'list') throw bad(`${cmd.name}: expected a charset`);
  if (!CHARSETS.has(cs.toUpperCase())) throw no(`${cmd.name}: charset ${cs.slice(0, 40)} is not supported`, 'BADCHARSET (UTF-8 US-ASCII)');
  const sel = s.selected!;
  const messages = sel.messages;
  let key;
  try {
    key = parseSearchKeys(cmd.args.slice(at + 1), { exists: messages.length, maxUid: messages.at(-1)?.uid ?? 0, allowSaved: true });
  } catch (err) {
    if (err instanceof SearchSyntaxError) throw bad(`${cmd.name}: ${err.message}`);
    throw err;
  }
  const withModseq = usesModseq(key);
  if (withModseq) s.enabled.add('CONDSTORE');
  const hits = await runSearch(key, messages, searchContext(s, messages));
  return { hits, withModseq };
}

/** The MIME indexes of the messages, by blob hash (batched reads). */
async function indexes(s: ImapSession, hits: ReadonlyArray<{ m: MessageUid }>): Promise<Map<string, MessageIndex>> {
  const out = new Map<string, MessageIndex>();
  const hashes = [...new Set(hits.map((h) => h.m.blobHash))];
  for (let i = 0; i < hashes.length; i += META_BATCH) {
    const metas = await s.ctx.data.blobMetas(hashes.slice(i, i + META_BATCH));
    for (const [hash, json] of metas) {
      try {
        out.set(hash, JSON.parse(json) as MessageIndex);
      } catch {
        // unreadable index: sorted as a message without headers
      }
    }
  }
  return out;
}

async function sort(s: ImapSession, cmd: Command, byUid: boolean): Promise<string> {
  const criteria = parseSortCriteria(cmd.args[0], cmd.name);
  const { hits, withModseq } = await searchFrom(s, cmd, 1);
  const ix = await indexes(s, hits);
  const items = hits.map((h) => sortItemFor(h.m, h.seq, byUid ? h.m.uid : h.seq, ix.get(h.m.blobHash) ?? null));
  const sorted = sortItems(items, criteria);
  const highest = hits.reduce((top, h) => Math.max(top, h.m.modseq), 0);
  // RFC 5256 §4: sort-data = "SORT" *(SP nz-number); RFC 7162 §3.1.5 adds (MODSEQ n).
  s.untagged(`* SORT${sorted.map((x) => ` ${x.n}`).join('')}${withModseq && sorted.length ? ` (MODSEQ ${highest})` : ''}`);
  return `${cmd.name} completed`;
}

/**
 * The References header of each message, from its header block: those of small
 * messages in batches from the database, the others read from the blob, PARALLEL at a time.
 */
async function referenceItems(s: ImapSession, hits: ReadonlyArray<{ m: MessageUid; seq: number }>, items: SortItem[], ix: Map<string, MessageIndex>): Promise<ReferencesItem[]> {
  const out = new Array<ReferencesItem>(hits.length);
  const src = source(s);
  const blocks = new Map<string, Buffer>();
  const hashes = [...new Set(hits.map((h) => h.m.blobHash))];
  try {
    for (let i = 0; i < hashes.length; i += META_BATCH) for (const [hash, b] of await src.headerBlocks(hashes.slice(i, i + META_BATCH))) blocks.set(hash, b.head);
  } catch {
    // read one by one below
  }
  let next = 0;
  const worker = async () => {
    while (next < hits.length) {
      const i = next++;
      const m = hits[i]!.m;
      const meta = ix.get(m.blobHash);
      let references: string | null = null;
      if (meta) {
        try {
          const block = blocks.get(m.blobHash) ?? (await src.read(m.blobHash, meta.root.headerStart, meta.root.bodyStart));
          references = first(parseHeaderBlock(block.toString('latin1')), 'references');
        } catch {
          // gone meanwhile: threaded by In-Reply-To alone
        }
      }
      const messageId = threadReferences(meta?.envelope.messageId ?? null, null)[0] ?? null;
      out[i] = { item: items[i]!, messageId, references: threadReferences(references, meta?.envelope.inReplyTo ?? null) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, hits.length) }, worker));
  return out;
}

async function thread(s: ImapSession, cmd: Command, byUid: boolean): Promise<string> {
  const algorithm = atomUpper(cmd.args[0]);
  if (!algorithm) throw bad(`${cmd.name}: expected a threading algorithm`);
  if (!(THREAD_ALGORITHMS as readonly string[]).includes(algorithm)) throw bad(`${cmd.name}: unknown threading algorithm ${algorithm.slice(0, 30)}`);
  const { hits } = await searchFrom(s, cmd, 1);
  const ix = await indexes(s, hits);
  const items = hits.map((h) => sortItemFor(h.m, h.seq, byUid ? h.m.uid : h.seq, ix.get(h.m.blobHash) ?? null));
  const threads = algorithm === 'ORDEREDSUBJECT' ? orderedSubject(items) : referencesThreads(await referenceItems(s, hits, items, ix));
  // RFC 5256 §4: thread-data = "THREAD" [SP 1*thread-list]
  const data = formatThreads(threads);
  s.untagged(data ? `* THREAD ${data}` : '* THREAD');
  return `${cmd.name} completed`;
}

export const sortThreadCommands: CommandSpec[] = [
  // As SEARCH: no EXPUNGE while the client holds the sequence numbers of the answer.
  { name: 'SORT', states: ['selected'], expungeSafe: false, run: (s, cmd) => sort(s, cmd, false) },
  { name: 'UID SORT', states: ['selected'], expungeSafe: true, run: (s, cmd) => sort(s, cmd, true) },
  { name: 'THREAD', states: ['selected'], expungeSafe: false, run: (s, cmd) => thread(s, cmd, false) },
  { name: 'UID THREAD', states: ['selected'], expungeSafe: true, run: (s, cmd) => thread(s, cmd, true) },
];
