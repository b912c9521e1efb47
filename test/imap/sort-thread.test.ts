import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { ImapTestClient, type ImapReply } from '../helpers/imap-client.ts';
import {
  baseSubject,
  formatThreads,
  orderedSubject,
  referencesThreads,
  sortItems,
  threadReferences,
  parseMessageIds,
  type ReferencesItem,
  type SortItem,
} from '../../src/imap/sort-thread.ts';

/** SORT and THREAD (RFC 5256; RFC 5957 SORT=DISPLAY). */

// ---------------------------------------------------------------------------
// Pure algorithms

test('base subject (RFC 5256 §2.1): Re/Fw/Fwd leaders, blobs, (fwd) trailers, [fwd: …] wrappers, whitespace', () => {
  const cases: Array<[string, string, boolean]> = [
    ['hello', 'hello', false],
    ['Re: hello', 'hello', true],
    ['RE: Re: re:hello', 'hello', true],
    ['Re : hello', 'hello', true],
    ['Re[2]: hello', 'hello', true],
    ['Fw: Re: x', 'x', true],
    ['FWD: x', 'x', true],
    ['Fwd: [list] Re: topic', 'topic', true],
    ['[list] topic', 'topic', false],
    ['[list][other] Re: topic', 'topic', true],
    ['[list]', '[list]', false],
    ['[a] [b]', '[b]', false],
    ['topic (fwd)', 'topic', true],
    ['topic (FWD) (fwd)  ', 'topic', true],
    ['[Fwd: Re: topic]', 'topic', true],
    ['Re: [fwd: hello (fwd)]', 'hello', true],
    ['  spaced \t  out  ', 'spaced out', false],
    ['Ref: x', 'Ref: x', false],
    ['Re:', '', true],
    ['', '', false],
    ['Réponse: café', 'Réponse: café', false],
  ];
  for (const [input, base, reply] of cases) assert.deepEqual(baseSubject(input), { base, replyOrForward: reply }, JSON.stringify(input));
});

test('message IDs: References wins, else the first In-Reply-To; folding whitespace inside an ID is dropped', () => {
  assert.deepEqual(parseMessageIds('<a@x> <b@x>\t<c@\r\n x>'), ['<a@x>', '<b@x>', '<c@x>']);
  assert.deepEqual(threadReferences('<a@x> <b@x>', '<z@x>'), ['<a@x>', '<b@x>']);
  assert.deepEqual(threadReferences('garbage', '<z@x> <y@x>'), ['<z@x>']);
  assert.deepEqual(threadReferences(null, 'Your message of Monday <z@x>'), ['<z@x>']);
  assert.deepEqual(threadReferences(null, null), []);
});

let nextSeq = 0;
function item(subject: string, date: number, extra: Partial<SortItem> = {}): SortItem {
  const seq = ++nextSeq;
  const b = baseSubject(subject);
  return { n: seq, seq, arrival: date, date, size: 0, subject: b.base.toLowerCase(), replyOrForward: b.replyOrForward, from: '', to: '', cc: '', displayFrom: '', displayTo: '', ...extra };
}

function refs(list: Array<[SortItem, string | null, string[]]>): ReferencesItem[] {
  return list.map(([it, messageId, references]) => ({ item: it, messageId, references }));
}

test('sort: criteria in turn, REVERSE per key, ties in mailbox order regardless of REVERSE', () => {
  nextSeq = 0;
  const a = item('b', 3, { size: 10 });
  const b = item('a', 3, { size: 5 });
  const c = item('a', 1, { size: 5 });
  const ns = (xs: SortItem[]) => xs.map((x) => x.n);
  assert.deepEqual(ns(sortItems([a, b, c], [{ key: 'DATE', reverse: false }])), [3, 1, 2]);
  assert.deepEqual(ns(sortItems([a, b, c], [{ key: 'DATE', reverse: true }])), [1, 2, 3]);
  assert.deepEqual(ns(sortItems([a, b, c], [{ key: 'SUBJECT', reverse: false }, { key: 'DATE', reverse: true }])), [2, 3, 1]);
  assert.deepEqual(ns(sortItems([c, b, a], [{ key: 'SIZE', reverse: true }])), [1, 2, 3]);
});

test('REFERENCES: parent/child from References, dummies for missing parents, subject merge, dates', () => {
  nextSeq = 0;
  const d = (day: number, h = 0) => Date.UTC(2025, 0, day, h);
  const m1 = item('Project plan', d(1, 10));
  const m2 = item('Re: Project plan', d(2, 10));
  const m3 = item('Re: Project plan', d(3));
  const m4 = item('Re: Project plan', d(2, 12));
  const m5 = item('Lunch?', d(1, 9));
  const m6 = item('Re: Party', d(5));
  const m7 = item('Re: Party', d(4));
  const m8 = item('Re: Lunch?', d(6));
  const m9 = item('Re: Project plan', d(7));
  const threads = referencesThreads(
    refs([
      [m1, '<a@x>', []],
      [m2, '<b@x>', ['<a@x>']],
      [m3, '<c@x>', ['<a@x>', '<b@x>']],
      [m4, '<d@x>', ['<a@x>']],
      [m5, '<e@x>', []],
      [m6, '<f@x>', ['<missing@x>']],
      [m7, '<g@x>', ['<missing@x>']],
      [m8, '<h@x>', []],
      [m9, '<i@x>', ['<c@x>']],
    ]),
  );
  assert.equal(formatThreads(threads), '(5 8)(1 (2 3 9)(4))((7)(6))');
  assert.equal(formatThreads(orderedSubject([m1, m2, m3, m4, m5, m6, m7, m8, m9])), '(5 8)(1 (2)(4)(3)(9))(7 6)');
});

test('REFERENCES: a reference to a later message, truncated References, loops, duplicate and missing Message-IDs', () => {
  nextSeq = 0;
  // The reply comes first in the mailbox; its parent later.
  const r = item('Re: x', 2);
  const p = item('x', 1);
  assert.equal(formatThreads(referencesThreads(refs([[r, '<r@x>', ['<p@x>']], [p, '<p@x>', []]]))), '(2 1)');

  // A loop: each refers to the other. No hang, no message lost.
  nextSeq = 0;
  const a = item('loop', 1);
  const b = item('loop', 2);
  const looped = formatThreads(referencesThreads(refs([[a, '<a@x>', ['<b@x>']], [b, '<b@x>', ['<a@x>']]])));
  assert.match(looped, /^\((1 2|2 1)\)$/);

  // A duplicate Message-ID: the second one is a message of its own (and the reply goes to the first).
  nextSeq = 0;
  const d1 = item('dup', 1);
  const d2 = item('other', 2);
  const d3 = item('Re: dup', 3);
  assert.equal(formatThreads(referencesThreads(refs([[d1, '<d@x>', []], [d2, '<d@x>', []], [d3, '<e@x>', ['<d@x>']]]))), '(1 3)(2)');

  // No Message-ID at all; a dummy with a single child is promoted to the root; empty subjects are not merged.
  nextSeq = 0;
  const n1 = item('', 1);
  const n2 = item('', 2);
  const n3 = item('Re: gone', 3);
  assert.equal(formatThreads(referencesThreads(refs([[n1, null, []], [n2, null, []], [n3, '<n3@x>', ['<gone@x>']]]))), '(1)(2)(3)');

  // Truncated References: the first link made stays (step 1.A), the last reference is the parent (1.B).
  nextSeq = 0;
  const t1 = item('t', 1);
  const t2 = item('Re: t', 2);
  const t3 = item('Re: t', 3);
  const t4 = item('Re: t', 4);
  const out = referencesThreads(
    refs([
      [t1, '<1@x>', []],
      [t2, '<2@x>', ['<1@x>']],
      [t3, '<3@x>', ['<2@x>']],
      [t4, '<4@x>', ['<1@x>', '<3@x>']],
    ]),
  );
  assert.equal(formatThreads(out), '(1 2 3 4)');

  // Same base subject, no references (step 5): a reply goes under a non-reply; two non-replies go under a dummy.
  nextSeq = 0;
  const s1 = item('Re: news', 1);
  const s2 = item('news', 2);
  const s3 = item('news', 3);
  assert.equal(formatThreads(referencesThreads(refs([[s1, '<s1@x>', []], [s2, '<s2@x>', []], [s3, '<s3@x>', []]]))), '((2 1)(3))');
  nextSeq = 0;
  const u1 = item('news', 1);
  const u2 = item('Re: news', 2);
  assert.equal(formatThreads(referencesThreads(refs([[u1, '<u1@x>', []], [u2, '<u2@x>', []]]))), '(1 2)');
});

test('THREAD data format (RFC 5256 §4 example shapes)', () => {
  nextSeq = 0;
  const n = (k: number) => ({ item: { ...item('s', k), n: k }, children: [] as never[] });
  // (2)(3 6 (4 23)(44 7 96))
  const t = [
    n(2),
    {
      ...n(3),
      children: [
        {
          ...n(6),
          children: [
            { ...n(4), children: [n(23)] },
            { ...n(44), children: [{ ...n(7), children: [n(96)] }] },
          ],
        },
      ],
    },
  ];
  assert.equal(formatThreads(t), '(2)(3 6 (4 23)(44 7 96))');
  assert.equal(formatThreads([{ item: null, children: [n(3), n(5)] }]), '((3)(5))');
  assert.equal(formatThreads([]), '');
});

// ---------------------------------------------------------------------------
// Over a real socket

let t: TestServer;
const CRLF = '\r\n';

function msg(headers: Record<string, string>, body: string): string {
  return `${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join(CRLF)}${CRLF}${CRLF}${body}${CRLF}`;
}

const SORT_SET: Array<{ text: string; internal: string }> = [
  {
    text: msg({ From: '"Zed" <carol@b.test>', To: 'dave@example.test', Subject: 'Re: banana', Date: 'Fri, 3 Jan 2025 10:00:00 +0000', 'Message-ID': '<s1@x>' }, 'x'.repeat(500)),
    internal: '2025-02-01T00:00:00Z',
  },
  {
    text: msg({ From: 'Adam <bob@example.test>', To: 'Yvonne <alice@example.test>', Cc: 'erin@example.test', Subject: 'apple', Date: 'Wed, 1 Jan 2025 10:00:00 +0000', 'Message-ID': '<s2@x>' }, 'x'.repeat(2000)),
    internal: '2025-01-15T00:00:00Z',
  },
  {
    text: msg({ From: 'zoe@example.test', To: 'bob@example.test', Cc: 'alice@example.test', Subject: '[list] Cherry' }, 'x'.repeat(10)),
    internal: '2025-01-02T12:00:00Z',
  },
  {
    text: msg({ From: 'bob <Alice@example.test>', To: 'carl@example.test', Subject: 'Fwd: apple', Date: 'Thu, 2 Jan 2025 10:00:00 +0000', 'Message-ID': '<s4@x>' }, 'x'.repeat(1000)),
    internal: '2025-01-20T00:00:00Z',
  },
  {
    text: msg({ From: '=?UTF-8?Q?=C3=89mile?= <mike@example.test>', To: 'Frank <frank@example.test>', Subject: 'banana', Date: 'Fri, 3 Jan 2025 10:00:00 +0000', 'Message-ID': '<s5@x>' }, 'x'.repeat(100)),
    internal: '2025-01-10T00:00:00Z',
  },
];

const jan = (day: number, h = 0) => `${['Wed', 'Thu', 'Fri', 'Sat', 'Sun', 'Mon', 'Tue'][(day - 1) % 7]}, ${day} Jan 2025 ${String(h).padStart(2, '0')}:00:00 +0000`;
const THREAD_SET: string[] = [
  msg({ From: 'a@x.test', Subject: 'Project plan', Date: jan(1, 10), 'Message-ID': '<a@x>' }, 'a'),
  msg({ From: 'a@x.test', Subject: 'Re: Project plan', Date: jan(2, 10), 'Message-ID': '<b@x>', 'In-Reply-To': '<a@x>', References: '<a@x>' }, 'b'),
  msg({ From: 'a@x.test', Subject: 'Re: Project plan', Date: jan(3), 'Message-ID': '<c@x>', References: '<a@x>\r\n <b@x>' }, 'c'),
  msg({ From: 'a@x.test', Subject: 'Re: Project plan', Date: jan(2, 12), 'Message-ID': '<d@x>', References: '<a@x>' }, 'd'),
  msg({ From: 'a@x.test', Subject: 'Lunch?', Date: jan(1, 9), 'Message-ID': '<e@x>' }, 'e'),
  msg({ From: 'a@x.test', Subject: 'Re: Party', Date: jan(5), 'Message-ID': '<f@x>', References: '<missing@x>' }, 'f'),
  msg({ From: 'a@x.test', Subject: 'Re: Party', Date: jan(4), 'Message-ID': '<g@x>', References: '<missing@x>' }, 'g'),
  msg({ From: 'a@x.test', Subject: 'Re: Lunch?', Date: jan(6), 'Message-ID': '<h@x>' }, 'h'),
  msg({ From: 'a@x.test', Subject: 'Re: Project plan', Date: jan(7), 'Message-ID': '<i@x>', 'In-Reply-To': '<c@x>' }, 'i'),
];

before(async () => {
  t = await startTestServer();
  const { ctx } = t.server;
  const alice = (await ctx.data.getAccount('alice@example.test'))!;
  const bob = (await ctx.data.getAccount('bob@example.test'))!;
  const put = (accountId: number, text: string, internal: number) =>
    ctx.ingest.ingestBuffer(Buffer.from(text), { deliveries: [{ accountId, mailbox: 'INBOX', flags: [] }], queue: null, internalDate: internal });
  // A message expunged first: UIDs are then sequence numbers + 1.
  await put(alice.id, msg({ From: 'x@x.test', Subject: 'gone' }, 'gone'), Date.parse('2025-01-01T00:00:00Z'));
  const inbox = (await ctx.data.getMailbox(alice.id, 'INBOX'))!;
  await ctx.data.storeFlags(inbox.id, [1], 'add', ['\\Deleted']);
  await ctx.data.expunge(inbox.id, [1]);
  for (const m of SORT_SET) await put(alice.id, m.text, Date.parse(m.internal));
  for (const m of THREAD_SET) await put(bob.id, m, Date.parse('2025-02-01T00:00:00Z'));
});
after(() => t.stop());

async function open(user = 'alice@example.test'): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  assert.equal((await c.login(user)).status, 'OK');
  assert.equal((await c.command('SELECT INBOX')).status, 'OK');
  return c;
}

function sortResult(r: ImapReply): number[] {
  assert.equal(r.status, 'OK', `${r.status} ${r.text}`);
  const line = r.lines.find((l) => l.startsWith('* SORT'));
  assert.ok(line, `no * SORT in ${JSON.stringify(r.lines)}`);
  return line.slice('* SORT'.length).trim().split(' ').filter(Boolean).map(Number);
}

function threadResult(r: ImapReply): string {
  assert.equal(r.status, 'OK', `${r.status} ${r.text}`);
  const line = r.lines.find((l) => l.startsWith('* THREAD'));
  assert.ok(line, `no * THREAD in ${JSON.stringify(r.lines)}`);
  return line.slice('* THREAD'.length).trim();
}

test('capabilities after login: SORT, SORT=DISPLAY, THREAD=ORDEREDSUBJECT, THREAD=REFERENCES', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    assert.doesNotMatch(c.greeting, /SORT|THREAD/);
    const login = await c.login();
    for (const cap of ['SORT', 'SORT=DISPLAY', 'THREAD=ORDEREDSUBJECT', 'THREAD=REFERENCES']) assert.match(login.text, new RegExp(` ${cap}[ \\]]`), cap);
  } finally {
    c.close();
  }
});

test('SORT by every criterion, REVERSE, several criteria, ties in mailbox order', async () => {
  const c = await open();
  try {
    const cases: Array<[string, number[]]> = [
      ['(ARRIVAL)', [3, 5, 2, 4, 1]],
      ['(REVERSE ARRIVAL)', [1, 4, 2, 5, 3]],
      ['(DATE)', [2, 4, 3, 1, 5]],
      ['(REVERSE DATE)', [1, 5, 3, 4, 2]],
      ['(FROM)', [4, 2, 1, 5, 3]],
      ['(TO)', [2, 3, 4, 1, 5]],
      ['(CC)', [1, 4, 5, 3, 2]],
      ['(SIZE)', [3, 5, 1, 4, 2]],
      ['(SUBJECT)', [2, 4, 1, 5, 3]],
      ['(REVERSE SUBJECT)', [3, 1, 5, 2, 4]],
      ['(SUBJECT REVERSE DATE)', [4, 2, 1, 5, 3]],
      ['(DISPLAYFROM)', [2, 4, 5, 1, 3]],
      ['(DISPLAYTO)', [3, 4, 1, 5, 2]],
      ['(subject arrival)', [2, 4, 5, 1, 3]],
    ];
    for (const [crit, want] of cases) assert.deepEqual(sortResult(await c.command(`SORT ${crit} UTF-8 ALL`)), want, crit);
  } finally {
    c.close();
  }
});

test('SORT with search keys (the SEARCH evaluator), UID SORT, US-ASCII, MODSEQ', async () => {
  const c = await open();
  try {
    assert.deepEqual(sortResult(await c.command('SORT (FROM) UTF-8 SUBJECT apple')), [4, 2]);
    assert.deepEqual(sortResult(await c.command('SORT (DATE) US-ASCII OR FROM zoe CC erin')), [2, 3]);
    assert.deepEqual(sortResult(await c.command('SORT (DATE) UTF-8 FROM nobody')), []);
    assert.deepEqual(sortResult(await c.command('SORT (DATE) UTF-8 FROM "\u00c9mile"')), [5]);
    assert.deepEqual(sortResult(await c.command('UID SORT (ARRIVAL) UTF-8 ALL')), [4, 6, 3, 5, 2]);
    assert.deepEqual(sortResult(await c.command('UID SORT (SIZE) UTF-8 UID 4:6')), [4, 6, 5]);
    const ms = await c.command('SORT (DATE) UTF-8 MODSEQ 1');
    assert.match(ms.lines.find((l) => l.startsWith('* SORT'))!, /^\* SORT 2 4 3 1 5 \(MODSEQ \d+\)$/);
  } finally {
    c.close();
  }
});

test('SORT and THREAD errors: bad criteria and algorithms are BAD, an unknown charset NO [BADCHARSET], not before SELECT', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    await c.login();
    const early = await c.command('SORT (DATE) UTF-8 ALL');
    assert.equal(early.status, 'BAD');
    assert.equal((await c.command('SELECT INBOX')).status, 'OK');
    for (const cmd of ['SORT (FOO) UTF-8 ALL', 'SORT DATE UTF-8 ALL', 'SORT () UTF-8 ALL', 'SORT (REVERSE) UTF-8 ALL', 'SORT (REVERSE REVERSE DATE) UTF-8 ALL', 'SORT (DATE)', 'SORT (DATE) UTF-8', 'SORT (DATE) UTF-8 FOO', 'THREAD FOO UTF-8 ALL', 'THREAD REFERENCES', 'THREAD (REFERENCES) UTF-8 ALL']) {
      const r = await c.command(cmd);
      assert.equal(r.status, 'BAD', `${cmd}: ${r.status} ${r.text}`);
    }
    const cs = await c.command('SORT (DATE) KOI8-R ALL');
    assert.equal(cs.status, 'NO');
    assert.match(cs.text, /^\[BADCHARSET \(UTF-8 US-ASCII\)\]/);
    const tcs = await c.command('THREAD REFERENCES ISO-8859-1 ALL');
    assert.equal(tcs.status, 'NO');
    assert.match(tcs.text, /^\[BADCHARSET/);
  } finally {
    c.close();
  }
});

test('THREAD=REFERENCES and THREAD=ORDEREDSUBJECT over a hand-made thread set (References folded, In-Reply-To alone)', async () => {
  const c = await open('bob@example.test');
  try {
    assert.equal(threadResult(await c.command('THREAD REFERENCES UTF-8 ALL')), '(5 8)(1 (2 3 9)(4))((7)(6))');
    assert.equal(threadResult(await c.command('UID THREAD REFERENCES UTF-8 ALL')), '(5 8)(1 (2 3 9)(4))((7)(6))');
    assert.equal(threadResult(await c.command('THREAD ORDEREDSUBJECT UTF-8 ALL')), '(5 8)(1 (2)(4)(3)(9))(7 6)');
    // Only the messages the search matched are threaded.
    assert.equal(threadResult(await c.command('THREAD REFERENCES US-ASCII SUBJECT party')), '((7)(6))');
    assert.equal(threadResult(await c.command('THREAD REFERENCES UTF-8 NOT SUBJECT lunch')), '(1 (2 3 9)(4))((7)(6))');
    const none = await c.command('THREAD REFERENCES UTF-8 SUBJECT nothing-like-this');
    assert.equal(none.status, 'OK');
    assert.ok(none.lines.includes('* THREAD'), JSON.stringify(none.lines));
  } finally {
    c.close();
  }
});
