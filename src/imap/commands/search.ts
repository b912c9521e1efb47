import { bad, no } from '../errors.ts';
import { atomUpper, isList } from '../args.ts';
import { tokenText, type Command } from '../parser.ts';
import { formatSequenceSet } from '../sequence-set.ts';
import { parseSearchKeys, runSearch, savedSearch, setSavedSearch, SearchSyntaxError, usesModseq, type MessageSource, type SearchContext } from '../search-keys.ts';
import { headerColumns } from '../search-columns.ts';
import type { MessageUid } from '../../store/imap-model.ts';
import type { ImapSession } from '../session.ts';
import { bodiesWithout, bodyPrefilterPays, loadMessages } from '../../store/search-index.ts';
import { headerBlocks } from '../../store/header-blocks.ts';
import type { CommandSpec } from './index.ts';

/**
 * SEARCH and UID SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4) with
 *  - CHARSET: UTF-8 and US-ASCII; anything else is NO [BADCHARSET (UTF-8 US-ASCII)];
 *  - RFC 4731 ESEARCH result options RETURN (MIN MAX ALL COUNT), answered with
 *    `* ESEARCH (TAG "t") [UID] …`; an IMAP4rev2 session always gets ESEARCH
 *    (RFC 9051 §7.3.4), RETURN () or no RETURN meaning ALL;
 *  - RFC 5182 SEARCHRES: RETURN (SAVE …) keeps the result for `$`;
 *  - RFC 7162 §3.1.5: a MODSEQ key adds the highest modseq of the matches.
 * The keys themselves are in ../search-keys.ts.
 */

const CHARSETS = new Set(['UTF-8', 'US-ASCII']);
const RETURN_OPTIONS = new Set(['MIN', 'MAX', 'ALL', 'COUNT', 'SAVE']);

/** Bytes start..end of a stored message. */
export async function readRange(s: ImapSession, hash: string, start: number, end: number): Promise<Buffer> {
  if (end <= start) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  for await (const c of s.ctx.blobs.read(hash, start, end)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** Where the SEARCH (and SORT/THREAD) evaluator reads messages from. */
export function source(s: ImapSession): MessageSource {
  const data = s.ctx.data;
  return {
    load: (hashes, withData) => loadMessages(data, hashes, withData),
    read: (hash, start, end) => readRange(s, hash, start, end),
    headerBlocks: (hashes) => headerBlocks(data, hashes),
    bodiesWithout: (messages, probe) => bodiesWithout(data, messages, probe),
    bodyPrefilterPays: (n) => bodyPrefilterPays(data, n),
  };
}

/** What SEARCH (and SORT/THREAD) evaluate the keys against: the selected mailbox of the session. */
export function searchContext(s: ImapSession, messages: readonly MessageUid[]): SearchContext {
  const sel = s.selected!;
  return {
    source: source(s),
    isRecent: (uid) => sel.isRecent(uid),
    saved: savedSearch(sel),
    now: s.ctx.now(),
    columns: headerColumns(s.ctx.data, sel.info, messages.length),
  };
}

async function search(s: ImapSession, cmd: Command, byUid: boolean): Promise<string> {
  const sel = s.selected!;
  const args = cmd.args;
  let i = 0;
  // RFC 4731 §3.1: SEARCH [RETURN (options)] [CHARSET x] keys
  let ret: Set<string> | null = null;
  if (atomUpper(args[0]) === 'RETURN') {
    const list = args[1];
    if (!isList(list)) throw bad(`${cmd.name}: expected a list of return options after RETURN`);
    ret = new Set();
    for (const t of list.items) {
      const o = atomUpper(t);
      if (!o || !RETURN_OPTIONS.has(o)) throw bad(`${cmd.name}: unknown return option ${(tokenText(t) ?? '').slice(0, 30)}`);
      ret.add(o);
    }
    i = 2;
  }
  const save = ret?.has('SAVE') ?? false;
  try {
    if (atomUpper(args[i]) === 'CHARSET') {
      const cs = tokenText(args[i + 1]);
      if (cs === null) throw bad(`${cmd.name}: expected a charset after CHARSET`);
      if (!CHARSETS.has(cs.toUpperCase())) throw no(`${cmd.name}: charset ${cs.slice(0, 40)} is not supported`, 'BADCHARSET (UTF-8 US-ASCII)');
      i += 2;
    }
    const messages = sel.messages;
    let key;
    try {
      key = parseSearchKeys(args.slice(i), { exists: messages.length, maxUid: messages.at(-1)?.uid ?? 0, allowSaved: true });
    } catch (err) {
      if (err instanceof SearchSyntaxError) throw bad(`${cmd.name}: ${err.message}`);
      throw err;
    }
    const withModseq = usesModseq(key);
    // RFC 7162 §3.1: a client that searches by MODSEQ is CONDSTORE-aware from now on.
    if (withModseq) s.enabled.add('CONDSTORE');
    const hits = await runSearch(key, messages, searchContext(s, messages));
    const nums = hits.map((h) => (byUid ? h.m.uid : h.seq));
    const highest = hits.reduce((top, h) => Math.max(top, h.m.modseq), 0);

    if (save) {
      // RFC 5182 §2.4: with MIN and/or MAX (and neither ALL nor COUNT) only those are saved.
      const uids = hits.map((h) => h.m.uid);
      const onlyMinMax = (ret!.has('MIN') || ret!.has('MAX')) && !ret!.has('ALL') && !ret!.has('COUNT');
      const kept = onlyMinMax && uids.length ? [...new Set([...(ret!.has('MIN') ? [uids[0]!] : []), ...(ret!.has('MAX') ? [uids.at(-1)!] : [])])] : uids;
      setSavedSearch(sel, kept);
    }

    if (ret === null && !s.rev2) {
      // RFC 3501 §7.2.5: * SEARCH n…  (RFC 7162 §3.1.5: "(MODSEQ n)" when MODSEQ was used)
      s.untagged(`* SEARCH${nums.map((n) => ` ${n}`).join('')}${withModseq && nums.length ? ` (MODSEQ ${highest})` : ''}`);
      return `${cmd.name} completed`;
    }
    const opts = new Set(ret ?? []);
    opts.delete('SAVE');
    // RFC 5182 §2.1: SAVE alone sends no ESEARCH; RFC 4731 §3.1: RETURN () is ALL.
    if (save && opts.size === 0) return `${cmd.name} completed`;
    if (opts.size === 0) opts.add('ALL');
    const parts = [`* ESEARCH (TAG "${cmd.tag}")`];
    if (byUid) parts.push('UID');
    if (nums.length) {
      if (opts.has('MIN')) parts.push(`MIN ${nums[0]}`);
      if (opts.has('MAX')) parts.push(`MAX ${nums.at(-1)}`);
      if (opts.has('ALL')) parts.push(`ALL ${formatSequenceSet(nums)}`);
    }
    if (opts.has('COUNT')) parts.push(`COUNT ${nums.length}`);
    if (withModseq && nums.length) parts.push(`MODSEQ ${highest}`);
    s.untagged(parts.join(' '));
    return `${cmd.name} completed`;
  } catch (err) {
    // RFC 5182 §2.1: a failed SEARCH … SAVE leaves an empty saved result.
    if (save) setSavedSearch(sel, []);
    throw err;
  }
}

export const searchCommands: CommandSpec[] = [
  // RFC 9051 §7.5.1: no EXPUNGE while answering SEARCH (its numbers are in use); UID SEARCH may have them.
  { name: 'SEARCH', states: ['selected'], expungeSafe: false, run: (s, cmd) => search(s, cmd, false) },
  { name: 'UID SEARCH', states: ['selected'], expungeSafe: true, run: (s, cmd) => search(s, cmd, true) },
];
