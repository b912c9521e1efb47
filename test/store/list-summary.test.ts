import { test } from 'node:test';
import assert from 'node:assert/strict';
import { summaryOf } from '../../src/store/list-summary.ts';
import { applyDelta, MailboxViews } from '../../src/store/mailbox-views.ts';
import type { MessageUid } from '../../src/store/imap-model.ts';

/** SELECT's FLAGS keywords and UNSEEN from a step (list-summary.ts) agree with a full pass over the list. */

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const KEYWORDS = ['$Label1', '$Label2', 'Junk', '$Forwarded'];
const m = (uid: number, modseq: number, flags: string[]): MessageUid => ({ id: uid, uid, modseq, flags, size: 10, internalDate: 0, blobHash: `h${uid}` });

function randomFlags(r: () => number, seenBias: number): string[] {
  const f: string[] = [];
  if (r() < 0.3) f.push('\\Flagged');
  if (r() < 0.2) f.push('\\Deleted');
  if (r() < seenBias) f.push('\\Seen');
  for (const k of KEYWORDS) if (r() < 0.15) f.push(k);
  return f;
}

/** What a full pass finds (a new array: nothing kept for it). */
function expected(list: readonly MessageUid[]) {
  const s = summaryOf([...list]);
  return { keywords: [...s.keywords].sort(), firstUnseen: s.firstUnseen, counts: new Map([...s.counts].sort()), deleted: s.deleted };
}

test('summaries made from a step equal a full pass, over random chains of STOREs, expunges and deliveries', () => {
  for (let seed = 1; seed <= 60; seed++) {
    const r = prng(seed);
    // Some mailboxes almost all read (UNSEEN is rare and moves), some half read.
    const seenBias = seed % 3 === 0 ? 0.97 : 0.5;
    let modseq = 1;
    let next = 1;
    let list: MessageUid[] = [];
    for (let i = 0; i < 1 + Math.floor(r() * 40); i++) list.push(m(next++, modseq++, randomFlags(r, seenBias)));
    summaryOf(list);
    for (let step = 0; step < 25; step++) {
      const changed: MessageUid[] = [];
      const expunged: number[] = [];
      for (const x of list) {
        const p = r();
        if (p < 0.08) expunged.push(x.uid);
        else if (p < 0.2) changed.push(m(x.uid, modseq++, randomFlags(r, seenBias)));
      }
      // the first unseen message read now and then (the summary must look past it)
      const firstUnseen = list.find((x) => !x.flags.includes('\\Seen'));
      if (firstUnseen && r() < 0.4 && !changed.some((c) => c.uid === firstUnseen.uid)) changed.push(m(firstUnseen.uid, modseq++, [...firstUnseen.flags, '\\Seen']));
      for (let i = Math.floor(r() * 3); i > 0; i--) changed.push(m(next++, modseq++, randomFlags(r, seenBias)));
      changed.sort((a, b) => a.uid - b.uid);
      const fresh = applyDelta(list, changed, expunged);
      const got = summaryOf(fresh, { base: list, changed, expunged });
      const want = expected(fresh);
      const why = `seed ${seed}, step ${step}`;
      assert.deepEqual([...got.keywords].sort(), want.keywords, why);
      assert.equal(got.firstUnseen, want.firstUnseen, why);
      assert.deepEqual(new Map([...got.counts].sort()), want.counts, why);
      assert.equal(got.firstUnseenUid, got.firstUnseen < 0 ? 0 : fresh[got.firstUnseen]!.uid, why);
      assert.deepEqual(got.deleted, want.deleted, why);
      assert.deepEqual(want.deleted, fresh.filter((x) => x.flags.includes('\\Deleted')).map((x) => x.uid), why);
      list = fresh;
    }
  }
});

test('a keyword no message has any more leaves FLAGS; one a STORE adds comes after the ones before', () => {
  const base = [m(1, 1, ['$A']), m(2, 2, ['\\Seen', '$B']), m(3, 3, ['\\Seen'])];
  assert.deepEqual(summaryOf(base).keywords, ['$A', '$B']);
  const changed = [m(1, 4, ['\\Seen']), m(3, 5, ['\\Seen', '$C'])];
  const fresh = applyDelta(base, changed, []);
  const s = summaryOf(fresh, { base, changed, expunged: [] });
  assert.deepEqual(s.keywords, ['$B', '$C']);
  assert.equal(s.firstUnseen, -1);
  // the same list object: the kept summary
  assert.equal(summaryOf(fresh), s);
});

test('a view carries its summary along each step: the list after several writes needs no pass of its own', async () => {
  let list = [m(1, 1, ['\\Seen']), m(2, 2, []), m(3, 3, ['\\Seen', '$A'])];
  const views = new MailboxViews({
    messageUids: async () => list,
    messageDelta: async () => {
      throw new Error('not read: the writes advance the view');
    },
  });
  const row = { id: 7, accountId: 1, name: 'INBOX', uidvalidity: 9, uidnext: 4, highestmodseq: 3, subscribed: true, specialUse: null };
  const first = await views.view(row as Parameters<MailboxViews['view']>[0]);
  summaryOf(first.messages, first.step);
  // three writes, as a client's APPEND, STORE \Deleted, STORE \Seen make them, no SELECT between
  const writes = [
    { changed: [m(4, 4, ['$B'])], expunged: [] },
    { changed: [m(4, 5, ['$B', '\\Deleted'])], expunged: [] },
    { changed: [m(2, 6, ['\\Seen'])], expunged: [] },
  ];
  let modseq = 3;
  for (const w of writes) {
    views.advance({ mailboxId: 7, uidvalidity: 9, from: modseq, to: modseq + 1, ...w });
    modseq++;
  }
  const last = views.peek(7)!;
  // A pass over the list now would see message 1 as \Deleted: the carried summary does not look.
  const m1 = last.messages[0] as { flags: readonly string[] };
  const before = m1.flags;
  m1.flags = ['\\Deleted'];
  const carried = summaryOf(last.messages);
  m1.flags = before;
  assert.deepEqual(carried.deleted, [4]);
  assert.deepEqual([...carried.keywords].sort(), ['$A', '$B']);
  assert.equal(carried.firstUnseen, 3);
  assert.equal(carried.firstUnseenUid, 4);
  list = [...last.messages];
  assert.deepEqual(carried, summaryOf(list));
  assert.notEqual(summaryOf(list), carried, 'a new array gets a pass of its own');
});
