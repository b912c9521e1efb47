/**
 * The algorithms behind SORT and THREAD (RFC 5256), protocol-free and pure:
 *  - base subject extraction (§2.1) and the "is a reply or forward" test;
 *  - sent date (§2.2): the Date header, else the internal date;
 *  - SORT ordering (§3 SORT) with RFC 5957 DISPLAYFROM/DISPLAYTO;
 *  - THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (§3 THREAD), and the formatting
 *    of a thread forest as the THREAD response's data (§4).
 * String comparisons use a case fold standing in for i;unicode-casemap (RFC 5051):
 * NFKD, then lower case.
 */

/** i;unicode-casemap stand-in: compatibility decomposition and case folding. */
export function casemap(s: string): string {
  return s.normalize('NFKD').toLowerCase().normalize('NFKD');
}

export interface BaseSubject {
  /** The base subject, not yet case-folded (compare it after casemap()). */
  base: string;
  /** Extraction removed a subj-refwd, a "(fwd)" trailer or a "[fwd: …]" wrapper (§2.1, used by THREAD). */
  replyOrForward: boolean;
}

// RFC 5256 §5: subj-blob = "[" *BLOBCHAR "]" *WSP; BLOBCHAR = any CHAR8 except "[" and "]".
const BLOB = /^\[[^[\]]*\][ \t]*/;
// subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"   (subj-leader = (*subj-blob subj-refwd) / WSP)
const REFWD = /^(?:re|fwd?)[ \t]*(?:\[[^[\]]*\][ \t]*)?:/i;
const TRAILER = /(?:[ \t]*\(fwd\)|[ \t]+)$/i;

/**
 * RFC 5256 §2.1, steps 1–7. `subject` is the Subject with RFC 2047 words already
 * decoded (step 1's conversion to UTF-8); folding whitespace is collapsed here.
 */
export function baseSubject(subject: string): BaseSubject {
  // (1) tabs and continuations become spaces; runs of spaces become one
  let s = subject.replace(/\r?\n/g, '').replace(/[ \t]+/g, ' ');
  let replyOrForward = false;
  for (;;) {
    // (2) trailing "(fwd)" and whitespace, repeatedly
    for (let m = TRAILER.exec(s); m && m[0].length; m = TRAILER.exec(s)) {
      if (/\(fwd\)/i.test(m[0])) replyOrForward = true;
      s = s.slice(0, s.length - m[0].length);
    }
    // (5) repeat (3) and (4) until nothing changes
    for (let changed = true; changed; ) {
      changed = false;
      // (3) subj-leader: leading whitespace, or *subj-blob subj-refwd
      for (;;) {
        if (s.startsWith(' ') || s.startsWith('\t')) {
          s = s.replace(/^[ \t]+/, '');
          changed = true;
          continue;
        }
        let rest = s;
        for (let b = BLOB.exec(rest); b; b = BLOB.exec(rest)) rest = rest.slice(b[0].length);
        const r = REFWD.exec(rest);
        if (!r) break;
        s = rest.slice(r[0].length);
        replyOrForward = true;
        changed = true;
      }
      // (4) a leading subj-blob, if what follows is not empty
      const b = BLOB.exec(s);
      if (b && s.length > b[0].length && s.slice(b[0].length).trim() !== '') {
        s = s.slice(b[0].length);
        changed = true;
      }
    }
    // (6) "[fwd:" … "]" wrapper: remove it and go back to (2)
    if (/^\[fwd:/i.test(s) && s.endsWith(']')) {
      s = s.slice(5, -1);
      replyOrForward = true;
      continue;
    }
    break;
  }
  return { base: s, replyOrForward };
}

// ---------------------------------------------------------------------------
// SORT (RFC 5256 §3, RFC 5957)

export type SortKey = 'ARRIVAL' | 'CC' | 'DATE' | 'FROM' | 'SIZE' | 'SUBJECT' | 'TO' | 'DISPLAYFROM' | 'DISPLAYTO';
export const SORT_KEYS: ReadonlySet<string> = new Set<SortKey>(['ARRIVAL', 'CC', 'DATE', 'FROM', 'SIZE', 'SUBJECT', 'TO', 'DISPLAYFROM', 'DISPLAYTO']);

export interface SortCriterion {
  key: SortKey;
  reverse: boolean;
}

/** What SORT and THREAD know about one message; strings already case-folded where compared. */
export interface SortItem {
  /** The number reported: a sequence number or a UID. */
  n: number;
  /** Position in the mailbox (ties are broken by it, RFC 5256 §3). */
  seq: number;
  /** INTERNALDATE, ms. */
  arrival: number;
  /** Sent date (§2.2), ms: the Date header, else the internal date. */
  date: number;
  size: number;
  /** casemap(base subject). */
  subject: string;
  replyOrForward: boolean;
  /** casemap(addr-mailbox) of the first From/To/Cc address, "" when none. */
  from: string;
  to: string;
  cc: string;
  /** RFC 5957: casemap(display name, else addr-spec) of the first From/To address. */
  displayFrom: string;
  displayTo: string;
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareBy(key: SortKey, a: SortItem, b: SortItem): number {
  switch (key) {
    case 'ARRIVAL':
      return a.arrival - b.arrival;
    case 'DATE':
      return a.date - b.date;
    case 'SIZE':
      return a.size - b.size;
    case 'SUBJECT':
      return cmpStr(a.subject, b.subject);
    case 'FROM':
      return cmpStr(a.from, b.from);
    case 'TO':
      return cmpStr(a.to, b.to);
    case 'CC':
      return cmpStr(a.cc, b.cc);
    case 'DISPLAYFROM':
      return cmpStr(a.displayFrom, b.displayFrom);
    case 'DISPLAYTO':
      return cmpStr(a.displayTo, b.displayTo);
  }
}

/** Sorts by the criteria in turn; messages equal in all of them stay in mailbox order (REVERSE does not apply to that). */
export function sortItems(items: readonly SortItem[], criteria: readonly SortCriterion[]): SortItem[] {
  return [...items].sort((a, b) => {
    for (const c of criteria) {
      const d = compareBy(c.key, a, b);
      if (d) return c.reverse ? -d : d;
    }
    return a.seq - b.seq;
  });
}

/** §2.2: by sent date, then by sequence number. */
function bySentDate(a: SortItem, b: SortItem): number {
  return a.date - b.date || a.seq - b.seq;
}

// ---------------------------------------------------------------------------
// THREAD (RFC 5256 §3)

/** A node of a thread tree; `item` null is a dummy (a message referred to but not present). */
export interface ThreadNode {
  item: SortItem | null;
  children: ThreadNode[];
}

/** THREAD=ORDEREDSUBJECT: threads of equal base subject, the earliest message the parent of the others. */
export function orderedSubject(items: readonly SortItem[]): ThreadNode[] {
  const sorted = [...items].sort((a, b) => cmpStr(a.subject, b.subject) || bySentDate(a, b));
  const threads: ThreadNode[] = [];
  let head: ThreadNode | null = null;
  for (const it of sorted) {
    if (head && head.item!.subject === it.subject) head.children.push({ item: it, children: [] });
    else {
      head = { item: it, children: [] };
      threads.push(head);
    }
  }
  return threads.sort((a, b) => bySentDate(a.item!, b.item!));
}

/** A message for THREAD=REFERENCES: its sort data and the message IDs from its header. */
export interface ReferencesItem {
  item: SortItem;
  /** Message-ID, with angle brackets, or null. */
  messageId: string | null;
  /** The valid message IDs of References, else the first of In-Reply-To (§3 step 1.A). */
  references: string[];
}

/** The msg-ids ("<…>") in a header value, in order. Comparisons are case-sensitive (§3 step 1.A). */
export function parseMessageIds(value: string | null | undefined): string[] {
  if (!value) return [];
  const out: string[] = [];
  for (const m of value.matchAll(/<([^<>\s]*(?:\s+[^<>\s]+)*)>/g)) {
    const id = m[1]!.replace(/\s+/g, '');
    if (id) out.push(`<${id}>`);
  }
  return out;
}

/** §3 step 1.A: References' IDs, or when it has none, the first ID of In-Reply-To. */
export function threadReferences(references: string | null | undefined, inReplyTo: string | null | undefined): string[] {
  const refs = parseMessageIds(references);
  if (refs.length) return refs;
  return parseMessageIds(inReplyTo).slice(0, 1);
}

interface Container {
  item: SortItem | null;
  parent: Container | null;
  children: Container[];
}

function isAncestor(a: Container, of: Container): boolean {
  for (let p: Container | null = of; p; p = p.parent) if (p === a) return true;
  return false;
}

function unlink(c: Container): void {
  if (!c.parent) return;
  const sib = c.parent.children;
  sib.splice(sib.indexOf(c), 1);
  c.parent = null;
}

function link(parent: Container, child: Container): void {
  child.parent = parent;
  parent.children.push(child);
}

/** First message of a (dummy) node for sorting: the node itself, or its first child once those are sorted. */
function sortItemOf(n: ThreadNode): SortItem | null {
  return n.item ?? (n.children[0] ? sortItemOf(n.children[0]) : null);
}

function byNodeDate(a: ThreadNode, b: ThreadNode): number {
  const x = sortItemOf(a);
  const y = sortItemOf(b);
  if (!x || !y) return x ? 1 : y ? -1 : 0;
  return bySentDate(x, y);
}

/** THREAD=REFERENCES, RFC 5256 §3 steps 1–6. `messages` in mailbox order. */
export function referencesThreads(messages: readonly ReferencesItem[]): ThreadNode[] {
  const byId = new Map<string, Container>();
  const containers: Container[] = [];
  const get = (id: string): Container => {
    let c = byId.get(id);
    if (!c) {
      c = { item: null, parent: null, children: [] };
      byId.set(id, c);
    }
    return c;
  };
  // Message-IDs first: a reference to a later message in the mailbox finds that message, not a dummy.
  // (1.A) no Message-ID or a duplicate one: a unique one (here: a container of its own).
  for (const m of messages) {
    let c: Container | undefined;
    if (m.messageId) {
      const existing = byId.get(m.messageId);
      if (!existing) {
        c = { item: m.item, parent: null, children: [] };
        byId.set(m.messageId, c);
      } else if (existing.item === null) {
        existing.item = m.item;
        c = existing;
      }
    }
    containers.push(c ?? { item: m.item, parent: null, children: [] });
  }
  messages.forEach((m, i) => {
    const self = containers[i]!;
    // (1.A) link the references in order; an existing parent stays; no loops.
    let prev: Container | null = null;
    for (const id of m.references) {
      const c = get(id);
      if (prev && c !== prev && !c.parent && !isAncestor(c, prev)) link(prev, c);
      prev = c;
    }
    // (1.B) the last reference is the parent (replacing any earlier link), unless that makes a loop.
    if (prev && prev !== self && !isAncestor(self, prev)) {
      unlink(self);
      link(prev, self);
    } else if (!prev) unlink(self);
  });
  // (2) the root set: everything without a parent
  const seen = new Set<Container>();
  const roots: Container[] = [];
  for (const c of [...containers, ...byId.values()]) {
    if (seen.has(c)) continue;
    seen.add(c);
    if (!c.parent) roots.push(c);
  }
  const toNode = (c: Container): ThreadNode => ({ item: c.item, children: c.children.map(toNode) });
  // (3) prune dummies
  let top = prune(roots.map(toNode), true);
  // (4) sort the root set by sent date (a dummy by its first child after sorting those)
  for (const n of top) if (!n.item) n.children.sort(byNodeDate);
  top.sort(byNodeDate);
  // (5) gather threads of the same base subject
  top = mergeBySubject(top);
  // (6) sort all siblings by sent date, deepest first
  const sortDeep = (list: ThreadNode[]) => {
    for (const n of list) sortDeep(n.children);
    list.sort(byNodeDate);
  };
  sortDeep(top);
  return top;
}

/** (3): a childless dummy goes; a dummy with children is replaced by them, except at the root with more than one child. */
function prune(list: ThreadNode[], atRoot: boolean): ThreadNode[] {
  const out: ThreadNode[] = [];
  for (const n of list) {
    n.children = prune(n.children, false);
    if (n.item) out.push(n);
    else if (n.children.length === 0) continue;
    else if (!atRoot || n.children.length === 1) out.push(...n.children);
    else out.push(n);
  }
  return out;
}

function threadSubject(n: ThreadNode): string {
  const it = n.item ?? n.children[0]?.item ?? null;
  return it ? it.subject : '';
}

/** (5) steps A–C. */
function mergeBySubject(top: ThreadNode[]): ThreadNode[] {
  const table = new Map<string, ThreadNode>();
  const isReply = (n: ThreadNode) => !!n.item?.replyOrForward;
  // (B) one message per base subject
  for (const n of top) {
    const subj = threadSubject(n);
    if (!subj) continue;
    const old = table.get(subj);
    if (!old) table.set(subj, n);
    else if (old.item && (!n.item || (isReply(old) && !isReply(n)))) table.set(subj, n);
  }
  // (C) merge
  const out = [...top];
  const removed = new Set<ThreadNode>();
  for (const n of top) {
    const subj = threadSubject(n);
    if (!subj) continue;
    const t = table.get(subj)!;
    if (t === n) continue;
    if (!t.item && !n.item) {
      t.children.push(...n.children);
      removed.add(n);
    } else if (!t.item && n.item) {
      t.children.push(n);
      removed.add(n);
    } else if (isReply(n) && !isReply(t)) {
      t.children.push(n);
      removed.add(n);
    } else {
      const dummy: ThreadNode = { item: null, children: [t, n] };
      out[out.indexOf(t)] = dummy;
      table.set(subj, dummy);
      removed.add(n);
    }
  }
  return out.filter((n) => !removed.has(n));
}

/**
 * The THREAD response data (RFC 5256 §4): `(a b (c)(d e))` per thread. A chain of
 * single children is written flat; a node with several children lists each child's
 * subtree in parentheses; a dummy contributes no number.
 */
export function formatThreads(threads: readonly ThreadNode[]): string {
  const inner = (n: ThreadNode): string => {
    const nums: number[] = [];
    let cur = n;
    for (;;) {
      if (cur.item) nums.push(cur.item.n);
      if (cur.children.length !== 1) break;
      cur = cur.children[0]!;
    }
    const nested = cur.children.length > 1 ? cur.children.map((c) => `(${inner(c)})`).join('') : '';
    return nums.join(' ') + (nums.length && nested ? ' ' : '') + nested;
  };
  return threads.map((t) => `(${inner(t)})`).join('');
}
