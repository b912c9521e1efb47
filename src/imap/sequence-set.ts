/**
 * IMAP sequence sets (RFC 9051 §9):
 *   sequence-set = (seq-number / seq-range) ["," sequence-set] / "$"
 *   seq-range    = seq-number ":" seq-number   ; either order: 7:3 is 3:7
 *   seq-number   = nz-number / "*"             ; nz-number ≤ 4294967295, no leading 0
 * `$` (RFC 5182 SEARCHRES) stands for the result saved by the last SEARCH … SAVE.
 * `*` is the largest number in use (message count or the highest UID). Against an
 * empty mailbox (largest 0) a lone `*` matches nothing and `n:*` covers 1:n —
 * harmless, since membership is always tested against numbers that exist.
 * Errors are values.
 */

export type SeqNumber = number | '*';
export interface SeqRange {
  from: SeqNumber;
  to: SeqNumber;
}
export interface SequenceSet {
  ranges: SeqRange[];
  /** `$` appeared (RFC 5182). */
  saved: boolean;
}
/** A closed interval lo ≤ hi, both ≥ 1. */
export interface Interval {
  lo: number;
  hi: number;
}
export type Result<T> = { ok: true; value: T } | { ok: false; error: string };

export const MAX_NZ_NUMBER = 4294967295;

function parseNumber(s: string): SeqNumber | null {
  if (s === '*') return '*';
  if (!/^[1-9][0-9]{0,9}$/.test(s)) return null;
  const n = Number(s);
  return n <= MAX_NZ_NUMBER ? n : null;
}

/** Parse a sequence set; `$` only when `allowSaved` (SEARCHRES enabled; default true). */
export function parseSequenceSet(text: string, opts: { allowSaved?: boolean } = {}): Result<SequenceSet> {
  if (text.length === 0) return { ok: false, error: 'Empty sequence set' };
  if (text.length > 1_000_000) return { ok: false, error: 'Sequence set too long' };
  const ranges: SeqRange[] = [];
  let saved = false;
  for (const part of text.split(',')) {
    if (part === '$') {
      if (opts.allowSaved === false) return { ok: false, error: 'Saved search result ($) not allowed' };
      saved = true;
      continue;
    }
    const colon = part.indexOf(':');
    if (colon < 0) {
      const n = parseNumber(part);
      if (n === null) return { ok: false, error: `Invalid sequence number: ${part.slice(0, 20)}` };
      ranges.push({ from: n, to: n });
    } else {
      const a = parseNumber(part.slice(0, colon));
      const b = parseNumber(part.slice(colon + 1));
      if (a === null || b === null) return { ok: false, error: `Invalid sequence range: ${part.slice(0, 20)}` };
      ranges.push({ from: a, to: b });
    }
  }
  return { ok: true, value: { ranges, saved } };
}

/** Sort and merge overlapping or adjacent intervals. */
export function normalize(intervals: Iterable<Interval>): Interval[] {
  const list = [...intervals].filter((r) => r.lo <= r.hi).sort((x, y) => x.lo - y.lo);
  const out: Interval[] = [];
  for (const r of list) {
    const last = out[out.length - 1];
    if (last && r.lo <= last.hi + 1) last.hi = Math.max(last.hi, r.hi);
    else out.push({ lo: r.lo, hi: r.hi });
  }
  return out;
}

/** Intervals of sorted unique numbers: [1,2,3,5] → 1-3, 5-5. */
export function intervalsOf(numbers: Iterable<number>): Interval[] {
  const sorted = [...new Set(numbers)].filter((n) => Number.isInteger(n) && n >= 1).sort((a, b) => a - b);
  const out: Interval[] = [];
  for (const n of sorted) {
    const last = out[out.length - 1];
    if (last && n === last.hi + 1) last.hi = n;
    else out.push({ lo: n, hi: n });
  }
  return out;
}

/**
 * The set as sorted, merged intervals: `*` → `largest`, `$` → `saved` (the numbers
 * of the saved result, empty when there is none).
 */
export function resolve(set: SequenceSet, largest: number, saved: Iterable<number> = []): Interval[] {
  const val = (n: SeqNumber) => (n === '*' ? largest : n);
  const parts: Interval[] = set.ranges.map((r) => {
    const a = val(r.from);
    const b = val(r.to);
    return { lo: Math.max(1, Math.min(a, b)), hi: Math.max(a, b) };
  });
  if (set.saved) parts.push(...intervalsOf(saved));
  return normalize(parts);
}

/** Is n in the resolved intervals (binary search)? */
export function inIntervals(intervals: readonly Interval[], n: number): boolean {
  let lo = 0;
  let hi = intervals.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = intervals[mid];
    if (n < r.lo) hi = mid - 1;
    else if (n > r.hi) lo = mid + 1;
    else return true;
  }
  return false;
}

export function contains(set: SequenceSet, n: number, largest: number, saved: Iterable<number> = []): boolean {
  return inIntervals(resolve(set, largest, saved), n);
}

export function count(intervals: readonly Interval[]): number {
  let total = 0;
  for (const r of intervals) total += r.hi - r.lo + 1;
  return total;
}

/**
 * Sorted unique numbers of the set, at most `cap` of them (an error beyond it:
 * `1:4294967295` must not allocate 4 billion numbers). With `largest` given as the
 * mailbox's count/highest UID, numbers above it are dropped first.
 */
export function expand(
  set: SequenceSet,
  largest: number,
  opts: { cap: number; saved?: Iterable<number>; clamp?: boolean },
): Result<number[]> {
  let intervals = resolve(set, largest, opts.saved);
  if (opts.clamp) intervals = intervals.filter((r) => r.lo <= largest).map((r) => ({ lo: r.lo, hi: Math.min(r.hi, largest) }));
  if (count(intervals) > opts.cap) return { ok: false, error: `Sequence set covers more than ${opts.cap} numbers` };
  const out: number[] = [];
  for (const r of intervals) for (let n = r.lo; n <= r.hi; n++) out.push(n);
  return { ok: true, value: out };
}

/** Compact form of intervals: `1:3,5,7:9` (UIDPLUS COPYUID, ESEARCH ALL). Empty → ''. */
export function formatIntervals(intervals: readonly Interval[]): string {
  return normalize(intervals)
    .map((r) => (r.lo === r.hi ? String(r.lo) : `${r.lo}:${r.hi}`))
    .join(',');
}

/** Compact form of numbers (any order, duplicates allowed): [5,1,2,3] → `1:3,5`. */
export function formatSequenceSet(numbers: Iterable<number>): string {
  return formatIntervals(intervalsOf(numbers));
}

/**
 * Numbers in the given order, compressed without sorting (COPYUID needs source and
 * destination UID sets to pair up in order, RFC 4315 §3): [3,4,5,1] → `3:5,1`.
 */
export function formatOrdered(numbers: readonly number[]): string {
  const out: string[] = [];
  let i = 0;
  while (i < numbers.length) {
    let j = i;
    while (j + 1 < numbers.length && numbers[j + 1] === numbers[j] + 1) j++;
    out.push(i === j ? String(numbers[i]) : `${numbers[i]}:${numbers[j]}`);
    i = j + 1;
  }
  return out.join(',');
}
