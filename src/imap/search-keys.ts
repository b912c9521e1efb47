import type { Token } from './parser.ts';
import { tokenText } from './parser.ts';
import { inIntervals, parseSequenceSet, resolve, type Interval } from './sequence-set.ts';
import type { SelectedMailbox } from './selected.ts';
import type { MessageUid } from '../store/imap-model.ts';
import type { MessageIndex, MimePart } from '../mime/types.ts';
import { decodeWords, parseHeaderBlock, type HeaderField } from '../mime/headers.ts';
import { HeaderColumn } from './search-columns.ts';
import { decodeText, htmlToText } from '../mime/text.ts';
import { FOLDS_INTO_ASCII, type StoredMessage } from '../store/search-index.ts';

export type { StoredMessage } from '../store/search-index.ts';

/**
 * SEARCH keys (RFC 9051 §6.4.4, RFC 3501 §6.4.4; RFC 5032 OLDER/YOUNGER; RFC 7162
 * §3.1.5 MODSEQ; RFC 5182 `$`): parsed from command tokens into a typed tree, then
 * evaluated over the mailbox in rounds (see "evaluation" below). Flags, sizes, dates
 * and numbers come from the session's message list; header keys read the message's
 * header block; BODY and TEXT decode the text parts (transfer encoding, charset,
 * RFC 2047 in headers), after the store's full-text copy has ruled out most messages.
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

// ---- evaluation ----
//
// A search runs in rounds, each over the messages whose answer is still open, so the
// expensive keys run on as few messages as possible and storage is read in batches:
//  1. keys answered from the session's message list (flags, numbers, sizes, internal
//     date, modseq), in three-valued logic: a key that needs the message's data is
//     "unknown", and a message is decided when the others decide it (OR with a true
//     side, AND with a false one, …);
//  2. header keys (FROM, TO, CC, BCC, SUBJECT, HEADER, TEXT's header half) on the
//     header blocks of messages stored inline, loaded in batches: a field key on the
//     decoded values of that field, kept with the block (Headers.values); TEXT's
//     header half after a test on the raw bytes proves most do not match (see
//     Headers.mayContain);
//  3. BODY and TEXT's body half: the store's full-text copy proves most bodies do not
//     contain the term (src/store/search-index.ts says why that is sound);
//  4. whatever is still open is evaluated exactly, as it always was: the MIME indexes
//     and inline bytes in batches, each part read at most once.
// A round only records an answer it is sure of, so the result is the exact evaluator's.

const UNKNOWN = 0;
const NO = 1;
const YES = 2;
type Tri = typeof UNKNOWN | typeof NO | typeof YES;

/** Keys answered from the session's message list. */
type ListKey =
  | { op: 'all' }
  | { op: 'flag'; flag: string; set: boolean }
  | { op: 'recent' }
  | { op: 'seq' | 'uid'; intervals: Interval[]; saved: boolean }
  | { op: 'internaldate'; cmp: DateCmp; day: number }
  | { op: 'larger' | 'smaller'; size: number }
  | { op: 'older' | 'younger'; seconds: number }
  | { op: 'modseq'; modseq: number };

/** Keys that need the message itself; `id` indexes their per-message answers. Values are folded. */
type DataKey =
  | { op: 'sentdate'; cmp: DateCmp; day: number; id: number }
  | { op: 'header'; field: string; value: string; id: number }
  /** TEXT's header half: the header fields as "name: value" lines. */
  | { op: 'headers'; value: string; id: number }
  | { op: 'body'; value: string; id: number };

/** A search program ready to run: flags and strings folded, TEXT split, data keys numbered. */
type Node = ListKey | DataKey | { op: 'and'; keys: Node[] } | { op: 'or'; a: Node; b: Node } | { op: 'not'; key: Node };

function compile(key: SearchKey, leaves: DataKey[]): Node {
  const add = (k: DataKey): DataKey => {
    leaves.push(k);
    return k;
  };
  switch (key.op) {
    case 'and':
      return { op: 'and', keys: key.keys.map((k) => compile(k, leaves)) };
    case 'or':
      return { op: 'or', a: compile(key.a, leaves), b: compile(key.b, leaves) };
    case 'not':
      return { op: 'not', key: compile(key.key, leaves) };
    case 'flag':
      return { ...key, flag: key.flag.toLowerCase() };
    case 'internaldate':
    case 'sentdate':
      return key.op === 'sentdate' ? add({ op: 'sentdate', cmp: key.cmp, day: key.day, id: leaves.length }) : { op: 'internaldate', cmp: key.cmp, day: key.day };
    case 'header':
      return add({ op: 'header', field: key.field, value: fold(key.value), id: leaves.length });
    case 'body':
      return add({ op: 'body', value: fold(key.value), id: leaves.length });
    case 'text': {
      // RFC 9051 §6.4.4 TEXT: the string "in the header or body of the message".
      const value = fold(key.value);
      const a = add({ op: 'headers', value, id: leaves.length });
      return { op: 'or', a, b: add({ op: 'body', value, id: leaves.length }) };
    }
    default:
      return key;
  }
}

/** 0: from the message list; 1: the stored MIME index; 2: the header block; 3: the text. */
function cost(key: Node): number {
  switch (key.op) {
    case 'sentdate':
      return 1;
    case 'header':
    case 'headers':
      return 2;
    case 'body':
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

/** Cheap keys first inside every AND, so the exact round reads data only for messages that pass them. */
function optimize(key: Node): Node {
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

/** Reads what the header and text keys need from storage, in batches where it can. */
export interface MessageSource {
  /** MIME indexes and, with `withData`, the bytes of small messages; a hash absent from the answer is gone. */
  load(hashes: readonly string[], withData: boolean): Promise<ReadonlyMap<string, StoredMessage>>;
  /** Bytes [start, end) of the message. */
  read(hash: string, start: number, end: number): Promise<Buffer>;
  /** Top-level header blocks ([0, root.bodyStart)) and MIME index JSON of small messages; others are absent from the answer. */
  headerBlocks(hashes: readonly string[]): Promise<ReadonlyMap<string, { head: Buffer; meta: string }>>;
  /**
   * Of the messages (with their MIME index JSON and size), those whose body text
   * provably does not contain `probe` (lower-case ASCII, no LF, no NUL), from a
   * full-text copy; null when there is none or it would not pay. Must never name a
   * message whose body text (MessageData.bodyText) contains the probe.
   */
  bodiesWithout(messages: ReadonlyArray<{ hash: string; meta: string; size: number }>, probe: string): Promise<ReadonlySet<string> | null>;
  /** Whether bodiesWithout is available and pays for this many messages. */
  bodyPrefilterPays(messages: number): Promise<boolean>;
}

/** Most message text decoded for one BODY/TEXT match (a bound on work per message). */
const MAX_TEXT_BYTES = 32 * 1024 * 1024;
/** Messages evaluated at once in the exact round (their blob reads overlap). */
const PARALLEL = 16;
/** Messages per batch of header blocks (round 2). */
const BATCH = 500;
/** Messages per batch of the exact round: their small messages' bytes are held meanwhile. */
const EXACT_BATCH = 200;
/** Probes are cut to this length (any piece of the term is a sound probe). */
const MAX_PROBE = 1000;
/** Shorter body probes are not worth a scan of the full-text table. */
const MIN_BODY_PROBE = 3;

/** Raw header bytes that libmime's decodeWords may turn into other text: "=?" (encoded words) and NUL (its join marker). */
const ENCODED_WORD = Buffer.from('=?');
/** The non-ASCII characters that fold into ASCII ones (see search-index.ts), as UTF-8. */
const FOLDS_INTO_ASCII_UTF8 = FOLDS_INTO_ASCII.map(([ascii, c]) => [ascii, Buffer.from(c)] as const);

/** The longest run of `s`'s UTF-16 units that `ok` accepts, at most MAX_PROBE long. */
function longestRun(s: string, ok: (c: number) => boolean): string {
  let best = 0;
  let bestStart = 0;
  let start = 0;
  for (let j = 0; j <= s.length; j++) {
    if (j < s.length && ok(s.charCodeAt(j))) continue;
    if (j - start > best) {
      best = j - start;
      bestStart = start;
    }
    start = j + 1;
  }
  return s.slice(bestStart, bestStart + Math.min(best, MAX_PROBE));
}

/**
 * The piece of a folded TEXT value that a header block's raw bytes must hold
 * (lower-cased as latin1) for the value to match its header half: printable ASCII
 * without spaces (a folded line keeps its white space but not its CRLF, so a piece
 * without white space never spans a fold) and without ":" (the "name: value" lines
 * put ": " where the raw header may have had "name :value").
 */
function headerProbe(value: string): string {
  return longestRun(value, (c) => c > 0x20 && c < 0x7f && c !== 0x3a);
}

/** ASCII characters that some non-ASCII ones fold into. */
const FOLD_TARGETS = new Set(FOLDS_INTO_ASCII.map(([ascii]) => ascii.charCodeAt(0)));

/**
 * The piece of a folded BODY value for the full-text prefilter: ASCII without LF (the
 * text's pieces are joined by LF) or NUL. A piece without the characters others fold
 * into spares the store a pass over each text looking for those, when it is not much
 * shorter.
 */
function bodyProbe(value: string): string {
  const full = longestRun(value, (c) => c > 0 && c < 0x80 && c !== 0x0a);
  const plain = longestRun(value, (c) => c > 0 && c < 0x80 && c !== 0x0a && !FOLD_TARGETS.has(c));
  return plain.length >= Math.min(full.length, 4) ? plain : full;
}

/** A message's top-level header block, with its fields as the header keys compare them (parsed on first use). */
class Headers {
  private parsed: HeaderField[] | null = null;
  private byName: Map<string, readonly string[]> | null = null;
  private joined: string | null = null;
  private lower: string | null = null;
  /** Holds "=?" (an encoded word) or NUL: decodeWords may turn its bytes into other text. */
  private readonly encoded: boolean;
  /** Holds a byte above 0x7f: some of those fold into ASCII. */
  private readonly high: boolean;
  constructor(private readonly block: Buffer) {
    this.encoded = block.includes(ENCODED_WORD) || block.includes(0);
    let high = false;
    for (let i = 0; i < block.length; i++) {
      if (block[i]! > 0x7f) {
        high = true;
        break;
      }
    }
    this.high = high;
  }

  /**
   * The Headers of a block from the shared header cache (header-blocks.ts), made once
   * and kept as long as the cache keeps the block: a client's repeated FROM and
   * SUBJECT searches then neither lower-case nor RFC 2047-decode a header twice (that
   * was most of a SEARCH's time). The cache counts this copy in its size.
   */
  static of(block: { head: Buffer }): Headers {
    let h = memo.get(block);
    if (!h) memo.set(block, (h = new Headers(block.head)));
    return h;
  }

  /**
   * The folded values of the fields named `name` (lower case), kept per name: a client's
   * FROM and SUBJECT searches then look at those few dozen characters of each message
   * and not at its whole header block (1–2 KB: a scan of it was most of a header
   * SEARCH's time), and decode no other field.
   */
  values(name: string): readonly string[] {
    let v = this.byName?.get(name);
    if (!v) {
      // Without the decoded fields, parse again rather than keep the parse: a client
      // searches a handful of names, and the cache counts what a block keeps.
      v = this.parsed
        ? this.parsed.filter((f) => f.name === name).map((f) => f.value)
        : parseHeaderBlock(this.block.toString('latin1'))
            .filter((f) => f.name === name)
            .map((f) => fold(decodeWords(f.value)));
      (this.byName ??= new Map()).set(name, v);
    }
    return v;
  }

  /** Fields with values unfolded, RFC 2047-decoded and folded for matching. */
  fields(): HeaderField[] {
    this.parsed ??= parseHeaderBlock(this.block.toString('latin1')).map((f) => ({ name: f.name, value: fold(decodeWords(f.value)) }));
    return this.parsed;
  }

  /** The fields as "name: value" lines (what TEXT searches in the header). */
  text(): string {
    this.joined ??= this.fields()
      .map((f) => `${f.name}: ${f.value}`)
      .join('\n');
    return this.joined;
  }

  /**
   * False only when no field (name or value) can contain the probe. Without "=?" or
   * NUL, decodeWords leaves a value as it is (after UTF-8 decoding), and UTF-8
   * decoding and folding turn ASCII bytes into the same ASCII characters and other
   * bytes into non-ASCII ones — except for the few characters that fold into ASCII.
   * So a probe of printable ASCII found in a field is in the raw bytes, ASCII-lower-cased.
   */
  mayContain(probe: string): boolean {
    if (!probe || this.encoded) return true;
    if (this.high) for (const [ascii, utf8] of FOLDS_INTO_ASCII_UTF8) if (probe.includes(ascii) && this.block.includes(utf8)) return true;
    this.lower ??= this.block.toString('latin1').toLowerCase();
    return this.lower.includes(probe);
  }
}
const memo = new WeakMap<object, Headers>();
/**
 * The Headers last used for a message (MessageUid objects are shared by the
 * sessions and replaced when the message changes), held weakly: the header cache
 * still decides how long a block and its Headers live.
 */
const recentHeaders = new WeakMap<MessageUid, WeakRef<Headers>>();

/** One message's data, loaded on first use (or handed over from a batch) and kept for its other keys. */
class MessageData {
  private index: Promise<MessageIndex | null> | null = null;
  private headers: Promise<Headers | null> | null = null;
  private body: Promise<string> | null = null;
  constructor(
    private readonly src: MessageSource,
    readonly m: MessageUid,
    /** From a batch load: null when the message is gone; undefined when not loaded yet. */
    private readonly stored: StoredMessage | null | undefined,
  ) {}

  meta(): Promise<MessageIndex | null> {
    this.index ??= (async () => {
      const s = this.stored === undefined ? ((await this.src.load([this.m.blobHash], false)).get(this.m.blobHash) ?? null) : this.stored;
      return s ? (JSON.parse(s.meta) as MessageIndex) : null;
    })();
    return this.index;
  }

  private read(start: number, end: number): Promise<Buffer> {
    const data = this.stored?.data;
    return data ? Promise.resolve(data.subarray(start, end)) : this.src.read(this.m.blobHash, start, end);
  }

  /** The top-level header fields (none when the message is gone). */
  async headerFields(): Promise<HeaderField[]> {
    return (await this.headerBlock())?.fields() ?? [];
  }

  async headerText(): Promise<string> {
    return (await this.headerBlock())?.text() ?? '';
  }

  private headerBlock(): Promise<Headers | null> {
    this.headers ??= (async () => {
      const ix = await this.meta();
      return ix ? new Headers(await this.read(ix.root.headerStart, ix.root.bodyStart)) : null;
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
          const hdr = await this.read(inner.headerStart, inner.bodyStart);
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
        const raw = await this.read(p.bodyStart, end);
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
  /** The selected mailbox's header columns (search-columns.ts); none: every message's header block is looked at. */
  columns?: { column(field: string): HeaderColumn; done(): void };
}

/** A key on the message list; `seq` is the message number. */
function listMatch(key: ListKey, m: MessageUid, seq: number, ctx: SearchContext): boolean {
  switch (key.op) {
    case 'all':
      return true;
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
  }
}

/** The messages and what the rounds have learnt about their data keys (known[id][i]). */
interface Run {
  messages: readonly MessageUid[];
  ctx: SearchContext;
  known: Uint8Array[];
}

/** Three-valued evaluation of message i with what is known so far (rounds 1–3). */
function tri(key: Node, i: number, run: Run): Tri {
  switch (key.op) {
    case 'and': {
      let r: Tri = YES;
      for (const k of key.keys) {
        const v = tri(k, i, run);
        if (v === NO) return NO;
        if (v === UNKNOWN) r = UNKNOWN;
      }
      return r;
    }
    case 'or': {
      const a = tri(key.a, i, run);
      if (a === YES) return YES;
      const b = tri(key.b, i, run);
      return b === YES ? YES : a === UNKNOWN || b === UNKNOWN ? UNKNOWN : NO;
    }
    case 'not': {
      const v = tri(key.key, i, run);
      return v === UNKNOWN ? UNKNOWN : v === YES ? NO : YES;
    }
    case 'sentdate':
    case 'header':
    case 'headers':
    case 'body':
      return run.known[key.id]![i] as Tri;
    default:
      return listMatch(key, run.messages[i]!, i + 1, run.ctx) ? YES : NO;
  }
}

async function dataMatch(key: DataKey, msg: MessageData): Promise<boolean> {
  switch (key.op) {
    case 'sentdate': {
      const day = sentDay((await msg.meta())?.envelope.date);
      return day !== null && dateMatch(key.cmp, day, key.day);
    }
    case 'header':
      return (await msg.headerFields()).some((f) => f.name === key.field && f.value.includes(key.value));
    case 'headers':
      return (await msg.headerText()).includes(key.value);
    case 'body':
      return (await msg.bodyText()).includes(key.value);
  }
}

/** Exact evaluation of message i (round 4), using what the earlier rounds established. */
async function matches(key: Node, msg: MessageData, i: number, run: Run): Promise<boolean> {
  switch (key.op) {
    case 'and':
      for (const k of key.keys) if (!(await matches(k, msg, i, run))) return false;
      return true;
    case 'or':
      return (await matches(key.a, msg, i, run)) || matches(key.b, msg, i, run);
    case 'not':
      return !(await matches(key.key, msg, i, run));
    case 'sentdate':
    case 'header':
    case 'headers':
    case 'body': {
      const v = run.known[key.id]![i];
      return v === UNKNOWN ? dataMatch(key, msg) : v === YES;
    }
    default:
      return listMatch(key, msg.m, i + 1, run.ctx);
  }
}

function* batches<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/**
 * Runs a search over `messages` (the session's list, messages[seq - 1]). Returns the
 * matching messages with their sequence numbers, ascending. A message whose data
 * cannot be read (gone meanwhile) does not match.
 */
export async function runSearch(key: SearchKey, messages: readonly MessageUid[], ctx: SearchContext): Promise<Array<{ m: MessageUid; seq: number }>> {
  const leaves: DataKey[] = [];
  const k = optimize(compile(key, leaves));
  const run: Run = { messages, ctx, known: leaves.map(() => new Uint8Array(messages.length)) };
  const hits = new Uint8Array(messages.length);
  const src = ctx.source;
  // Decides what the known answers decide; returns the messages still open.
  const narrow = (open: readonly number[]): number[] => {
    const still: number[] = [];
    for (const i of open) {
      const v = tri(k, i, run);
      if (v === UNKNOWN) still.push(i);
      else if (v === YES) hits[i] = 1;
    }
    return still;
  };

  // Round 1: the message list.
  let open = narrow(messages.map((_, i) => i));

  // Round 2: header keys on the header blocks of small messages.
  const headerKeys = leaves.flatMap((l) => (l.op === 'header' || l.op === 'headers' ? [{ l, probe: l.op === 'headers' ? headerProbe(l.value) : '' }] : []));
  // MIME index JSON seen so far: round 3 needs it, round 2 gets it for free.
  const metas = new Map<string, string>();
  const keepMetas = leaves.some((l) => l.op === 'body');
  if (headerKeys.length && open.length) {
    // Field keys first from the mailbox's header columns (search-columns.ts). The
    // messages a column holds nothing for go on below, and those above its last UID
    // are added to it afterwards.
    const grow = new Map<HeaderColumn, { field: string; todo: Set<number> }>();
    const columns = ctx.columns;
    if (columns) {
      for (const { l } of headerKeys) {
        if (l.op !== 'header' || !HeaderColumn.usable(l.value)) continue;
        const col = columns.column(l.field);
        const known = run.known[l.id]!;
        const last = col.lastUid;
        const rest = col.answer(
          l.value,
          messages,
          open.filter((i) => known[i] === UNKNOWN),
          known,
          YES,
          NO,
        ).filter((i) => messages[i]!.uid > last);
        if (!rest.length) continue;
        let g = grow.get(col);
        if (!g) grow.set(col, (g = { field: l.field, todo: new Set() }));
        for (const i of rest) g.todo.add(i);
      }
    }
    const settled = (i: number) => headerKeys.every(({ l }) => run.known[l.id]![i] !== UNKNOWN);
    /** The Headers matched below, for the columns to grow by. */
    const made = grow.size ? new Map<number, Headers>() : null;
    const match = (i: number, h: Headers) => {
      made?.set(i, h);
      for (const { l, probe } of headerKeys) {
        const known = run.known[l.id]!;
        if (known[i] !== UNKNOWN) continue;
        const hit = l.op === 'header' ? h.values(l.field).some((v) => v.includes(l.value)) : h.mayContain(probe) && h.text().includes(l.value);
        known[i] = hit ? YES : NO;
      }
    };
    // Messages whose Headers an earlier search made and that are still alive go first,
    // without a look into the cache (a client's FROM, SUBJECT, FROM … on one mailbox).
    // With a BODY key too, every message goes through the cache: round 3 needs the
    // MIME index that comes with each block.
    const ask = keepMetas
      ? open
      : open.filter((i) => {
          if (settled(i)) return false;
          const h = recentHeaders.get(messages[i]!)?.deref();
          if (!h) return true;
          match(i, h);
          return false;
        });
    for (const part of batches(ask, BATCH)) {
      let blocks: ReadonlyMap<string, { head: Buffer; meta: string }>;
      try {
        blocks = await src.headerBlocks(part.map((i) => messages[i]!.blobHash));
      } catch {
        continue; // left to the exact round
      }
      for (const i of part) {
        const block = blocks.get(messages[i]!.blobHash);
        if (!block) continue;
        if (keepMetas) metas.set(messages[i]!.blobHash, block.meta);
        const h = Headers.of(block);
        recentHeaders.set(messages[i]!, new WeakRef(h));
        match(i, h);
      }
    }
    for (const [col, g] of grow) {
      // In UID order; a message without a header block here (not stored inline) is
      // left out and keeps being answered the usual way. Another search of the mailbox
      // may have grown the column while this one read header blocks: only what is
      // above its last UID now goes in.
      for (const i of [...g.todo].sort((a, b) => a - b)) {
        const h = made!.get(i);
        if (h && messages[i]!.uid > col.lastUid) col.append(messages[i]!.uid, h.values(g.field));
      }
    }
    columns?.done();
    open = narrow(open);
  }

  // Round 3: bodies the full-text copy proves free of the term.
  for (const l of leaves) {
    if (l.op !== 'body' || !open.length) continue;
    const probe = bodyProbe(l.value);
    if (probe.length < MIN_BODY_PROBE) continue;
    const known = run.known[l.id]!;
    const ask = open.filter((i) => known[i] === UNKNOWN);
    if (!ask.length) continue;
    let without: ReadonlySet<string> | null = null;
    try {
      if (!(await src.bodyPrefilterPays(ask.length))) continue;
      const missing = ask.map((i) => messages[i]!.blobHash).filter((h) => !metas.has(h));
      for (const part of batches(missing, BATCH)) for (const [h, stored] of await src.load(part, false)) metas.set(h, stored.meta);
      const candidates = ask.flatMap((i) => {
        const m = messages[i]!;
        const meta = metas.get(m.blobHash);
        return meta === undefined ? [] : [{ hash: m.blobHash, meta, size: m.size }];
      });
      without = await src.bodiesWithout(candidates, probe);
    } catch {
      without = null; // a prefilter only: the exact round answers
    }
    if (!without) continue;
    for (const i of ask) if (without.has(messages[i]!.blobHash)) known[i] = NO;
    open = narrow(open);
  }

  // Round 4: the rest, exactly.
  const needsBytes = (i: number) => leaves.some((l) => l.op !== 'sentdate' && run.known[l.id]![i] === UNKNOWN);
  for (const part of batches(open, EXACT_BATCH)) {
    let stored: ReadonlyMap<string, StoredMessage> | null = null;
    try {
      stored = await src.load(part.map((i) => messages[i]!.blobHash), part.some(needsBytes));
    } catch {
      stored = null; // each message loads its own data below
    }
    let next = 0;
    const worker = async () => {
      while (next < part.length) {
        const i = part[next++]!;
        const m = messages[i]!;
        try {
          hits[i] = (await matches(k, new MessageData(src, m, stored ? (stored.get(m.blobHash) ?? null) : undefined), i, run)) ? 1 : 0;
        } catch {
          hits[i] = 0;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, part.length) }, worker));
  }

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
