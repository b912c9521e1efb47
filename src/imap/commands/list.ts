import { atomUpper, encodeName, isList } from '../args.ts';
import { bad } from '../errors.ts';
import { decodeMutf7 } from '../mutf7.ts';
import { tokenText, type Command, type Token } from '../parser.ts';
import { untagged } from '../writer.ts';
import type { ImapSession } from '../session.ts';
import { compareMailboxNames, MAILBOX_DELIMITER, parentNames, type MailboxInfo } from '../../store/imap-model.ts';
import { noteCondstore, parseStatusItems, statusResponse, type StatusItem } from './status.ts';
import type { CommandSpec } from './index.ts';

/**
 * LIST (RFC 9051 §6.3.9) with LIST-EXTENDED (RFC 5258): selection options
 * SUBSCRIBED, REMOTE, RECURSIVEMATCH, SPECIAL-USE (RFC 6154 §3), return options
 * SUBSCRIBED, CHILDREN, SPECIAL-USE, STATUS (RFC 5819), several patterns; and
 * LSUB (RFC 3501 §6.3.9, IMAP4rev1 only).
 *
 * Name attributes: \HasChildren / \HasNoChildren on every mailbox (RFC 3348, RFC 5258 §4),
 * the RFC 6154 special-use attribute always (it is cheap and clients look for it),
 * \Subscribed when asked for, \NonExistent (\Noselect for IMAP4rev1 clients in a
 * plain LIST) for names that are listed but are no mailbox.
 */

const DELIM = `"${MAILBOX_DELIMITER}"`;

interface ListOptions {
  subscribedSel: boolean;
  specialUseSel: boolean;
  recursiveMatch: boolean;
  returnSubscribed: boolean;
  returnStatus: StatusItem[] | null;
  /** Any LIST-EXTENDED syntax used (then \NonExistent is understood by the client). */
  extended: boolean;
}

/** A text argument (reference or pattern) as UTF-8: modified UTF-7 decoded for IMAP4rev1 clients. */
function patternText(s: ImapSession, cmd: Command, t: Token | undefined, what: string): string {
  if (!t || t.kind === 'list' || t.kind === 'stream') throw bad(`${cmd.name}: expected ${what}`);
  const raw = tokenText(t);
  if (raw === null) throw bad(`${cmd.name}: expected ${what}`);
  if (s.utf8) return raw;
  const d = decodeMutf7(raw);
  // A name that is not valid modified UTF-7 cannot match any mailbox; keep it as given.
  return d.ok ? d.value : raw;
}

/**
 * A list pattern as a matcher (RFC 9051 §6.3.9: `*` matches anything, `%` anything
 * but the delimiter). INBOX is case-insensitive: names in INBOX's tree are also
 * tried against the pattern with its leading literal characters upper-cased.
 */
export function patternMatcher(pattern: string): (name: string) => boolean {
  const re = compile(pattern);
  let k = 0;
  while (k < 5 && k < pattern.length && pattern[k] !== '*' && pattern[k] !== '%') k++;
  const inboxRe = compile(pattern.slice(0, k).toUpperCase() + pattern.slice(k));
  return (name) => re.test(name) || ((name === 'INBOX' || name.startsWith(`INBOX${MAILBOX_DELIMITER}`)) && inboxRe.test(name));
}

function compile(pattern: string): RegExp {
  let src = '';
  for (const ch of pattern) {
    if (ch === '*') src += '.*';
    else if (ch === '%') src += `[^${MAILBOX_DELIMITER}]*`;
    else src += ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${src}$`, 'su');
}

/** The canonical pattern of a reference and a mailbox pattern (RFC 3501 §6.3.8: the reference is a prefix). */
function canonical(reference: string, pattern: string): string {
  return pattern.startsWith(MAILBOX_DELIMITER) ? pattern.slice(1) : reference + pattern;
}

function parseSelection(cmd: Command, t: Extract<Token, { kind: 'list' }>, o: ListOptions): void {
  for (const item of t.items) {
    const a = atomUpper(item);
    if (a === 'SUBSCRIBED') {
      o.subscribedSel = true;
      o.returnSubscribed = true;
    } else if (a === 'SPECIAL-USE') o.specialUseSel = true;
    else if (a === 'RECURSIVEMATCH') o.recursiveMatch = true;
    else if (a === 'REMOTE') continue; // RFC 5258 §3: we have no remote mailboxes
    else throw bad(`${cmd.name}: unknown selection option ${a ?? ''}`.trim());
  }
  // RFC 5258 §3: RECURSIVEMATCH alone (or only with REMOTE) is an error.
  if (o.recursiveMatch && !o.subscribedSel && !o.specialUseSel) throw bad(`${cmd.name}: RECURSIVEMATCH needs another selection option`);
}

function parseReturn(cmd: Command, t: Token | undefined, o: ListOptions): void {
  if (!isList(t)) throw bad(`${cmd.name}: expected RETURN (options)`);
  for (let i = 0; i < t.items.length; i++) {
    const a = atomUpper(t.items[i]);
    if (a === 'SUBSCRIBED') o.returnSubscribed = true;
    else if (a === 'CHILDREN' || a === 'SPECIAL-USE') continue; // always returned
    else if (a === 'STATUS') {
      // RFC 5819 §2
      o.returnStatus = parseStatusItems(cmd.name, t.items[++i]);
    } else throw bad(`${cmd.name}: unknown return option ${a ?? ''}`.trim());
  }
}

function parsePatterns(s: ImapSession, cmd: Command, t: Token | undefined): string[] {
  if (isList(t)) {
    if (!t.items.length) throw bad(`${cmd.name}: expected at least one pattern`);
    return t.items.map((p) => patternText(s, cmd, p, 'a mailbox pattern'));
  }
  return [patternText(s, cmd, t, 'a mailbox pattern')];
}

function line(s: ImapSession, kind: 'LIST' | 'LSUB', attrs: string[], name: string, extra?: string): Buffer {
  const items: Array<string | { astring: string }> = [kind, `(${attrs.join(' ')})`, DELIM, { astring: encodeName(s, name) }];
  if (extra) items.push(extra);
  return untagged(items, { utf8: s.utf8 });
}

/**
 * RFC 9051 §6.3.6: after a RENAME, IMAP4rev2 clients learn the new name from an untagged LIST
 * with the OLDNAME extended data item (RFC 5258 §3.5 grammar; RFC 5465 §5.4).
 */
export function renamedResponse(s: ImapSession, name: string, oldName: string): Buffer {
  return untagged(['LIST', '()', DELIM, { astring: encodeName(s, name) }, [{ string: 'OLDNAME' }, [{ astring: encodeName(s, oldName) }]]], { utf8: s.utf8 });
}

async function list(s: ImapSession, cmd: Command): Promise<void> {
  const o: ListOptions = { subscribedSel: false, specialUseSel: false, recursiveMatch: false, returnSubscribed: false, returnStatus: null, extended: false };
  const args = cmd.args;
  let i = 0;
  if (isList(args[0])) {
    parseSelection(cmd, args[0], o);
    o.extended = true;
    i = 1;
  }
  if (args.length < i + 2) throw bad(`${cmd.name}: expected a reference and a mailbox pattern`);
  const reference = patternText(s, cmd, args[i], 'a reference name');
  if (isList(args[i + 1])) o.extended = true;
  const patterns = parsePatterns(s, cmd, args[i + 1]);
  const rest = args.slice(i + 2);
  if (rest.length) {
    if (rest.length !== 2 || atomUpper(rest[0]) !== 'RETURN') throw bad(`${cmd.name}: unexpected arguments after the pattern`);
    parseReturn(cmd, rest[1], o);
    o.extended = true;
  }

  // RFC 9051 §6.3.9: an empty pattern asks for the delimiter and the root.
  if (patterns.every((p) => p === '')) {
    s.write(line(s, 'LIST', ['\\Noselect'], ''));
    return;
  }
  const matchers = patterns.filter((p) => p !== '').map((p) => patternMatcher(canonical(reference, p)));
  const matches = (name: string) => matchers.some((m) => m(name));

  const accountId = s.account!.id;
  const boxes = await s.ctx.data.listMailboxes(accountId);
  const byName = new Map<string, MailboxInfo>(boxes.map((b) => [b.name, b]));
  const subs = o.subscribedSel || o.returnSubscribed ? await s.ctx.data.listSubscriptions(accountId) : [];
  const subscribed = new Set(subs.map((x) => x.name));

  // Every name that may be listed: mailboxes, subscribed names (SUBSCRIBED selection), and their superiors.
  const universe = new Set<string>(byName.keys());
  if (o.subscribedSel) for (const n of subscribed) universe.add(n);
  for (const n of [...universe]) for (const p of parentNames(n)) universe.add(p);
  const names = [...universe].sort(compareMailboxNames);

  const hasChildren = new Set<string>();
  for (const n of byName.keys()) for (const p of parentNames(n)) hasChildren.add(p);

  const anySelection = o.subscribedSel || o.specialUseSel;
  const selected = (n: string): boolean => {
    if (!anySelection) return byName.has(n);
    if (o.subscribedSel && !subscribed.has(n)) return false;
    if (o.specialUseSel && !byName.get(n)?.specialUse) return false;
    return true;
  };
  // RFC 5258 §3.5 CHILDINFO: names with a descendant that meets the selection criteria.
  const childInfo = new Set<string>();
  if (o.recursiveMatch) for (const n of names) if (selected(n)) for (const p of parentNames(n)) childInfo.add(p);
  const criteria = [...(o.subscribedSel ? ['"SUBSCRIBED"'] : []), ...(o.specialUseSel ? ['"SPECIAL-USE"'] : [])].join(' ');

  for (const n of names) {
    if (!matches(n)) continue;
    const isSelected = selected(n);
    const withChildInfo = childInfo.has(n);
    // A plain LIST also shows missing superiors of existing mailboxes (RFC 9051 §6.3.9, "%").
    if (!isSelected && !withChildInfo && (anySelection || !hasChildren.has(n))) continue;
    const box = byName.get(n);
    const attrs: string[] = [];
    if (!box) attrs.push(o.extended || s.rev2 ? '\\NonExistent' : '\\Noselect');
    // RFC 5258 §4: child information for names that exist; a missing name only says it has children.
    if (hasChildren.has(n)) attrs.push('\\HasChildren');
    else if (box) attrs.push('\\HasNoChildren');
    if (box?.specialUse) attrs.push(box.specialUse);
    if (o.returnSubscribed && subscribed.has(n)) attrs.push('\\Subscribed');
    s.write(line(s, 'LIST', attrs, n, withChildInfo ? `("CHILDINFO" (${criteria}))` : undefined));
    // RFC 5819 §2: the STATUS response follows the mailbox's LIST response.
    if (o.returnStatus && box) s.write(await statusResponse(s, box, o.returnStatus));
  }
  if (o.returnStatus) noteCondstore(s, o.returnStatus);
}

/** RFC 3501 §6.3.9 LSUB: subscribed names; with "%", unsubscribed superiors of subscribed names as \Noselect. */
async function lsub(s: ImapSession, cmd: Command): Promise<void> {
  if (cmd.args.length !== 2) throw bad(`${cmd.name}: expected a reference and a mailbox pattern`);
  const reference = patternText(s, cmd, cmd.args[0], 'a reference name');
  const pattern = patternText(s, cmd, cmd.args[1], 'a mailbox pattern');
  if (pattern === '') {
    s.write(line(s, 'LSUB', ['\\Noselect'], ''));
    return;
  }
  const canon = canonical(reference, pattern);
  const matches = patternMatcher(canon);
  const subs = await s.ctx.data.listSubscriptions(s.account!.id);
  const subscribed = new Map(subs.map((x) => [x.name, x.exists]));
  const names = new Set<string>(subscribed.keys());
  if (canon.includes('%')) for (const n of subscribed.keys()) for (const p of parentNames(n)) names.add(p);
  for (const n of [...names].sort(compareMailboxNames)) {
    if (!matches(n)) continue;
    const exists = subscribed.get(n);
    s.write(line(s, 'LSUB', exists ? [] : ['\\Noselect'], n));
  }
}

export const listCommands: CommandSpec[] = [
  { name: 'LIST', states: ['authenticated', 'selected'], run: list },
  { name: 'LSUB', states: ['authenticated', 'selected'], run: lsub },
];
