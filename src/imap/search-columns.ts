import { LRUCache } from 'lru-cache';
import type { MessageUid } from '../store/imap-model.ts';

/**
 * Header columns: for one mailbox and one header field, the folded values of every
 * message (what SEARCH FROM/SUBJECT/HEADER compares, search-keys.ts Headers.values)
 * in one string, in UID order. A client's FROM and SUBJECT searches over a mailbox
 * then scan a few dozen characters a message with indexOf, instead of following five
 * or more pointers a message to its header block's objects — on a server's heap those
 * were cache misses, most of a header SEARCH's time (about 1 µs a message, against
 * 0.05 µs here).
 *
 * A UID names the same message for as long as the UIDVALIDITY stays (RFC 9051 §2.3.1.1),
 * so an entry never goes stale; a column is only ever appended to (UIDs above its last
 * one), and messages it does not hold — new ones, or those whose header is not stored
 * inline — are answered the usual way. Expunged messages stay in it until it has twice
 * as many entries as the mailbox has messages; then it starts again.
 */

/** Between values and before each message's values: a search term with it does not use the column. */
const SEP = '\u0000';
/** Characters kept in all columns of a store (two bytes each at most). */
const COLUMN_CHARS = 16 * 1024 * 1024;

export class HeaderColumn {
  private readonly uids: number[] = [];
  /** starts[j]: where message j's values begin in the text (at its SEP). */
  private readonly starts: number[] = [];
  private text = '';
  /** Appended since the text was last joined (joined on the next answer, not a string per append). */
  private pending: string[] = [];
  private pendingChars = 0;

  constructor(readonly uidvalidity: number) {}

  get length(): number {
    return this.uids.length;
  }

  get lastUid(): number {
    return this.uids.length ? this.uids[this.uids.length - 1]! : 0;
  }

  /** Characters held, for the cache's bound. */
  get chars(): number {
    return this.text.length + this.pendingChars + 2 * this.uids.length;
  }

  /** Only for UIDs above lastUid (the column stays in UID order). */
  append(uid: number, values: readonly string[]): void {
    if (uid <= this.lastUid) throw new Error(`header column: UID ${uid} after ${this.lastUid}`);
    this.uids.push(uid);
    this.starts.push(this.text.length + this.pendingChars);
    const piece = SEP + values.join(SEP);
    this.pending.push(piece);
    this.pendingChars += piece.length;
  }

  /** Can the column answer a search for `term` (folded)? The empty term matches only messages with the field, which the text does not say. */
  static usable(term: string): boolean {
    return term.length > 0 && !term.includes(SEP);
  }

  /**
   * For the messages at `open` (indexes into `messages`, ascending; messages in UID
   * order) that the column holds, sets answer[i] to `yes` when one of their values
   * contains `term`, else to `no`. Returns the indexes it holds nothing for.
   */
  answer(term: string, messages: readonly MessageUid[], open: readonly number[], answer: Uint8Array, yes: number, no: number): number[] {
    if (this.pending.length) {
      this.text += this.pending.join('');
      this.pending = [];
      this.pendingChars = 0;
    }
    const { text, starts, uids } = this;
    const n = uids.length;
    const hit = new Uint8Array(n);
    // Hits come in text order, so the message holding each is found by walking forward;
    // after a hit the search goes on at the next message.
    let j = 0;
    for (let p = text.indexOf(term); p >= 0; ) {
      while (j + 1 < n && starts[j + 1]! <= p) j++;
      hit[j] = 1;
      if (j + 1 >= n) break;
      p = text.indexOf(term, starts[j + 1]);
    }
    const rest: number[] = [];
    let k = 0;
    for (const i of open) {
      const uid = messages[i]!.uid;
      while (k < n && uids[k]! < uid) k++;
      if (k < n && uids[k] === uid) answer[i] = hit[k] ? yes : no;
      else rest.push(i);
    }
    return rest;
  }
}

const stores = new WeakMap<object, LRUCache<string, HeaderColumn>>();

/**
 * The columns of one mailbox of a store (`store`: any object standing for it, the
 * DataStore), for a session whose list has `messages` messages: `column(field)` gives
 * the column to answer from and append to. `done()` records what appends cost the
 * cache's bound.
 */
export function headerColumns(store: object, mailbox: { id: number; uidvalidity: number }, messages: number): { column(field: string): HeaderColumn; done(): void } {
  let cache = stores.get(store);
  if (!cache) stores.set(store, (cache = new LRUCache({ maxSize: COLUMN_CHARS, sizeCalculation: (c) => Math.max(1, c.chars) })));
  const used = new Map<string, HeaderColumn>();
  return {
    column(field) {
      const key = `${mailbox.id}\n${field}`;
      let c = used.get(key) ?? cache.get(key);
      if (!c || c.uidvalidity !== mailbox.uidvalidity || c.length > 2 * messages + 64) {
        c = new HeaderColumn(mailbox.uidvalidity);
        cache.set(key, c);
      }
      used.set(key, c);
      return c;
    },
    done() {
      // Set again: the cache computes an entry's size when it is set.
      for (const [key, c] of used) if (cache.peek(key) === c) cache.set(key, c);
    },
  };
}
