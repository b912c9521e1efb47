import type { Readable } from 'node:stream';
import { bad, no } from '../errors.ts';
import { formatSequenceSet, inIntervals, parseSequenceSet, resolve, type Interval } from '../sequence-set.ts';
import { savedNumbers } from '../search-keys.ts';
import { formatEnvelope } from '../envelope.ts';
import { formatBodyStructure } from '../bodystructure.ts';
import { applyPartial, binarySize, fetchBinary, filterHeader, locateSection, type ReadRange } from '../sections.ts';
import { formatInternalDate, messageIndex, needsIndex, parseFetchItems, prefetchIndexes, setsSeen, type FetchItem } from '../fetch-items.ts';
import type { Command, Token } from '../parser.ts';
import type { ImapSession } from '../session.ts';
import type { SelectedMailbox } from '../selected.ts';
import type { MessageUid } from '../../store/imap-model.ts';
import type { MessageIndex } from '../../mime/types.ts';
import type { CommandSpec } from './index.ts';

/**
 * FETCH and UID FETCH (RFC 9051 §6.4.5, §6.4.9, §7.5.2; RFC 3501 §6.4.5, §7.4.2;
 * RFC 3516 BINARY; RFC 7162 §3.1.4 MODSEQ and CHANGEDSINCE).
 *
 * The messages' responses are prepared a few at a time ahead of the writer (the
 * MIME index, header bytes, decoded BINARY parts) and written in order; a section
 * that is a plain byte range of the blob larger than STREAM_MIN is not buffered but
 * streamed from the blob store straight to the socket with backpressure.
 */

/** Messages prepared ahead of the one being written… */
const WINDOW = 16;
/** …as long as their sizes add up to less than this (BINARY of a big part is decoded in memory). */
const WINDOW_BYTES = 16 * 1024 * 1024;
/** Messages up to this size are read whole, once, and sliced for every section. */
const WHOLE_MAX = 256 * 1024;
/** Byte ranges above this are streamed from the blob store rather than buffered. */
const STREAM_MIN = 64 * 1024;
/** Responses are coalesced into socket writes of about this size. */
const FLUSH_AT = 64 * 1024;

/** A piece of output: bytes, or a range of the blob to stream. */
type Piece = Buffer | { hash: string; start: number; end: number };

/** The message's blob or meta is gone (expunged and collected while this session still lists it). */
class MessageGone extends Error {}

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

/** First index in messages whose UID is ≥ uid. */
function lowerBound(messages: MessageUid[], uid: number): number {
  let lo = 0;
  let hi = messages.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (messages[mid].uid < uid) lo = mid + 1;
    else hi = mid;
  }
  return lo;
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
    for (let i = lowerBound(msgs, r.lo); i < msgs.length && msgs[i].uid <= r.hi; i++) out.push(i + 1);
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
      sel.messages[q - 1] = { ...sel.messages[q - 1], flags: x.flags, modseq: x.modseq };
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

/** Builds one message's `* n FETCH (…)` response. */
async function prepare(s: ImapSession, job: Job, items: FetchItem[]): Promise<Piece[]> {
  const { m, seq } = job;
  const ctx = s.ctx;
  const utf8 = s.utf8;
  const pieces: Piece[] = [];
  let text = `* ${seq} FETCH (`;
  let first = true;
  let index: MessageIndex | null = null;
  const getIndex = async (): Promise<MessageIndex> => {
    if (!index) index = await messageIndex(ctx.data, m.blobHash);
    if (!index) throw new MessageGone();
    return index;
  };
  let whole: Promise<Buffer> | null = null;
  const read: ReadRange = async (start, end) => {
    if (m.size <= WHOLE_MAX) {
      whole ??= ctx.blobs.readAll(m.blobHash);
      return (await whole).subarray(start, end);
    }
    return collect(ctx.blobs.read(m.blobHash, start, end));
  };
  const literal = (name: string, data: Buffer | { start: number; end: number }, binary = false) => {
    const n = Buffer.isBuffer(data) ? data.length : data.end - data.start;
    text += `${name} ${binary ? '~' : ''}{${n}}\r\n`;
    pieces.push(Buffer.from(text, 'utf8'));
    text = '';
    if (n > 0) pieces.push(Buffer.isBuffer(data) ? data : { hash: m.blobHash, start: data.start, end: data.end });
  };
  const flags = () => `FLAGS (${s.flagList(m).join(' ')})`;

  for (const item of items) {
    if (first) first = false;
    else text += ' ';
    switch (item.kind) {
      case 'UID':
        text += `UID ${m.uid}`;
        break;
      case 'FLAGS':
        text += flags();
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
        text += `ENVELOPE ${formatEnvelope((await getIndex()).envelope, { utf8 })}`;
        break;
      case 'BODY':
      case 'BODYSTRUCTURE':
        text += `${item.kind} ${formatBodyStructure((await getIndex()).root, { extended: item.kind === 'BODYSTRUCTURE', utf8 })}`;
        break;
      case 'section': {
        // BODY[] needs no index: the whole blob, RFC822.SIZE octets.
        const target = needsIndex(item) ? locateSection(await getIndex(), item.section) : ({ kind: 'range', start: 0, end: m.size } as const);
        if (target.kind === 'empty') literal(item.name, Buffer.alloc(0));
        else if (target.kind === 'fields') {
          const block = target.end > target.start ? await read(target.start, target.end) : Buffer.alloc(0);
          literal(item.name, applyPartial(filterHeader(block, target.fields, target.not), item.partial));
        } else {
          // A byte range of the blob: the partial narrows the range itself.
          let { start, end } = target;
          if (item.partial) {
            start = Math.min(end, start + item.partial.origin);
            if (item.partial.count !== null) end = Math.min(end, start + item.partial.count);
          }
          if (end - start > STREAM_MIN && m.size > WHOLE_MAX) literal(item.name, { start, end });
          else literal(item.name, end > start ? await read(start, end) : Buffer.alloc(0));
        }
        break;
      }
      case 'binary': {
        const r = await fetchBinary(await getIndex(), item.part, read, item.partial);
        if (!r.ok) throw no(`Unknown Content-Transfer-Encoding in message ${seq}, part ${item.part.join('.') || 'TEXT'}`, 'UNKNOWN-CTE');
        literal(item.name, r.data, r.hasNul);
        break;
      }
      case 'binary-size': {
        const r = await binarySize(await getIndex(), item.part, read);
        if (!r.ok) throw no(`Unknown Content-Transfer-Encoding in message ${seq}, part ${item.part.join('.')}`, 'UNKNOWN-CTE');
        text += `${item.name} ${r.size}`;
        break;
      }
    }
  }
  if (job.implicitFlags) {
    // RFC 7162 §3.2.4: with QRESYNC a FETCH that reports a flag change carries the UID.
    const uid = s.enabled.has('QRESYNC') && !items.some((i) => i.kind === 'UID') ? `UID ${m.uid} ` : '';
    text += `${first ? '' : ' '}${uid}${flags()}`;
    if (s.enabled.has('CONDSTORE') && !items.some((i) => i.kind === 'MODSEQ')) text += ` MODSEQ (${m.modseq})`;
  }
  text += ')\r\n';
  pieces.push(Buffer.from(text, 'utf8'));
  return pieces;
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
async function streamRange(s: ImapSession, p: { hash: string; start: number; end: number }): Promise<void> {
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
  // One query per window of messages for their MIME indexes instead of one per message.
  const prefetch = async (from: number) => {
    if (items.some(needsIndex)) await prefetchIndexes(s.ctx.data, jobs.slice(from, from + 1000).map((j) => j.m.blobHash));
  };
  await prefetch(0);

  // Prepare ahead, write in order.
  const pending: Array<Promise<Piece[] | null>> = [];
  const pendingSizes: number[] = [];
  let pendingBytes = 0;
  let next = 0;
  const fill = () => {
    while (pending.length < WINDOW && next < jobs.length && (pending.length === 0 || pendingBytes + jobs[next].m.size <= WINDOW_BYTES)) {
      const job = jobs[next++];
      pendingSizes.push(job.m.size);
      pendingBytes += job.m.size;
      const p = prepare(s, job, items).catch((err: unknown) => {
        if (isNotFound(err)) return null;
        throw err;
      });
      p.catch(() => undefined); // awaited later in order; may be abandoned after an earlier error
      pending.push(p);
    }
  };
  let out: Buffer[] = [];
  let outLen = 0;
  const flush = async () => {
    if (outLen) s.write(out.length === 1 ? out[0] : Buffer.concat(out, outLen));
    out = [];
    outLen = 0;
    await drained(s);
  };
  let gone = 0;
  try {
    fill();
    let done = 0;
    while (pending.length && !s.isClosed) {
      if (++done % 1000 === 0) await prefetch(done + WINDOW);
      const pieces = await pending.shift()!;
      pendingBytes -= pendingSizes.shift()!;
      fill();
      if (!pieces) {
        gone++;
        continue;
      }
      for (const p of pieces) {
        if (Buffer.isBuffer(p)) {
          out.push(p);
          outLen += p.length;
          if (outLen >= FLUSH_AT) await flush();
        } else {
          await flush();
          await streamRange(s, p);
          if (s.isClosed) return null;
        }
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
