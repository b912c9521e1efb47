import type { Token } from './parser.ts';
import { tokenText } from './parser.ts';
import { inIntervals, parseSequenceSet, resolve, type Interval } from './sequence-set.ts';
import type { SelectedMailbox } from './selected.ts';
import type { MessageUid } from '../store/imap-model.ts';
import type { MessageIndex, MimePart } from '../mime/types.ts';
import { decodeWords, parseHeaderBlock, type HeaderField } from '../mime/headers.ts';
import { decodeText, htmlToText } from '../mime/text.ts';

/**
 * SEARCH keys (RFC 9051 §6.4.4, RFC 3501 §6.4.4; RFC 5032 OLDER/YOUNGER; RFC 7162
 * §3.1.5 MODSEQ; RFC 5182 `$`): parsed from command tokens into a typed tree, then
 * evaluated per message. Flags, sizes, dates and numbers come from the session's
 * message list; header keys read the message's header block from the blob; BODY
 * and TEXT decode the text parts (transfer encoding, charset, RFC 2047 in headers).
 * Matching is a case-insensitive substring match (RFC 9051 §6.4.4).
 * Dates "disregard time and timezone": the internal date is taken in UTC, the Date
 * header in its own zone (its day-month-year as written).
 */

export type DateCmp = 'before' | 'on' | 'since';

export type SearchKey =
  | { op: 'all' }
  | { op: 'and'; keys: SearchKey[] }
  | { op: 'or'; a: SearchKey; b: SearchKey }
  | { op: 'not'; key: SearchKey }
  /** A system flag or a keyword (case-insensitive), set or not set. */
  | { op: 'flag'; flag: string; set: boolean }
  | { op: 'recent' }
  /** Message numbers (`seq`) or UIDs: resolved intervals, plus the saved result when `$` was used. */
  | { op: 'seq' | 'uid'; intervals: Interval[]; saved: boolean }
  | { op: 'internaldate' | 'sentdate'; cmp: DateCmp; day: number }
  | { op: 'larger' | 'smaller'; size: number }
  | { op: 'older' | 'younger'; seconds: number }
  | { op: 'modseq'; modseq: number }
  /** A header field (lower-case name) containing `value`; FROM, TO, CC, BCC, SUBJECT and HEADER. */
  | { op: 'header'; field: string; value: string }
  | { op: 'body' | 'text'; value: string };

/** A syntax error in the search program: the command is answered BAD. */
export class SearchSyntaxError extends Error {}

/** What `*` and `$` mean while parsing. */
export interface ParseEnv {
  /** Messages in the mailbox (`*` as a message number). */
  exists: number;
  /** Highest UID (`*` as a UID); 0 when empty. */
  maxUid: number;
  /** Whether `$` may be used (RFC 5182). */
  allowSaved: boolean;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAY_MS = 86_400_000;
/** Nesting of NOT/OR/() deeper than this is refused (the parser caps lists at 64 already). */
const MAX_DEPTH = 100;

const SYSTEM_FLAG_KEYS: Record<string, [string, boolean]> = {
  ANSWERED: ['\\Answered', true],
  DELETED: ['\\Deleted', true],
  DRAFT: ['\\Draft', true],
  FLAGGED: ['\\Flagged', true],
  SEEN: ['\\Seen', true],
  UNANSWERED: ['\\Answered', false],
  UNDELETED: ['\\Deleted', false],
  UNDRAFT: ['\\Draft', false],
  UNFLAGGED: ['\\Flagged', false],
  UNSEEN: ['\\Seen', false],
};

const ADDRESS_KEYS: Record<string, string> = { BCC: 'bcc', CC: 'cc', FROM: 'from', SUBJECT: 'subject', TO: 'to' };
const DATE_KEYS: Record<string, ['internaldate' | 'sentdate', DateCmp]> = {
  BEFORE: ['internaldate', 'before'],
  ON: ['internaldate', 'on'],
  SINCE: ['internaldate', 'since'],
  SENTBEFORE: ['sentdate', 'before'],
  SENTON: ['sentdate', 'on'],
  SENTSINCE: ['sentdate', 'since'],
};

/** RFC 9051 §9 date = date-text / DQUOTE date-text DQUOTE; date-text = date-day "-" date-month "-" date-year. Days since 1970-01-01, or null. */
export function parseSearchDate(s: string): number | null {
  const m = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(s);
  if (!m) return null;
  const month = MONTHS.indexOf(m[2]!.toLowerCase());
  const day = Number(m[1]);
  const year = Number(m[3]);
  if (month < 0 || day < 1) return null;
  const ms = Date.UTC(year, month, day);
  if (new Date(ms).getUTCDate() !== day) return null; // 31-Feb
  return Math.floor(ms / DAY_MS);
}

/** The day (days since epoch) of an RFC 5322 Date header as written in its own zone, or null. */
export function sentDay(raw: string | null | undefined): number | null {
  if (!raw) return null;
  const m = /(?:^|[\s,])(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\s+(\d{2,4})\b/.exec(raw);
  if (m) {
    const month = MONTHS.indexOf(m[2]!.toLowerCase());
    let year = Number(m[3]);
    if (m[3]!.length === 2) year += year < 50 ? 2000 : 1900; // RFC 5322 §4.3
    else if (m[3]!.length === 3) year += 1900;
    if (month >= 0) return Math.floor(Date.UTC(year, month, Number(m[1])) / DAY_MS);
  }
  const t = Date.parse(raw);
  return Number.isFinite(t) ? Math.floor(t / DAY_MS) : null;
}

function text(t: Token | undefined, what: string): string {
  const s = t && t.kind !== 'list' && t.kind !== 'stream' && t.kind !== 'nil' ? tokenText(t) : null;
  if (s === null) throw new SearchSyntaxError(`expected ${what}`);
  return s;
}

function number(t: Token | undefined, what: string): number {
  if (!t || t.kind !== 'number') throw new SearchSyntaxError(`expected ${what}`);
  return t.value;
}

/** RFC 9051 §9 flag-keyword = "$MDNSent" / "$Forwarded" / … / atom. */
function keyword(t: Token | undefined): string {
  const s = t && (t.kind === 'atom' || t.kind === 'number') ? tokenText(t) : null;
  if (!s || s.startsWith('\\')) throw new SearchSyntaxError('expected a keyword');
  return s;
}

class KeyParser {
  i = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly env: ParseEnv,
  ) {}

  /** All tokens from here to the end (or the whole of a list): an implicit AND. */
  program(depth: number): SearchKey {
    const keys: SearchKey[] = [];
    while (this.i < this.tokens.length) keys.push(this.key(depth));
    if (!keys.length) throw new SearchSyntaxError('expected a search key');
    return keys.length === 1 ? keys[0]! : { op: 'and', keys };
  }

  key(depth: number): SearchKey {
    if (depth > MAX_DEPTH) throw new SearchSyntaxError('search program nested too deeply');
    const t = this.tokens[this.i++];
    if (!t) throw new SearchSyntaxError('expected a search key');
    if (t.kind === 'list') {
      const sub = new KeyParser(t.items, this.env);
      return sub.program(depth + 1);
    }
    if (t.kind !== 'atom' && t.kind !== 'number') throw new SearchSyntaxError('expected a search key');
    if (t.kind === 'atom' && (t.section || t.partial)) throw new SearchSyntaxError(`unknown search key ${t.value.slice(0, 30)}`);
    const word = t.kind === 'atom' ? t.value.toUpperCase() : '';
    const next = () => this.tokens[this.i++];
    const flag = SYSTEM_FLAG_KEYS[word];
    if (flag) return { op: 'flag', flag: flag[0], set: flag[1] };
    const field = ADDRESS_KEYS[word];
    if (field) return { op: 'header', field, value: text(next(), `a string after ${word}`) };
    const date = DATE_KEYS[word];
    if (date) {
      const day = parseSearchDate(text(next(), `a date after ${word}`));
      if (day === null) throw new SearchSyntaxError(`expected a date (1-Feb-2024) after ${word}`);
      return { op: date[0], cmp: date[1], day };
    }
    switch (word) {
      case 'ALL':
        return { op: 'all' };
      case 'NEW':
        return { op: 'and', keys: [{ op: 'recent' }, { op: 'flag', flag: '\\Seen', set: false }] };
      case 'OLD':
        return { op: 'not', key: { op: 'recent' } };
      case 'RECENT':
        return { op: 'recent' };
      case 'KEYWORD':
        return { op: 'flag', flag: keyword(next()), set: true };
      case 'UNKEYWORD':
        return { op: 'flag', flag: keyword(next()), set: false };
      case 'BODY':
        return { op: 'body', value: text(next(), 'a string after BODY') };
      case 'TEXT':
        return { op: 'text', value: text(next(), 'a string after TEXT') };
      case 'HEADER': {
        const name = text(next(), 'a header field name after HEADER');
        if (!name || /[\x00-\x20\x7f:]/.test(name)) throw new SearchSyntaxError('invalid header field name');
        return { op: 'header', field: name.toLowerCase(), value: text(next(), 'a string after HEADER name') };
      }
      case 'LARGER':
        return { op: 'larger', size: number(next(), 'a number after LARGER') };
      case 'SMALLER':
        return { op: 'smaller', size: number(next(), 'a number after SMALLER') };
      case 'OLDER':
      case 'YOUNGER': {
        const seconds = number(next(), `a number after ${word}`);
        if (seconds < 1) throw new SearchSyntaxError(`${word} needs a positive number`);
        return { op: word === 'OLDER' ? 'older' : 'younger', seconds };
      }
      case 'NOT':
        return { op: 'not', key: this.key(depth + 1) };
      case 'OR': {
        const a = this.key(depth + 1);
        const b = this.key(depth + 1);
        return { op: 'or', a, b };
      }
      case 'UID':
        return this.set('uid', next());
      case 'MODSEQ': {
        // RFC 7162 §3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer
        let v = next();
        if (v && v.kind === 'string') {
          const type = (tokenText(next()) ?? '').toLowerCase();
          if (!['priv', 'shared', 'all'].includes(type)) throw new SearchSyntaxError('expected priv, shared or all after the MODSEQ entry name');
          v = next();
        }
        return { op: 'modseq', modseq: number(v, 'a mod-sequence after MODSEQ') };
      }
      default:
        return this.set('seq', t);
    }
  }

  private set(op: 'seq' | 'uid', t: Token | undefined): SearchKey {
    const s = t && (t.kind === 'atom' || t.kind === 'number') ? tokenText(t) : null;
    if (!s) throw new SearchSyntaxError(op === 'uid' ? 'expected a UID set after UID' : 'expected a search key');
    const parsed = parseSequenceSet(s, { allowSaved: this.env.allowSaved });
    if (!parsed.ok) {
      throw new SearchSyntaxError(op === 'seq' && /^[A-Za-z]/.test(s) ? `unknown search key ${s.slice(0, 30)}` : parsed.error);
    }
    const intervals = resolve({ ranges: parsed.value.ranges, saved: false }, op === 'uid' ? this.env.maxUid : this.env.exists);
    return { op, intervals, saved: parsed.value.saved };
  }
}

/** Parses search keys (everything after RETURN/CHARSET) into one key (an AND of them). */
export function parseSearchKeys(tokens: Token[], env: ParseEnv): SearchKey {
  return new KeyParser(tokens, env).program(0);
}

/** Whether the key (anywhere in it) uses MODSEQ: the response then carries the highest modseq (RFC 7162 §3.1.5). */
export function usesModseq(key: SearchKey): boolean {
  switch (key.op) {
    case 'modseq':
      return true;
    case 'and':
      return key.keys.some(usesModseq);
    case 'or':
      return usesModseq(key.a) || usesModseq(key.b);
    case 'not':
      return usesModseq(key.key);
    default:
      return false;
  }
}

/** 0: from the message list; 1: the stored MIME index; 2: the header block; 3: the text. */
function cost(key: SearchKey): number {
  switch (key.op) {
    case 'sentdate':
      return 1;
    case 'header':
      return 2;
    case 'body':
    case 'text':
      return 3;
    case 'and':
      return Math.max(0, ...key.keys.map(cost));
    case 'or':
      return Math.max(cost(key.a), cost(key.b));
    case 'not':
      return cost(key.key);
    default:
      return 0;
  }
}

/** Cheap keys first inside every AND, so the blob is read only for messages that pass them. */
export function optimize(key: SearchKey): SearchKey {
  switch (key.op) {
    case 'and':
      return { op: 'and', keys: key.keys.map(optimize).sort((x, y) => cost(x) - cost(y)) };
    case 'or':
      return { op: 'or', a: optimize(key.a), b: optimize(key.b) };
    case 'not':
      return { op: 'not', key: optimize(key.key) };
    default:
      return key;
  }
}

/** Reads what the header and text keys need from storage. */
export interface MessageSource {
  /** The stored MIME index (JSON of MessageIndex without its search text), or null. */
  meta(hash: string): Promise<string | null>;
  /** Bytes [start, end) of the message. */
  read(hash: string, start: number, end: number): Promise<Buffer>;
}

/** Most message text decoded for one BODY/TEXT match (a bound on work per message). */
const MAX_TEXT_BYTES = 32 * 1024 * 1024;

/** One message's data, loaded on first use and kept for the other keys of the same message. */
class LazyMessage {
  private index: Promise<MessageIndex | null> | null = null;
  private headers: Promise<HeaderField[]> | null = null;
  private body: Promise<string> | null = null;
  constructor(
    private readonly src: MessageSource,
    readonly m: MessageUid,
  ) {}

  meta(): Promise<MessageIndex | null> {
    this.index ??= this.src.meta(this.m.blobHash).then((j) => (j ? (JSON.parse(j) as MessageIndex) : null));
    return this.index;
  }

  /** Top-level header fields, values unfolded and RFC 2047-decoded, lower-cased for matching. */
  headerFields(): Promise<HeaderField[]> {
    this.headers ??= (async () => {
      const ix = await this.meta();
      if (!ix) return [];
      const block = await this.src.read(this.m.blobHash, ix.root.headerStart, ix.root.bodyStart);
      return parseHeaderBlock(block.toString('latin1')).map((f) => ({ name: f.name, value: fold(decodeWords(f.value)) }));
    })();
    return this.headers;
  }

  /** The decoded text of the body: text parts and the headers of embedded messages. */
  bodyText(): Promise<string> {
    this.body ??= (async () => {
      const ix = await this.meta();
      if (!ix) return '';
      const out: string[] = [];
      let budget = MAX_TEXT_BYTES;
      const walk = async (p: MimePart, top: boolean): Promise<void> => {
        if (budget <= 0) return;
        if (!top && p.type === 'message' && p.children.length === 1) {
          const inner = p.children[0]!;
          const hdr = await this.src.read(this.m.blobHash, inner.headerStart, inner.bodyStart);
          budget -= hdr.length;
          out.push(parseHeaderBlock(hdr.toString('latin1')).map((f) => `${f.name}: ${decodeWords(f.value)}`).join('\n'));
          await walk(inner, true);
          return;
        }
        if (p.children.length) {
          for (const c of p.children) await walk(c, false);
          return;
        }
        if (p.type !== 'text') return;
        const end = Math.min(p.bodyEnd, p.bodyStart + budget);
        const raw = await this.src.read(this.m.blobHash, p.bodyStart, end);
        budget -= raw.length;
        const t = decodeText(raw, p.encoding, p.params.charset);
        out.push(p.subtype === 'html' ? htmlToText(t) : t);
      };
      await walk(ix.root, true);
      return fold(out.join('\n'));
    })();
    return this.body;
  }
}

/** Case-insensitive comparison form (RFC 9051 §6.4.4: "case-insensitive"). */
export function fold(s: string): string {
  return s.normalize('NFC').toLowerCase();
}

function dateMatch(cmp: DateCmp, day: number, want: number): boolean {
  return cmp === 'before' ? day < want : cmp === 'on' ? day === want : day >= want;
}

/** What a search is evaluated against. */
export interface SearchContext {
  source: MessageSource;
  /** \Recent (RFC 3501 §2.3.2) for this session. */
  isRecent(uid: number): boolean;
  /** UIDs of the saved result (`$`, RFC 5182). */
  saved: ReadonlySet<number>;
  /** Current time in ms (OLDER/YOUNGER). */
  now: number;
}

/** Key values in the comparison form, once (header names stay as they are). */
function prepare(key: SearchKey): SearchKey {
  switch (key.op) {
    case 'header':
    case 'body':
    case 'text':
      return { ...key, value: fold(key.value) };
    case 'flag':
      return { ...key, flag: key.flag.toLowerCase() };
    case 'and':
      return { op: 'and', keys: key.keys.map(prepare) };
    case 'or':
      return { op: 'or', a: prepare(key.a), b: prepare(key.b) };
    case 'not':
      return { op: 'not', key: prepare(key.key) };
    default:
      return key;
  }
}

async function matches(key: SearchKey, msg: LazyMessage, seq: number, ctx: SearchContext): Promise<boolean> {
  const m = msg.m;
  switch (key.op) {
    case 'all':
      return true;
    case 'and':
      for (const k of key.keys) if (!(await matches(k, msg, seq, ctx))) return false;
      return true;
    case 'or':
      return (await matches(key.a, msg, seq, ctx)) || matches(key.b, msg, seq, ctx);
    case 'not':
      return !(await matches(key.key, msg, seq, ctx));
    case 'flag':
      return m.flags.some((f) => f.toLowerCase() === key.flag) === key.set;
    case 'recent':
      return ctx.isRecent(m.uid);
    case 'seq':
      return inIntervals(key.intervals, seq) || (key.saved && ctx.saved.has(m.uid));
    case 'uid':
      return inIntervals(key.intervals, m.uid) || (key.saved && ctx.saved.has(m.uid));
    case 'internaldate':
      return dateMatch(key.cmp, Math.floor(m.internalDate / DAY_MS), key.day);
    case 'sentdate': {
      const day = sentDay((await msg.meta())?.envelope.date);
      return day !== null && dateMatch(key.cmp, day, key.day);
    }
    case 'larger':
      return m.size > key.size;
    case 'smaller':
      return m.size < key.size;
    case 'older':
      return m.internalDate <= ctx.now - key.seconds * 1000;
    case 'younger':
      return m.internalDate >= ctx.now - key.seconds * 1000;
    case 'modseq':
      return m.modseq >= key.modseq;
    case 'header':
      return (await msg.headerFields()).some((f) => f.name === key.field && f.value.includes(key.value));
    case 'body':
      return (await msg.bodyText()).includes(key.value);
    case 'text': {
      const h = await msg.headerFields();
      if (h.map((f) => `${f.name}: ${f.value}`).join('\n').includes(key.value)) return true;
      return (await msg.bodyText()).includes(key.value);
    }
  }
}

/** Messages evaluated at once (their blob reads overlap). */
const PARALLEL = 16;

/**
 * Runs a search over `messages` (the session's list, messages[seq - 1]). Returns the
 * matching messages with their sequence numbers, ascending. A message whose data
 * cannot be read (gone meanwhile) does not match.
 */
export async function runSearch(key: SearchKey, messages: readonly MessageUid[], ctx: SearchContext): Promise<Array<{ m: MessageUid; seq: number }>> {
  const k = optimize(prepare(key));
  const hits = new Array<boolean>(messages.length).fill(false);
  let next = 0;
  const worker = async () => {
    while (next < messages.length) {
      const i = next++;
      try {
        hits[i] = await matches(k, new LazyMessage(ctx.source, messages[i]!), i + 1, ctx);
      } catch {
        hits[i] = false;
      }
    }
  };
  // Cheap programs need no parallelism (and no promise fan-out per message).
  await Promise.all(Array.from({ length: cost(k) === 0 ? 1 : PARALLEL }, worker));
  const out: Array<{ m: MessageUid; seq: number }> = [];
  hits.forEach((h, i) => {
    if (h) out.push({ m: messages[i]!, seq: i + 1 });
  });
  return out;
}

// ---- RFC 5182 SEARCHRES: the saved result ----
//
// Kept per selected mailbox (a new SELECT/EXAMINE starts with an empty one, RFC
// 5182 §2.1), as UIDs, so expunges simply drop out of it.

const savedResults = new WeakMap<SelectedMailbox, Set<number>>();

/** UIDs of the last SEARCH … RETURN (SAVE) in this selection (empty when none). */
export function savedSearch(sel: SelectedMailbox): ReadonlySet<number> {
  return savedResults.get(sel) ?? new Set();
}

export function setSavedSearch(sel: SelectedMailbox, uids: Iterable<number>): void {
  savedResults.set(sel, new Set(uids));
}

/**
 * `$` for other commands (FETCH, STORE, COPY, MOVE, UID EXPUNGE): the saved result
 * as message numbers (byUid false) or UIDs, ascending, of messages still listed.
 */
export function savedNumbers(sel: SelectedMailbox, byUid: boolean): number[] {
  const saved = savedSearch(sel);
  if (!saved.size) return [];
  const out: number[] = [];
  sel.messages.forEach((m, i) => {
    if (saved.has(m.uid)) out.push(byUid ? m.uid : i + 1);
  });
  return out;
}
