import { MailError } from '../core/errors.ts';

/**
 * Types and pure rules behind DataStore's IMAP mailbox operations (issue #6):
 * mailbox names, flags, and what the operations return. No SQL here.
 */

/** RFC 9051 §5.1.1: the hierarchy delimiter of every mailbox name. */
export const MAILBOX_DELIMITER = '/';

/** RFC 9051 §2.3.2 system flags, in their canonical spelling. \Recent is never stored. */
export const SYSTEM_FLAGS: ReadonlyArray<string> = ['\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft'];

/** One mailbox as LIST/STATUS/SELECT need it (RFC 9051 §6.3.9, §6.3.11, §7.3; RFC 7162 §3.1.2). */
export interface MailboxInfo {
  id: number;
  /** UTF-8 name, '/' between levels; "INBOX" always spelled so. */
  name: string;
  /** RFC 6154 attribute, e.g. "\\Sent", or null. */
  specialUse: string | null;
  uidvalidity: number;
  uidnext: number;
  /** RFC 7162 HIGHESTMODSEQ: the highest modseq of a change in this mailbox (0 before any). */
  highestmodseq: number;
  subscribed: boolean;
  messages: number;
  /** Messages without \Seen (STATUS UNSEEN). */
  unseen: number;
  /** Sum of message sizes (STATUS SIZE, RFC 8438). */
  size: number;
}

/** A message as a session's message list needs it (built once per SELECT). */
export interface MessageUid {
  id: number;
  uid: number;
  modseq: number;
  flags: string[];
  size: number;
  internalDate: number;
  blobHash: string;
}

/** Index of the first message with a UID ≥ `uid` in a list by ascending UID (list.length: none). */
export function uidLowerBound(list: readonly MessageUid[], uid: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]!.uid < uid) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export type StoreMode = 'set' | 'add' | 'remove';

export interface StoreFlagsResult {
  /**
   * Every message of the set that exists and passed UNCHANGEDSINCE, in UID order,
   * with its flags and modseq after the store; `changed` is false when the store
   * did not alter its flags (its modseq then stays).
   */
  messages: Array<{ uid: number; flags: string[]; modseq: number; changed: boolean }>;
  /** RFC 7162 §3.1.3: UIDs that failed the UNCHANGEDSINCE test (the MODIFIED response code). */
  modified: number[];
}

export interface ExpungeResult {
  /** Expunged UIDs, ascending, each with the modseq of its expunge. */
  expunged: Array<{ uid: number; modseq: number }>;
}

export interface CopyResult {
  /** The target's UIDVALIDITY (RFC 4315 COPYUID). */
  uidvalidity: number;
  /** [source UID, new UID], by ascending source UID. */
  pairs: Array<[number, number]>;
}

export interface ChangesSince {
  /** Messages now in the mailbox whose modseq is above the given one (added or flags changed). */
  changed: Array<{ uid: number; modseq: number; flags: string[] }>;
  /** UIDs expunged (or moved away) after the given modseq (RFC 7162 §3.2.5.1 VANISHED). */
  vanished: number[];
  highestmodseq: number;
}

const isInbox = (s: string) => s.toUpperCase() === 'INBOX';

/**
 * Checks a mailbox name and returns its canonical form: "INBOX" in any case is
 * INBOX (RFC 9051 §5.1), also as the first level ("inbox/x" → "INBOX/x"). A
 * trailing delimiter is dropped (RFC 9051 §6.3.4). Empty levels, control
 * characters and the LIST wildcards * and % (RFC 9051 §5.1) are refused.
 */
export function normalizeMailboxName(name: string): string {
  let n = name;
  if (n.endsWith(MAILBOX_DELIMITER)) n = n.slice(0, -1);
  const parts = n.split(MAILBOX_DELIMITER);
  if (!n || parts.some((p) => p === '')) throw new MailError('INVALID', `invalid mailbox name "${name}"`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f*%]/.test(n)) throw new MailError('INVALID', `mailbox name "${name}" holds a character that is not allowed`);
  if (Buffer.byteLength(n) > 1000) throw new MailError('INVALID', 'mailbox name too long');
  if (isInbox(parts[0]!)) parts[0] = 'INBOX';
  return parts.join(MAILBOX_DELIMITER);
}

/** The superior names of a mailbox, outermost first: "a/b/c" → ["a", "a/b"]. */
export function parentNames(name: string): string[] {
  const parts = name.split(MAILBOX_DELIMITER);
  return parts.slice(1).map((_, i) => parts.slice(0, i + 1).join(MAILBOX_DELIMITER));
}

/** Whether `name` is `parent` or below it. */
export function isSelfOrChild(name: string, parent: string): boolean {
  return name === parent || name.startsWith(parent + MAILBOX_DELIMITER);
}

/**
 * Flags as stored: system flags in canonical case, keywords as first given, no
 * duplicates (flags and keywords compare case-insensitively, RFC 9051 §2.3.2),
 * never \Recent (a session property, not stored).
 */
export function normalizeFlags(flags: Iterable<string>): string[] {
  const out = new Map<string, string>();
  for (const f of flags) {
    if (!f) continue;
    const key = f.toLowerCase();
    if (key === '\\recent') continue;
    const system = SYSTEM_FLAGS.find((s) => s.toLowerCase() === key);
    if (!out.has(key)) out.set(key, system ?? f);
  }
  return [...out.values()];
}

/** The flags after a STORE (RFC 9051 §6.4.6): FLAGS replaces, +FLAGS adds, -FLAGS removes. */
export function applyStore(current: string[], mode: StoreMode, flags: string[]): string[] {
  const given = normalizeFlags(flags);
  if (mode === 'set') return given;
  const drop = new Set(given.map((f) => f.toLowerCase()));
  if (mode === 'remove') return current.filter((f) => !drop.has(f.toLowerCase()));
  return normalizeFlags([...current, ...given]);
}

/** Same flag set, ignoring order and case. */
export function sameFlags(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const s = new Set(a.map((f) => f.toLowerCase()));
  return b.every((f) => s.has(f.toLowerCase()));
}

export const splitFlags = (s: string): string[] => (s ? s.split(' ') : []);

/** Mailbox order for LIST: INBOX first, then by code point (the same on every backend, unlike SQL collations). */
export function compareMailboxNames(a: string, b: string): number {
  if (a === b) return 0;
  if (a === 'INBOX') return -1;
  if (b === 'INBOX') return 1;
  return a < b ? -1 : 1;
}

/** Splits a list for IN (…) and multi-row statements, under every backend's parameter limit. */
export function chunks<T>(items: T[], size = 1000): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
