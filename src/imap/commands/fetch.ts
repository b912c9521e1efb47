import type { Readable } from 'node:stream';
import { bad, no } from '../errors.ts';
import { formatSequenceSet, inIntervals, parseSequenceSet, resolve, type Interval } from '../sequence-set.ts';
import { savedNumbers } from '../search-keys.ts';
import { formatEnvelope } from '../envelope.ts';
import { formatBodyStructure } from '../bodystructure.ts';
import { applyPartial, fetchBinarySync, filterHeader, headerEnd, isRootHeader, locateSection, type SectionTarget } from '../sections.ts';
import {
  bytesRead,
  cachedIndex,
  formatInternalDate,
  messageIndex,
  needsIndex,
  needsIndexBeyondHeader,
  parseFetchItems,
  rememberIndex,
  setsSeen,
  type FetchItem,
} from '../fetch-items.ts';
import { ResponseBuffer } from '../writer.ts';
import { BLOB_BATCH_MAX, readBlobRows, type BlobBatchRow } from '../../store/blob-batch.ts';
import { headerBlocks } from '../../store/header-blocks.ts';
import type { Command, Token } from '../parser.ts';
import type { ImapSession } from '../session.ts';
import type { SelectedMailbox } from '../selected.ts';
import { uidLowerBound, type MessageUid } from '../../store/imap-model.ts';
import type { MessageIndex } from '../../mime/types.ts';
import type { CommandSpec } from './index.ts';

/**
 * FETCH and UID FETCH (RFC 9051 §6.4.5, §6.4.9, §7.5.2; RFC 3501 §6.4.5, §7.4.2;
 * RFC 3516 BINARY; RFC 7162 §3.1.4 MODSEQ and CHANGEDSINCE).
 *
 * The messages are answered in batches of a few hundred: one query per batch reads
 * what the items need of every message in it — the inline bytes (only the first
 * HEADER_PREFIX of them when just the header is asked for), the MIME indexes not in
 * the cache — and the responses are then built from memory without an await per
 * message and written to the socket in large chunks (writer.ts ResponseBuffer).
 * A message whose bytes are not at hand (a file, database chunks, larger than
 * WHOLE_MAX, a header longer than the prefix read) is prepared on its own,
 * asynchronously, a few at a time ahead of the writer; a section that is a plain
 * byte range of such a message larger than STREAM_MIN is not buffered but streamed
 * from the blob store straight to the socket with backpressure.
 */

/** Messages per batch (the most hashes one query takes)… */
const BATCH = BLOB_BATCH_MAX;
/** …as long as the bytes read for them add up to less than this. */
const BATCH_BYTES = 4 * 1024 * 1024;
/** For a header-only FETCH, bytes read from the start of an inline message: most headers fit. */
const HEADER_PREFIX = 16 * 1024;
/** Messages prepared on their own (not from a batch) ahead of the one being written… */
const WINDOW = 16;
/** …as long as their sizes add up to less than this (BINARY of a big part is decoded in memory). */
const WINDOW_BYTES = 16 * 1024 * 1024;
/** Messages up to this size are read whole, once, and sliced for every section. */
const WHOLE_MAX = 256 * 1024;
/** Byte ranges above this are streamed from the blob store rather than buffered. */
const STREAM_MIN = 64 * 1024;
/** Responses are coalesced into socket writes of about this size. */
const FLUSH_AT = 64 * 1024;

const EMPTY = Buffer.alloc(0);

/** A byte range of a message's blob, streamed to the client. */
interface StreamRange {
  hash: string;
  start: number;
  end: number;
}

/** A piece of output: text (UTF-8), bytes, or a range of the blob to stream. */
type Piece = string | Buffer | StreamRange;

/** The message's blob or meta is gone (expunged and collected while this session still lists it). */
class MessageGone extends Error {}

/**
 * Thrown by the synchronous renderer when the message's index or bytes are not in
 * memory: the caller loads them and renders again. Not an Error: it is control
 * flow, and capturing a stack for it would cost more than the rendering.
 */
class NeedData {
  constructor(readonly range: { start: number; end: number } | null) {}
}

interface Modifiers {
  changedSince: number | null;
  /** RFC 7162 §3.2.6: report UIDs of the set expunged since CHANGEDSINCE as VANISHED (EARLIER). */
  vanished: boolean;
}

/** The optional fetch-modifiers list (RFC 4466 §2.4; RFC 7162 §3.1.4.1 CHANGEDSINCE, §3.2.6 VANISHED). */
function parseModifiers(s: ImapSession, t: Token | undefined, byUid: boolean): Modifiers {
  const out: Modifiers = { changedSince: null, vanished: false };
  if (!t) return out;
  if (t.kind !== 'list' || t.items.length === 0) throw bad('FETCH: invalid fetch modifiers');
  for (let i = 0; i < t.items.length; i++) {
    const m = t.items[i];
    const name = m.kind === 'atom' && !m.section ? m.value.toUpperCase() : '';
    if (name === 'CHANGEDSINCE') {
      const v = t.items[++i];
      if (!v || v.kind !== 'number' || v.value < 1) throw bad('FETCH: CHANGEDSINCE needs a mod-sequence value');
      out.changedSince = v.value;
    } else if (name === 'VANISHED') {
      // RFC 7162 §3.2.6: only in UID FETCH, only after ENABLE QRESYNC.
      if (!byUid) throw bad('FETCH: VANISHED is only allowed in UID FETCH');
      if (!s.enabled.has('QRESYNC')) throw bad('FETCH: VANISHED needs ENABLE QRESYNC first');
      out.vanished = true;
    } else throw bad(`FETCH: unknown fetch modifier ${name.slice(0, 30)}`.trim());
  }
  // RFC 7162 §3.2.6: VANISHED only together with CHANGEDSINCE.
  if (out.vanished && out.changedSince === null) throw bad('FETCH: VANISHED needs CHANGEDSINCE');
  return out;
}

function seqSetText(t: Token | undefined): string {
  if (t?.kind === 'number') return t.text;
  if (t?.kind === 'atom' && !t.section && !t.partial) return t.value;
  throw bad('FETCH: expected a sequence set');
}

/**
 * The sequence numbers a set names. Message sequence numbers above the message
 * count, and `*` in an empty mailbox, are BAD (RFC 9051 §6.4.5 via §9 seq-number:
 * "the server SHOULD respond with a tagged BAD"); UIDs that match nothing are fine,
 * and `n:*` always includes the last message (RFC 9051 §6.4.9). `$` is the result
 * saved by SEARCH … SAVE (RFC 5182), empty when there is none.
 */
function targetSeqs(sel: SelectedMailbox, text: string, byUid: boolean): number[] {
  const parsed = parseSequenceSet(text);
  if (!parsed.ok) throw bad(`FETCH: ${parsed.error}`);
  const set = parsed.value;
  const msgs = sel.messages;
  const saved = set.saved ? savedNumbers(sel, byUid) : [];
  const out: number[] = [];
  if (!byUid) {
    const n = msgs.length;
    for (const r of set.ranges) {
      for (const v of [r.from, r.to]) {
        if (v === '*' ? n === 0 : v > n) throw bad('FETCH: message sequence number out of range');
      }
    }
    for (const r of resolve(set, n, saved)) for (let q = r.lo; q <= r.hi; q++) out.push(q);
    return out;
  }
  const intervals: Interval[] = resolve(set, msgs.at(-1)?.uid ?? 0, saved);
  for (const r of intervals) {
    for (let i = uidLowerBound(msgs, r.lo); i < msgs.length && msgs[i].uid <= r.hi; i++) out.push(i + 1);
  }
  return out;
}

/**
 * RFC 7162 §3.2.6: `UID FETCH set (…) (CHANGEDSINCE m VANISHED)` first answers
 * `* VANISHED (EARLIER) uids` with the UIDs of the set expunged after m. `*` in
 * the set stands for the highest UID the mailbox ever gave (an expunged message
 * may have had it). UIDs still in this session's view are left out: their
 * expunge has not been reported yet and comes as a plain VANISHED later.
 */
async function reportVanished(s: ImapSession, sel: SelectedMailbox, setText: string, since: number): Promise<void> {
  const parsed = parseSequenceSet(setText);
  if (!parsed.ok) throw bad(`FETCH: ${parsed.error}`);
  const ch = await s.ctx.data.changesSince(s.account!.id, sel.info.id, since);
  if (!ch.vanished.length) return;
  const largest = Math.max(sel.uidnext - 1, ch.vanished.at(-1)!);
  const set = resolve(parsed.value, largest, parsed.value.saved ? savedNumbers(sel, true) : []);
  const uids = ch.vanished.filter((u) => inIntervals(set, u) && !sel.seqOf(u));
  if (uids.length) s.untagged(`* VANISHED (EARLIER) ${formatSequenceSet(uids)}`);
}

/** RFC 9051 §6.4.5: fetching a body section without .PEEK sets \Seen; returns the sequence numbers whose flags changed. */
async function markSeen(s: ImapSession, sel: SelectedMailbox, seqs: number[]): Promise<Set<number>> {
  const changed = new Set<number>();
  const uids = seqs.map((q) => sel.messages[q - 1]).filter((m) => !m.flags.includes('\\Seen')).map((m) => m.uid);
  if (!uids.length) return changed;
  const r = await s.ctx.data.storeFlags(sel.info.id, uids, 'add', ['\\Seen']);
  let top = 0;
  for (const x of r.messages) {
    if (!x.changed) continue;
    const q = sel.seqOf(x.uid);
    if (q) {
      // Our own view takes the new flags and modseq now, so the next sync does not report them again.
      sel.setMessage(q, { ...sel.messages[q - 1]!, flags: x.flags, modseq: x.modseq });
      changed.add(q);
    }
    top = Math.max(top, x.modseq);
  }
  if (top) s.ctx.pubsub.publish({ accountId: s.account!.id, mailboxId: sel.info.id, modseq: top });
  return changed;
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function isNotFound(err: unknown): boolean {
  return err instanceof MessageGone || (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}

interface Job {
  seq: number;
  m: MessageUid;
  /** Add FLAGS (the fetch set \Seen and FLAGS was not asked for). */
  implicitFlags: boolean;
}

/** What is in memory of one message while its response is built. */
interface Source {
  index: MessageIndex | null;
  /** Bytes [0, head.length) of the blob… */
  head: Buffer | null;
  /** …which are all of it. */
  whole: boolean;
  /** Ranges read on their own from a message larger than WHOLE_MAX, by "start-end". */
  ranges: Map<string, Buffer> | null;
  /** The header cache's entry `head` is (header-blocks.ts): exactly the top-level header block. */
  block: object | null;
}

/**
 * HEADER.FIELDS[.NOT] answers of header blocks from the header cache, by the block and
 * the field list: a client's message list asks for the same fields of the same
 * messages again and again, and parsing the block for them was most of such a FETCH's
 * work. Held as long as the cache holds the block (whose size counts them, 5 × the block).
 */
const fieldsMemo = new WeakMap<object, Map<string, Buffer>>();

/** The memo's key for a field list. */
function fieldsKey(fields: readonly string[], not: boolean): string {
  return JSON.stringify([not, ...fields.map((f) => f.toLowerCase())]);
}

function filteredHeader(src: Source, target: Extract<SectionTarget, { kind: 'fields' }>, key: string | undefined): Buffer {
  const block = readSync(src, target.start, target.end);
  if (!src.block || key === undefined || target.start !== 0 || target.end !== src.head!.length) return filterHeader(block, target.fields, target.not);
  let memo = fieldsMemo.get(src.block);
  let out = memo?.get(key);
  if (!out) {
    out = filterHeader(block, target.fields, target.not);
    if (!memo) fieldsMemo.set(src.block, (memo = new Map()));
    // A few field lists a block at most (clients ask for one or two).
    if (memo.size < 4) memo.set(key, out);
  }
  return out;
}

/** The message's MIME index, if it is loaded. */
function indexFrom(src: Source): MessageIndex {
  if (!src.index) throw new NeedData(null);
  return src.index;
}

/** Bytes [start, end) of the blob (fewer if it is shorter), from memory. */
function readSync(src: Source, start: number, end: number): Buffer {
  if (end <= start) return EMPTY;
  if (src.head && (src.whole || end <= src.head.length)) return src.head.subarray(start, end);
  const r = src.ranges?.get(`${start}-${end}`);
  if (r) return r;
  throw new NeedData({ start, end });
}

/** What one FETCH reads for every message: worked out once per command. */
interface Plan {
  items: FetchItem[];
  /** The MIME index (cached, or read with the batch). */
  index: boolean;
  /** Message bytes: none, the header's (a prefix), or all (messages up to WHOLE_MAX). */
  bytes: 'none' | 'header' | 'whole';
  /** Add UID before the implicit FLAGS (RFC 7162 §3.2.4) and MODSEQ after it. */
  implicitUid: boolean;
  implicitModseq: boolean;
  utf8: boolean;
  /** The fieldsMemo key of each HEADER.FIELDS[.NOT] item of the top-level header. */
  fieldKeys: Map<FetchItem, string>;
}

/**
 * Builds one message's `* n FETCH (…)` response from what `src` holds; throws
 * NeedData when something is missing (nothing is written before it returns).
 */
function render(s: ImapSession, job: Job, plan: Plan, src: Source): Piece[] {
  const { m, seq } = job;
  const pieces: Piece[] = [];
  let text = `* ${seq} FETCH (`;
  let first = true;
  const literal = (name: string, data: Buffer | StreamRange, binary = false) => {
    const n = Buffer.isBuffer(data) ? data.length : data.end - data.start;
    text += `${name} ${binary ? '~' : ''}{${n}}\r\n`;
    pieces.push(text);
    text = '';
    if (n > 0) pieces.push(data);
  };

  for (const item of plan.items) {
    if (first) first = false;
    else text += ' ';
    switch (item.kind) {
      case 'UID':
        text += `UID ${m.uid}`;
        break;
      case 'FLAGS':
        text += `FLAGS (${s.flagList(m).join(' ')})`;
        break;
      case 'INTERNALDATE':
        text += `INTERNALDATE "${formatInternalDate(m.internalDate)}"`;
        break;
      case 'RFC822.SIZE':
        text += `RFC822.SIZE ${m.size}`;
        break;
      case 'MODSEQ':
        text += `MODSEQ (${m.modseq})`;
        break;
      case 'ENVELOPE':
        text += `ENVELOPE ${formatEnvelope(indexFrom(src).envelope, { utf8: plan.utf8 })}`;
        break;
      case 'BODY':
      case 'BODYSTRUCTURE':
        text += `${item.kind} ${formatBodyStructure(indexFrom(src).root, { extended: item.kind === 'BODYSTRUCTURE', utf8: plan.utf8 })}`;
        break;
      case 'section': {
        const target = locate(item, m, src);
        if (target.kind === 'empty') literal(item.name, EMPTY);
        else if (target.kind === 'fields') {
          literal(item.name, applyPartial(filteredHeader(src, target, plan.fieldKeys.get(item)), item.partial));
        } else {
          // A byte range of the blob: the partial narrows the range itself.
          let { start, end } = target;
          if (item.partial) {
            start = Math.min(end, start + item.partial.origin);
            if (item.partial.count !== null) end = Math.min(end, start + item.partial.count);
          }
          if (end - start > STREAM_MIN && m.size > WHOLE_MAX) literal(item.name, { hash: m.blobHash, start, end });
          else literal(item.name, readSync(src, start, end));
        }
        break;
      }
      case 'binary': {
        const r = fetchBinarySync(indexFrom(src), item.part, (a, b) => readSync(src, a, b), item.partial);
        if (!r.ok) throw no(`Unknown Content-Transfer-Encoding in message ${seq}, part ${item.part.join('.') || 'TEXT'}`, 'UNKNOWN-CTE');
        literal(item.name, r.data, r.hasNul);
        break;
      }
      case 'binary-size': {
        const r = fetchBinarySync(indexFrom(src), item.part, (a, b) => readSync(src, a, b));
        if (!r.ok) throw no(`Unknown Content-Transfer-Encoding in message ${seq}, part ${item.part.join('.')}`, 'UNKNOWN-CTE');
        text += `${item.name} ${r.data.length}`;
        break;
      }
    }
  }
  if (job.implicitFlags) {
    // RFC 7162 §3.2.4: with QRESYNC a FETCH that reports a flag change carries the UID.
    text += `${first ? '' : ' '}${plan.implicitUid ? `UID ${m.uid} ` : ''}FLAGS (${s.flagList(m).join(' ')})`;
    if (plan.implicitModseq) text += ` MODSEQ (${m.modseq})`;
  }
  pieces.push(text + ')\r\n');
  return pieces;
}

/** The part of the blob a BODY[…] item selects. */
function locate(item: Extract<FetchItem, { kind: 'section' }>, m: MessageUid, src: Source): SectionTarget {
  // BODY[] needs no index: the whole blob, RFC822.SIZE octets.
  if (!needsIndex(item)) return { kind: 'range', start: 0, end: m.size };
  if (!src.index && src.head && isRootHeader(item.section)) {
    // The top-level header from the bytes themselves (the same end as the index gives);
    // a block from the header cache is that header exactly.
    const end = src.block ? src.head.length : headerEnd(src.head, src.whole);
    if (end >= 0) {
      const sec = item.section;
      return sec.text === 'HEADER' ? { kind: 'range', start: 0, end } : { kind: 'fields', start: 0, end, fields: sec.fields, not: sec.text === 'HEADER.FIELDS.NOT' };
    }
  }
  return locateSection(indexFrom(src), item.section);
}

/** Loads what render asked for, then renders again, until the response is complete. */
async function renderLoading(s: ImapSession, job: Job, plan: Plan, src: Source): Promise<Piece[]> {
  const { m } = job;
  for (;;) {
    let need: NeedData;
    try {
      return render(s, job, plan, src);
    } catch (err) {
      if (!(err instanceof NeedData)) throw err;
      need = err;
    }
    if (!need.range) {
      src.index = await messageIndex(s.ctx.data, m.blobHash);
      if (!src.index) throw new MessageGone();
    } else if (m.size <= WHOLE_MAX) {
      src.head = await s.ctx.blobs.readAll(m.blobHash);
      src.whole = true;
    } else {
      const { start, end } = need.range;
      (src.ranges ??= new Map()).set(`${start}-${end}`, await collect(s.ctx.blobs.read(m.blobHash, start, end)));
    }
  }
}

/** Reads what the plan needs of a batch of messages in one query (two when only some bytes are read). */
async function loadBatch(s: ImapSession, plan: Plan, jobs: Job[]): Promise<Source[]> {
  const data = s.ctx.data;
  const sources: Source[] = jobs.map(() => ({ index: null, head: null, whole: false, ranges: null, block: null }));
  let metaHashes: string[] = [];
  if (plan.index) {
    jobs.forEach((j, i) => {
      const ix = cachedIndex(data, j.m.blobHash);
      if (ix) sources[i]!.index = ix;
      else metaHashes.push(j.m.blobHash);
    });
  }
  // Header only: the header blocks (header-blocks.ts, cached: a client's message list
  // is fetched again and again), else a prefix of the message; whole messages up to
  // WHOLE_MAX (larger ones are read in ranges or streamed, never whole).
  const blocks = plan.bytes === 'header' ? await headerBlocks(data, jobs.map((j) => j.m.blobHash)) : null;
  const bytesOf = (j: Job) => (plan.bytes === 'header' && !blocks!.has(j.m.blobHash)) || (plan.bytes === 'whole' && j.m.size <= WHOLE_MAX);
  if (blocks?.size) {
    jobs.forEach((j, i) => {
      const b = blocks.get(j.m.blobHash);
      if (!b) return;
      const src = sources[i]!;
      src.head = b.head;
      src.block = b;
      src.whole = b.head.length >= j.m.size;
      if (plan.index && !src.index) src.index = cachedIndex(data, j.m.blobHash) ?? rememberIndex(data, j.m.blobHash, b.meta);
    });
    metaHashes = metaHashes.filter((h) => !blocks.has(h));
  }
  const dataHashes = plan.bytes === 'none' ? [] : jobs.filter(bytesOf).map((j) => j.m.blobHash);
  const request = plan.bytes === 'header' ? HEADER_PREFIX : ('whole' as const);
  let rows: Map<string, BlobBatchRow>;
  let metaRows: Map<string, BlobBatchRow> | null = null;
  if (dataHashes.length && metaHashes.length === jobs.length && dataHashes.length === jobs.length) {
    rows = await readBlobRows(data, dataHashes, { meta: true, data: request });
    metaRows = rows;
  } else {
    rows = dataHashes.length ? await readBlobRows(data, dataHashes, { meta: false, data: request }) : new Map();
    if (metaHashes.length) metaRows = await readBlobRows(data, metaHashes, { meta: true, data: 'none' });
  }
  const parsed = new Map<string, MessageIndex>(); // a blob listed twice (a copy) is parsed once
  jobs.forEach((j, i) => {
    const src = sources[i]!;
    const hash = j.m.blobHash;
    const meta = src.index ? null : metaRows?.get(hash)?.meta;
    if (meta) {
      let ix = parsed.get(hash);
      if (!ix) parsed.set(hash, (ix = rememberIndex(data, hash, meta)));
      src.index = ix;
    }
    const bytes = bytesOf(j) ? rows.get(hash)?.data : null;
    if (bytes) {
      src.head = bytes;
      // A prefix shorter than asked for is the whole message.
      src.whole = plan.bytes === 'whole' || bytes.length < HEADER_PREFIX || bytes.length >= j.m.size;
    }
  });
  return sources;
}

/** The jobs of the next batch from `from`: at most BATCH, and BATCH_BYTES of bytes to read. */
function batchEnd(plan: Plan, jobs: Job[], from: number): number {
  let bytes = 0;
  let i = from;
  while (i < jobs.length && i - from < BATCH) {
    const size = jobs[i]!.m.size;
    bytes += plan.bytes === 'header' ? Math.min(size, HEADER_PREFIX) : plan.bytes === 'whole' && size <= WHOLE_MAX ? size : 0;
    if (bytes > BATCH_BYTES && i > from) break;
    i++;
  }
  return i;
}

/** Resolves once the socket can take more (or is gone). */
function drained(s: ImapSession): Promise<void> {
  const sock = s.socket;
  if (!sock.writableNeedDrain || s.isClosed || sock.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      sock.off('drain', done);
      sock.off('close', done);
      resolve();
    };
    sock.on('drain', done);
    sock.on('close', done);
  });
}

/** Streams blob bytes [start, end) to the client; a short read ends the connection (the literal's length was promised). */
async function streamRange(s: ImapSession, p: StreamRange): Promise<void> {
  const want = p.end - p.start;
  let sent = 0;
  const stream = s.ctx.blobs.read(p.hash, p.start, p.end);
  try {
    for await (const chunk of stream) {
      if (s.isClosed) break;
      const c = (chunk as Buffer).subarray(0, want - sent);
      s.write(c);
      sent += c.length;
      await drained(s);
    }
  } catch (err) {
    s.log.error({ err, hash: p.hash }, 'FETCH: reading the message failed');
  } finally {
    stream.destroy();
  }
  if (sent !== want && !s.isClosed) {
    s.log.error({ hash: p.hash, sent, want }, 'FETCH: message shorter than its literal; closing the connection');
    s.close();
  }
}

/** A message's response: built, failed, to be prepared on its own, or being prepared (null: the message is gone). */
type Result = { pieces: Piece[] } | { error: unknown } | { slow: Source } | { pending: Promise<Piece[] | null> };

const WRITTEN: Result = { pieces: [] };

async function runFetch(s: ImapSession, cmd: Command, byUid: boolean): Promise<string | null> {
  if (cmd.args.length < 2 || cmd.args.length > 3) throw bad(`${cmd.name}: expected a sequence set, data items and optional modifiers`);
  const sel = s.selected!;
  const setText = seqSetText(cmd.args[0]);
  let items = parseFetchItems(cmd.args[1]);
  const mods = parseModifiers(s, cmd.args[2], byUid);
  if (mods.changedSince !== null && !items.some((i) => i.kind === 'MODSEQ')) items.push({ kind: 'MODSEQ' });
  // RFC 9051 §6.4.9: UID FETCH always answers with UID (first, as Dovecot does).
  if (byUid) items = [{ kind: 'UID' }, ...items.filter((i) => i.kind !== 'UID')];

  let seqs = targetSeqs(sel, setText, byUid);
  // RFC 7162 §3.1: MODSEQ and CHANGEDSINCE are CONDSTORE-enabling (later unsolicited FETCHes carry MODSEQ).
  if (items.some((i) => i.kind === 'MODSEQ')) s.enabled.add('CONDSTORE');
  if (mods.vanished) await reportVanished(s, sel, setText, mods.changedSince!);
  if (mods.changedSince !== null) seqs = seqs.filter((q) => sel.messages[q - 1].modseq > mods.changedSince!);
  const flagsChanged = !sel.readOnly && items.some(setsSeen) ? await markSeen(s, sel, seqs) : new Set<number>();
  const wantsFlags = items.some((i) => i.kind === 'FLAGS');
  const jobs: Job[] = seqs.map((seq) => ({ seq, m: sel.messages[seq - 1], implicitFlags: !wantsFlags && flagsChanged.has(seq) }));
  const reads = items.map(bytesRead);
  const plan: Plan = {
    items,
    index: items.some(needsIndexBeyondHeader),
    bytes: reads.includes('any') ? 'whole' : reads.includes('header') ? 'header' : 'none',
    implicitUid: s.enabled.has('QRESYNC') && !items.some((i) => i.kind === 'UID'),
    implicitModseq: s.enabled.has('CONDSTORE') && !items.some((i) => i.kind === 'MODSEQ'),
    utf8: s.utf8,
    fieldKeys: new Map(
      items.flatMap((i) =>
        i.kind === 'section' && i.section.part.length === 0 && (i.section.text === 'HEADER.FIELDS' || i.section.text === 'HEADER.FIELDS.NOT')
          ? [[i, fieldsKey(i.section.fields, i.section.text === 'HEADER.FIELDS.NOT')] as const]
          : [],
      ),
    ),
  };
  const loads = plan.index || plan.bytes !== 'none';

  const out = new ResponseBuffer(FLUSH_AT);
  const flush = async () => {
    const chunks = out.take();
    if (chunks.length > 1) s.socket.cork();
    for (const c of chunks) s.write(c);
    if (chunks.length > 1) s.socket.uncork();
    await drained(s);
  };
  let gone = 0;
  /** Writes one response; false when the connection is gone. */
  const emit = async (pieces: Piece[]): Promise<boolean> => {
    for (const p of pieces) {
      if (typeof p === 'string') out.text(p);
      else if (Buffer.isBuffer(p)) out.bytes(p);
      else {
        await flush();
        await streamRange(s, p);
        if (s.isClosed) return false;
        continue;
      }
      if (out.length >= FLUSH_AT) await flush();
    }
    return true;
  };

  const load = (from: number, to: number): Promise<Source[]> => {
    const batch = jobs.slice(from, to);
    if (!loads) return Promise.resolve(batch.map((): Source => ({ index: null, head: null, whole: false, ranges: null, block: null })));
    const p = loadBatch(s, plan, batch);
    p.catch(() => undefined); // awaited in its round; abandoned if an earlier one fails
    return p;
  };
  let from = 0;
  let to = batchEnd(plan, jobs, 0);
  let next = load(0, to);
  try {
    while (from < jobs.length && !s.isClosed) {
      const batch = jobs.slice(from, to);
      const sources = await next;
      // The next batch is read while this one is answered.
      from = to;
      to = batchEnd(plan, jobs, from);
      if (from < jobs.length) next = load(from, to);

      // Every response that memory allows is built now; the others are prepared on their
      // own, up to WINDOW messages ahead of the writer.
      const results: Result[] = batch.map((job, i) => {
        try {
          return { pieces: render(s, job, plan, sources[i]!) };
        } catch (err) {
          return err instanceof NeedData ? { slow: sources[i]! } : { error: err };
        }
      });
      let ahead = 0;
      let aheadBytes = 0;
      for (let i = 0; i < batch.length && !s.isClosed; i++) {
        for (ahead = Math.max(ahead, i); ahead < batch.length && ahead - i < WINDOW; ahead++) {
          const r = results[ahead]!;
          if (!('slow' in r)) continue;
          const size = batch[ahead]!.m.size;
          if (aheadBytes > 0 && aheadBytes + size > WINDOW_BYTES) break;
          aheadBytes += size;
          const pending = renderLoading(s, batch[ahead]!, plan, r.slow).catch((err: unknown) => {
            if (isNotFound(err)) return null;
            throw err;
          });
          pending.catch(() => undefined); // awaited later in order; may be abandoned after an earlier error
          results[ahead] = { pending };
        }
        const r = results[i]!;
        results[i] = WRITTEN; // the bytes can go once written
        let pieces: Piece[] | null;
        if ('pieces' in r) pieces = r.pieces;
        else if ('pending' in r) {
          aheadBytes -= batch[i]!.m.size;
          pieces = await r.pending;
        } else if ('error' in r) throw r.error;
        else throw new Error('FETCH: a message was not prepared'); // cannot happen: the window starts at i
        if (!pieces) {
          gone++;
          continue;
        }
        if (!(await emit(pieces))) return null;
      }
    }
  } finally {
    await flush();
  }
  if (s.isClosed) return null;
  // RFC 9051 §7.1: messages expunged by another session while still listed here.
  if (gone) throw no(`${gone} message(s) no longer exist`, 'EXPUNGEISSUED');
  return `${cmd.name} completed`;
}

export const fetchCommands: CommandSpec[] = [
  // RFC 9051 §7.5.1: no EXPUNGE responses while answering FETCH (the client still uses the numbers).
  { name: 'FETCH', states: ['selected'], expungeSafe: false, run: (s, cmd) => runFetch(s, cmd, false) },
  // UID FETCH may be followed by EXPUNGE (RFC 9051 §7.5.1).
  { name: 'UID FETCH', states: ['selected'], expungeSafe: true, run: (s, cmd) => runFetch(s, cmd, true) },
];
