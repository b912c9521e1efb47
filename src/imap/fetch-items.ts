import { tokenText, type Token } from './parser.ts';
import { bad } from './errors.ts';
import { formatSection, isRootHeader, parseSection, SectionSyntaxError, type Partial, type Section } from './sections.ts';
import type { DataStore } from '../store/data-store.ts';
import type { MessageIndex } from '../mime/types.ts';

/**
 * FETCH data items (RFC 9051 §6.4.5, §9 fetch-att; RFC 3501 §6.4.5 for the RFC822
 * items; RFC 3516 BINARY; RFC 7162 MODSEQ): parsed from the command's tokens into
 * typed items, each knowing the name its response carries (RFC 9051 §7.5.2).
 */

export type SimpleItem = 'UID' | 'FLAGS' | 'INTERNALDATE' | 'RFC822.SIZE' | 'ENVELOPE' | 'BODY' | 'BODYSTRUCTURE' | 'MODSEQ';

export type FetchItem =
  | { kind: SimpleItem }
  /** BODY[section]<partial>, BODY.PEEK[…], RFC822, RFC822.HEADER, RFC822.TEXT. */
  | { kind: 'section'; name: string; section: Section; partial: Partial | null; peek: boolean }
  /** BINARY[part]<partial>, BINARY.PEEK[…] (RFC 3516 §4.2). */
  | { kind: 'binary'; name: string; part: number[]; partial: Partial | null; peek: boolean }
  /** BINARY.SIZE[part] (RFC 3516 §4.2). */
  | { kind: 'binary-size'; name: string; part: number[] };

/** RFC 9051 §6.4.5 macros (only valid alone, not inside a list). */
const MACROS: Record<string, SimpleItem[]> = {
  ALL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE'],
  FAST: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE'],
  FULL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODY'],
};

const SIMPLE = new Set<string>(['UID', 'FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODY', 'BODYSTRUCTURE', 'MODSEQ']);

/** The response name of an item (duplicates in one request are answered once). */
export function itemName(item: FetchItem): string {
  return 'name' in item ? item.name : item.kind;
}

/** Does the item need the message's MIME index (blob meta)? */
export function needsIndex(item: FetchItem): boolean {
  switch (item.kind) {
    case 'ENVELOPE':
    case 'BODY':
    case 'BODYSTRUCTURE':
    case 'binary':
    case 'binary-size':
      return true;
    case 'section':
      return item.section.part.length > 0 || item.section.text !== null;
    default:
      return false;
  }
}

/**
 * What of the message's bytes an item reads: nothing, only the top-level header
 * (HEADER, HEADER.FIELDS[.NOT], RFC822.HEADER: found without the MIME index, see
 * sections.ts headerEnd), or any other part of the message.
 */
export function bytesRead(item: FetchItem): 'none' | 'header' | 'any' {
  switch (item.kind) {
    case 'section':
      return isRootHeader(item.section) ? 'header' : 'any';
    case 'binary':
    case 'binary-size':
      return 'any';
    default:
      return 'none';
  }
}

/** Does the item need the MIME index even when the message's header bytes are at hand? */
export function needsIndexBeyondHeader(item: FetchItem): boolean {
  return needsIndex(item) && !(item.kind === 'section' && isRootHeader(item.section));
}

/** Does fetching the item set \Seen (RFC 9051 §6.4.5: BODY[…] and BINARY[…] without .PEEK; RFC822, RFC822.TEXT)? */
export function setsSeen(item: FetchItem): boolean {
  return (item.kind === 'section' || item.kind === 'binary') && !item.peek;
}

function quoteField(f: string): string {
  return '"' + f.replace(/["\\]/g, '\\$&') + '"';
}

/** The bracketed tokens of BODY[…] as a Section; BAD on a syntax error. */
export function sectionOf(tokens: Token[]): Section {
  if (tokens.length === 0) return { part: [], text: null, fields: [] };
  const first = tokens[0];
  const head = first.kind === 'atom' && !first.section && !first.partial ? first.value : first.kind === 'number' ? first.text : null;
  if (head === null) throw bad('FETCH: invalid section');
  let spec = head;
  if (/(^|\.)HEADER\.FIELDS(\.NOT)?$/i.test(head)) {
    const list = tokens[1];
    if (tokens.length !== 2 || !list || list.kind !== 'list' || list.items.length === 0) throw bad('FETCH: HEADER.FIELDS needs a list of header field names');
    const names = list.items.map((t) => (t.kind === 'list' || t.kind === 'stream' ? null : tokenText(t)));
    if (names.some((n) => n === null)) throw bad('FETCH: invalid header field name');
    spec += ' (' + (names as string[]).map(quoteField).join(' ') + ')';
  } else if (tokens.length !== 1) throw bad('FETCH: invalid section');
  try {
    return parseSection(spec);
  } catch (err) {
    if (err instanceof SectionSyntaxError) throw bad(`FETCH: ${err.message}`);
    throw err;
  }
}

function partialOf(t: Extract<Token, { kind: 'atom' }>): Partial | null {
  if (!t.partial) return null;
  // RFC 9051 §9: "<" number "." nz-number ">"
  if (t.partial.length === undefined || t.partial.length === 0) throw bad('FETCH: a partial needs <origin.count> with a non-zero count');
  return { origin: t.partial.offset, count: t.partial.length };
}

function partialSuffix(p: Partial | null): string {
  // RFC 9051 §7.5.2: the response gives the origin only.
  return p ? `<${p.origin}>` : '';
}

/** One fetch-att. */
function parseItem(t: Token): FetchItem {
  if (t.kind !== 'atom') throw bad('FETCH: invalid data item');
  const name = t.value.toUpperCase();
  if (!t.section) {
    if (t.partial) throw bad(`FETCH: invalid data item ${name.slice(0, 40)}`);
    if (SIMPLE.has(name)) return { kind: name as SimpleItem };
    const whole: Section = { part: [], text: null, fields: [] };
    // RFC 3501 §6.4.5: RFC822 ≡ BODY[], RFC822.HEADER ≡ BODY.PEEK[HEADER], RFC822.TEXT ≡ BODY[TEXT], answered under their own names.
    if (name === 'RFC822') return { kind: 'section', name, section: whole, partial: null, peek: false };
    if (name === 'RFC822.HEADER') return { kind: 'section', name, section: { ...whole, text: 'HEADER' }, partial: null, peek: true };
    if (name === 'RFC822.TEXT') return { kind: 'section', name, section: { ...whole, text: 'TEXT' }, partial: null, peek: false };
    throw bad(`FETCH: unknown data item ${name.slice(0, 40)}`);
  }
  const partial = partialOf(t);
  if (name === 'BODY' || name === 'BODY.PEEK') {
    const section = sectionOf(t.section);
    return { kind: 'section', name: `BODY[${formatSection(section)}]${partialSuffix(partial)}`, section, partial, peek: name === 'BODY.PEEK' };
  }
  if (name === 'BINARY' || name === 'BINARY.PEEK' || name === 'BINARY.SIZE') {
    // RFC 3516 §6: section-binary = "[" [section-part] "]"
    const section = sectionOf(t.section);
    if (section.text !== null) throw bad(`FETCH: ${name} takes part numbers only`);
    const part = section.part;
    if (name === 'BINARY.SIZE') {
      if (partial) throw bad('FETCH: BINARY.SIZE takes no partial');
      return { kind: 'binary-size', name: `BINARY.SIZE[${part.join('.')}]`, part };
    }
    return { kind: 'binary', name: `BINARY[${part.join('.')}]${partialSuffix(partial)}`, part, partial, peek: name === 'BINARY.PEEK' };
  }
  throw bad(`FETCH: unknown data item ${name.slice(0, 40)}`);
}

/**
 * The items argument of FETCH: a macro, a single item, or a parenthesized list
 * (RFC 9051 §9: "ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")").
 * Duplicates are dropped.
 */
export function parseFetchItems(t: Token | undefined): FetchItem[] {
  if (!t) throw bad('FETCH: expected data items');
  let items: FetchItem[];
  if (t.kind === 'list') {
    if (t.items.length === 0) throw bad('FETCH: empty data item list');
    items = t.items.map(parseItem);
  } else if (t.kind === 'atom' && !t.section && !t.partial && MACROS[t.value.toUpperCase()]) {
    items = MACROS[t.value.toUpperCase()].map((kind) => ({ kind }));
  } else items = [parseItem(t)];
  const seen = new Set<string>();
  return items.filter((i) => {
    const n = itemName(i);
    if (seen.has(n)) return false;
    seen.add(n);
    return true;
  });
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad2 = (n: number) => String(n).padStart(2, '0');
/** "00" … "59". */
const TWO = Array.from({ length: 60 }, (_, i) => pad2(i));
const DAY_MS = 86_400_000;

/**
 * RFC 9051 §9 date-time, in UTC: "01-Dec-2026 05:56:01 +0000" (the quotes are the caller's).
 * The calendar date comes from the day number by arithmetic (H. Hinnant's
 * civil_from_days), not from a Date per message: FETCH 1:* formats thousands.
 */
export function formatInternalDate(ms: number): string {
  if (!Number.isSafeInteger(ms) || Math.abs(ms) > 8.64e15) return formatWithDate(ms);
  const days = Math.floor(ms / DAY_MS);
  const sec = Math.floor((ms - days * DAY_MS) / 1000);
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 2 : mp - 10; // 0-based, January = 0
  const year = yoe + era * 400 + (month < 2 ? 1 : 0);
  const h = Math.floor(sec / 3600);
  const min = Math.floor((sec % 3600) / 60);
  return `${TWO[day]}-${MONTHS[month]}-${year} ${TWO[h]}:${TWO[min]}:${TWO[sec % 60]} +0000`;
}

/** The same from a Date (also what a time outside Date's range prints). */
export function formatWithDate(ms: number): string {
  const d = new Date(ms);
  return `${pad2(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} +0000`;
}

// ---- MessageIndex cache ----------------------------------------------------------

/** Parsed indexes kept per store (blobs are content-addressed, so an entry never goes stale). */
const INDEX_CACHE_SIZE = 2000;
const indexCaches = new WeakMap<DataStore, Map<string, MessageIndex>>();

function cacheOf(data: DataStore): Map<string, MessageIndex> {
  let cache = indexCaches.get(data);
  if (!cache) indexCaches.set(data, (cache = new Map()));
  return cache;
}

/** A cached index (made the most recent), or undefined. */
export function cachedIndex(data: DataStore, hash: string): MessageIndex | undefined {
  const cache = cacheOf(data);
  const hit = cache.get(hash);
  if (hit) {
    cache.delete(hash);
    cache.set(hash, hit);
  }
  return hit;
}

/** Parses a blob's meta JSON (read by the caller, e.g. in a batch) and keeps it in the cache. */
export function rememberIndex(data: DataStore, hash: string, json: string): MessageIndex {
  const cache = cacheOf(data);
  const ix = JSON.parse(json) as MessageIndex;
  ix.searchText = '';
  cache.delete(hash);
  cache.set(hash, ix);
  if (cache.size > INDEX_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  return ix;
}

/**
 * The MIME index of a blob, parsed once and kept in a small LRU per store (the
 * search text is dropped: FETCH never needs it). null when the blob has no meta
 * (the message is gone).
 */
export async function messageIndex(data: DataStore, hash: string): Promise<MessageIndex | null> {
  const hit = cachedIndex(data, hash);
  if (hit) return hit;
  const json = await data.blobMeta(hash);
  return json === null ? null : rememberIndex(data, hash, json);
}
