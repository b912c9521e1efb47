import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { ImapTestClient, type ImapReply } from '../helpers/imap-client.ts';
import { parseSearchDate, sentDay } from '../../src/imap/search-keys.ts';

/** SEARCH / UID SEARCH (RFC 9051 §6.4.4, RFC 3501 §6.4.4), ESEARCH (RFC 4731), SEARCHRES (RFC 5182). */

let t: TestServer;

const CRLF = '\r\n';
const MESSAGES: Array<{ text: string; flags: string[]; internal: string }> = [
  {
    // 1: seen, answered; plain text
    text: [
      'From: "Alice Anders" <alice@example.test>',
      'To: bob@example.test',
      'Cc: carol@example.test',
      'Subject: Meeting tomorrow',
      'Date: Mon, 1 Jan 2024 10:00:00 +0000',
      '',
      "Let's discuss the budget.",
      '',
    ].join(CRLF),
    flags: ['\\Seen', '\\Answered'],
    internal: '2024-01-01T12:00:00Z',
  },
  {
    // 2: flagged, $Important; RFC 2047 subject; multipart/alternative with QP text and HTML; Date late on the 15th in -0800
    text: [
      'From: Bob <bob@example.test>',
      'To: alice@example.test',
      'Bcc: dave@example.test',
      'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from Bob',
      'Date: Thu, 15 Feb 2024 23:30:00 -0800',
      'MIME-Version: 1.0',
      'Content-Type: multipart/alternative; boundary="b1"',
      '',
      '--b1',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'Caf=C3=A9 au lait',
      '--b1',
      'Content-Type: text/html; charset=utf-8',
      '',
      '<p>Hello <b>World</b></p>',
      '--b1--',
      '',
    ].join(CRLF),
    flags: ['\\Flagged', '$Important'],
    internal: '2024-02-16T08:00:00Z',
  },
  {
    // 3: deleted, draft; base64 body; big
    text: [
      'From: carol@example.test',
      'To: alice@example.test',
      'Subject: Invoice 42',
      'X-Priority: 1',
      'Date: Fri, 1 Mar 2024 09:00:00 +0100',
      'Content-Type: text/plain; charset=us-ascii',
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from('Payment due: 100 EUR\r\n' + 'padding line\r\n'.repeat(400)).toString('base64').replace(/.{76}/g, '$&\r\n'),
      '',
    ].join(CRLF),
    flags: ['\\Deleted', '\\Draft'],
    internal: '2024-03-01T10:00:00Z',
  },
  {
    // 4: no flags, no Date header
    text: ['From: dave@example.test', 'To: alice@example.test', 'Subject: lunch', '', 'short', ''].join(CRLF),
    flags: [],
    internal: '2024-03-10T10:00:00Z',
  },
];

before(async () => {
  t = await startTestServer();
  const acct = (await t.server.ctx.data.getAccount('alice@example.test'))!;
  for (const m of MESSAGES) {
    await t.server.ctx.ingest.ingestBuffer(Buffer.from(m.text), {
      deliveries: [{ accountId: acct.id, mailbox: 'INBOX', flags: m.flags }],
      queue: null,
      internalDate: Date.parse(m.internal),
    });
  }
});
after(() => t.stop());

async function open(mailbox = 'INBOX'): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  assert.equal((await c.login()).status, 'OK');
  const sel = await c.command(`SELECT ${mailbox}`);
  assert.equal(sel.status, 'OK', sel.text);
  return c;
}

/** The numbers of the `* SEARCH` response of an OK reply. */
function numbers(r: ImapReply): number[] {
  assert.equal(r.status, 'OK', `${r.status} ${r.text}`);
  const line = r.lines.find((l) => l.startsWith('* SEARCH'));
  assert.ok(line, `no * SEARCH in ${JSON.stringify(r.lines)}`);
  return line
    .slice('* SEARCH'.length)
    .replace(/\(MODSEQ \d+\)/, '')
    .trim()
    .split(' ')
    .filter(Boolean)
    .map(Number);
}

async function search(c: ImapTestClient, q: string): Promise<number[]> {
  return numbers(await c.command(`SEARCH ${q}`));
}

test('RECENT, NEW, OLD: the first session to select sees all as recent, a later one none', async () => {
  const a = await open();
  try {
    assert.deepEqual(await search(a, 'RECENT'), [1, 2, 3, 4]);
    assert.deepEqual(await search(a, 'NEW'), [2, 3, 4]);
    assert.deepEqual(await search(a, 'OLD'), []);
  } finally {
    a.close();
  }
  const b = await open();
  try {
    assert.deepEqual(await search(b, 'RECENT'), []);
    assert.deepEqual(await search(b, 'NEW'), []);
    assert.deepEqual(await search(b, 'OLD'), [1, 2, 3, 4]);
  } finally {
    b.close();
  }
});

test('flag keys, KEYWORD/UNKEYWORD (case-insensitive), ALL', async () => {
  const c = await open();
  try {
    const cases: Array<[string, number[]]> = [
      ['ALL', [1, 2, 3, 4]],
      ['ANSWERED', [1]],
      ['UNANSWERED', [2, 3, 4]],
      ['SEEN', [1]],
      ['UNSEEN', [2, 3, 4]],
      ['FLAGGED', [2]],
      ['UNFLAGGED', [1, 3, 4]],
      ['DELETED', [3]],
      ['UNDELETED', [1, 2, 4]],
      ['DRAFT', [3]],
      ['UNDRAFT', [1, 2, 4]],
      ['KEYWORD $Important', [2]],
      ['KEYWORD $important', [2]],
      ['UNKEYWORD $Important', [1, 3, 4]],
      ['KEYWORD nothing', []],
      ['seen', [1]],
    ];
    for (const [q, want] of cases) assert.deepEqual(await search(c, q), want, q);
  } finally {
    c.close();
  }
});

test('address and header keys: substring, case-insensitive, RFC 2047 decoded, UTF-8 with CHARSET', async () => {
  const c = await open();
  try {
    const cases: Array<[string, number[]]> = [
      ['FROM alice', [1]],
      ['FROM "ANDERS"', [1]],
      ['FROM example.test', [1, 2, 3, 4]],
      ['TO alice', [2, 3, 4]],
      ['TO bob@', [1]],
      ['CC carol', [1]],
      ['BCC dave', [2]],
      ['SUBJECT meeting', [1]],
      ['SUBJECT "invoice 4"', [3]],
      ['CHARSET UTF-8 SUBJECT "GRÜSSE"', []],
      ['CHARSET UTF-8 SUBJECT "grüße"', [2]],
      ['SUBJECT "from bob"', [2]],
      ['HEADER X-Priority 1', [3]],
      ['HEADER x-priority ""', [3]],
      ['HEADER X-Missing ""', []],
      ['HEADER Content-Type alternative', [2]],
      ['SUBJECT nothing-like-this', []],
    ];
    for (const [q, want] of cases) assert.deepEqual(await search(c, q), want, q);
    // A literal (LITERAL+) with UTF-8 bytes
    const word = Buffer.from('Grüße');
    c.write(Buffer.concat([Buffer.from(`L1 SEARCH CHARSET UTF-8 SUBJECT {${word.length}+}\r\n`), word, Buffer.from('\r\n')]));
    assert.deepEqual(numbers(await c.read('L1')), [2]);
  } finally {
    c.close();
  }
});

test('BODY and TEXT: decoded text parts (QP, base64, HTML), TEXT also searches the header', async () => {
  const c = await open();
  try {
    const cases: Array<[string, number[]]> = [
      ['BODY budget', [1]],
      ['BODY "BUDGET."', [1]],
      ['CHARSET UTF-8 BODY "café"', [2]],
      ['BODY "hello world"', [2]],
      ['BODY "payment due: 100"', [3]],
      ['BODY meeting', []],
      ['TEXT meeting', [1]],
      ['TEXT "x-priority: 1"', [3]],
      ['TEXT short', [4]],
      ['TEXT zzzzzz', []],
      ['BODY "Caf=C3=A9"', []],
    ];
    for (const [q, want] of cases) assert.deepEqual(await search(c, q), want, q);
  } finally {
    c.close();
  }
});

test('date keys: internal date (UTC day) and Date header (its own day), invalid dates are BAD', async () => {
  const c = await open();
  try {
    const cases: Array<[string, number[]]> = [
      ['BEFORE 1-Feb-2024', [1]],
      ['BEFORE 16-Feb-2024', [1]],
      ['ON 16-Feb-2024', [2]],
      ['ON "16-feb-2024"', [2]],
      ['SINCE 1-Mar-2024', [3, 4]],
      ['SINCE 11-Mar-2024', []],
      ['SENTON 15-Feb-2024', [2]],
      ['SENTON 16-Feb-2024', []],
      ['SENTBEFORE 1-Feb-2024', [1]],
      ['SENTSINCE 1-Mar-2024', [3]],
      ['SENTSINCE 1-Jan-2000', [1, 2, 3]],
      ['NOT SENTSINCE 1-Jan-2000', [4]],
      ['SINCE 1-Jan-2024 BEFORE 2-Mar-2024', [1, 2, 3]],
    ];
    for (const [q, want] of cases) assert.deepEqual(await search(c, q), want, q);
    for (const q of ['BEFORE 2024-01-01', 'ON 31-Feb-2024', 'SINCE 1-Foo-2024', 'SENTON']) {
      assert.equal((await c.command(`SEARCH ${q}`)).status, 'BAD', q);
    }
  } finally {
    c.close();
  }
  assert.equal(parseSearchDate('1-Jan-1970'), 0);
  assert.equal(sentDay('Thu, 15 Feb 2024 23:30:00 -0800'), parseSearchDate('15-Feb-2024'));
  assert.equal(sentDay('15 Feb 24 23:30 GMT'), parseSearchDate('15-Feb-2024'));
});

test('sizes, OLDER/YOUNGER, MODSEQ', async () => {
  const c = await open();
  try {
    assert.deepEqual(await search(c, 'LARGER 4000'), [3]);
    assert.deepEqual(await search(c, 'SMALLER 4000'), [1, 2, 4]);
    const size4 = Buffer.byteLength(MESSAGES[3]!.text);
    assert.deepEqual(await search(c, `SMALLER ${size4}`), []);
    assert.deepEqual(await search(c, `LARGER ${size4 - 1} SMALLER ${size4 + 1}`), [4]);
    assert.equal((await c.command('SEARCH LARGER abc')).status, 'BAD');
    assert.deepEqual(await search(c, 'OLDER 60'), [1, 2, 3, 4]);
    assert.deepEqual(await search(c, 'YOUNGER 60'), []);
    const r = await c.command('SEARCH MODSEQ 1');
    assert.match(r.lines.find((l) => l.startsWith('* SEARCH'))!, /^\* SEARCH 1 2 3 4 \(MODSEQ \d+\)$/);
  } finally {
    c.close();
  }
});

test('sequence sets and UID sets, * and reversed ranges; UID SEARCH answers UIDs', async () => {
  const c = await open();
  try {
    const cases: Array<[string, number[]]> = [
      ['2:3', [2, 3]],
      ['3:2', [2, 3]],
      ['*', [4]],
      ['2,4', [2, 4]],
      ['3:*', [3, 4]],
      ['1:100', [1, 2, 3, 4]],
      ['50', []],
      ['UID 3:*', [3, 4]],
      ['UID 10:*', [4]],
      ['UID 2', [2]],
      ['UID 1,3', [1, 3]],
      ['NOT UID 1:2', [3, 4]],
      ['1:3 UNSEEN', [2, 3]],
    ];
    for (const [q, want] of cases) assert.deepEqual(await search(c, q), want, q);
    assert.deepEqual(numbers(await c.command('UID SEARCH 1:2')), [1, 2]);
    assert.deepEqual(numbers(await c.command('UID SEARCH UID 2:3')), [2, 3]);
    assert.deepEqual(numbers(await c.command('UID SEARCH FLAGGED')), [2]);
    for (const q of ['0', '1:0', 'UID', 'UID abc', '1::2']) assert.equal((await c.command(`SEARCH ${q}`)).status, 'BAD', q);
  } finally {
    c.close();
  }
});

test('NOT, OR and parenthesised lists, nested', async () => {
  const c = await open();
  try {
    const cases: Array<[string, number[]]> = [
      ['OR SEEN FLAGGED', [1, 2]],
      ['NOT OR SEEN FLAGGED', [3, 4]],
      ['NOT NOT SEEN', [1]],
      ['OR OR SEEN DRAFT FLAGGED', [1, 2, 3]],
      ['OR (FROM bob SUBJECT lunch) DELETED', [3]],
      ['(OR FROM carol FROM dave) NOT DELETED', [4]],
      ['OR (SEEN ANSWERED) (FLAGGED KEYWORD $Important)', [1, 2]],
      ['NOT (UNSEEN UNFLAGGED)', [1, 2]],
      ['((((SEEN))))', [1]],
      ['OR NOT SEEN NOT DRAFT', [1, 2, 3, 4]],
      ['CHARSET UTF-8 OR BODY budget OR BODY "café" SUBJECT lunch', [1, 2, 4]],
    ];
    for (const [q, want] of cases) assert.deepEqual(await search(c, q), want, q);
    for (const q of ['', 'OR SEEN', 'NOT', 'FOO', '()', 'SEEN)', 'BODY']) assert.equal((await c.command(`SEARCH ${q}`.trim())).status, 'BAD', q);
  } finally {
    c.close();
  }
});

test('CHARSET: UTF-8 and US-ASCII accepted, others NO [BADCHARSET (UTF-8 US-ASCII)]', async () => {
  const c = await open();
  try {
    assert.deepEqual(await search(c, 'CHARSET UTF-8 SEEN'), [1]);
    assert.deepEqual(await search(c, 'CHARSET us-ascii SEEN'), [1]);
    assert.deepEqual(await search(c, 'CHARSET "US-ASCII" SUBJECT lunch'), [4]);
    const r = await c.command('SEARCH CHARSET ISO-8859-1 TEXT x');
    assert.equal(r.status, 'NO');
    assert.match(r.text, /^\[BADCHARSET \(UTF-8 US-ASCII\)\]/);
    assert.equal((await c.command('SEARCH CHARSET')).status, 'BAD');
  } finally {
    c.close();
  }
});

test('ESEARCH (RFC 4731): RETURN MIN MAX ALL COUNT, UID, empty results, RETURN () is ALL', async () => {
  const c = await open();
  try {
    let tag = c.nextTag();
    c.write(`${tag} SEARCH RETURN (MIN MAX COUNT) UNSEEN\r\n`);
    let r = await c.read(tag);
    assert.equal(r.status, 'OK');
    assert.deepEqual(r.lines, [`* ESEARCH (TAG "${tag}") MIN 2 MAX 4 COUNT 3`]);

    tag = c.nextTag();
    c.write(`${tag} UID SEARCH RETURN (ALL) ALL\r\n`);
    r = await c.read(tag);
    assert.deepEqual(r.lines, [`* ESEARCH (TAG "${tag}") UID ALL 1:4`]);

    tag = c.nextTag();
    c.write(`${tag} SEARCH RETURN () OR SEEN DELETED\r\n`);
    r = await c.read(tag);
    assert.deepEqual(r.lines, [`* ESEARCH (TAG "${tag}") ALL 1,3`]);

    tag = c.nextTag();
    c.write(`${tag} SEARCH RETURN (MIN MAX ALL COUNT) KEYWORD nope\r\n`);
    r = await c.read(tag);
    assert.deepEqual(r.lines, [`* ESEARCH (TAG "${tag}") COUNT 0`]);

    tag = c.nextTag();
    c.write(`${tag} SEARCH RETURN (ALL) KEYWORD nope\r\n`);
    r = await c.read(tag);
    assert.deepEqual(r.lines, [`* ESEARCH (TAG "${tag}")`]);

    tag = c.nextTag();
    c.write(`${tag} UID SEARCH RETURN (COUNT) CHARSET UTF-8 FROM bob\r\n`);
    r = await c.read(tag);
    assert.deepEqual(r.lines, [`* ESEARCH (TAG "${tag}") UID COUNT 1`]);

    assert.equal((await c.command('SEARCH RETURN (FOO) ALL')).status, 'BAD');
    assert.equal((await c.command('SEARCH RETURN ALL')).status, 'BAD');
  } finally {
    c.close();
  }
});

test('IMAP4rev2 enabled: SEARCH answers ESEARCH (RFC 9051 §6.4.4)', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    await c.login();
    assert.equal((await c.command('ENABLE IMAP4rev2')).status, 'OK');
    assert.equal((await c.command('SELECT INBOX')).status, 'OK');
    let tag = c.nextTag();
    c.write(`${tag} SEARCH UNSEEN\r\n`);
    let r = await c.read(tag);
    assert.equal(r.status, 'OK');
    assert.deepEqual(r.lines, [`* ESEARCH (TAG "${tag}") ALL 2:4`]);
    tag = c.nextTag();
    c.write(`${tag} UID SEARCH SEEN\r\n`);
    r = await c.read(tag);
    assert.deepEqual(r.lines, [`* ESEARCH (TAG "${tag}") UID ALL 1`]);
  } finally {
    c.close();
  }
});

test('SEARCHRES (RFC 5182): SAVE keeps the result for $, alone sends no ESEARCH, MIN/MAX save only those, failure empties it', async () => {
  const c = await open();
  try {
    let r = await c.command('SEARCH RETURN (SAVE) FLAGGED');
    assert.equal(r.status, 'OK');
    assert.deepEqual(r.lines, []);
    assert.deepEqual(await search(c, '$'), [2]);
    assert.deepEqual(await search(c, 'OR $ SEEN'), [1, 2]);
    assert.deepEqual(await search(c, 'UID $'), [2]);
    assert.deepEqual(numbers(await c.command('UID SEARCH $')), [2]);

    const tag = c.nextTag();
    c.write(`${tag} SEARCH RETURN (SAVE MIN MAX) UNSEEN\r\n`);
    r = await c.read(tag);
    assert.deepEqual(r.lines, [`* ESEARCH (TAG "${tag}") MIN 2 MAX 4`]);
    assert.deepEqual(await search(c, '$'), [2, 4]);

    r = await c.command('SEARCH RETURN (SAVE ALL) UNSEEN');
    assert.deepEqual(await search(c, '$'), [2, 3, 4]);
    // Use $ inside the search that saves (RFC 5182 §2.2)
    await c.command('SEARCH RETURN (SAVE) $ NOT DELETED');
    assert.deepEqual(await search(c, '$'), [2, 4]);

    r = await c.command('SEARCH RETURN (SAVE) CHARSET KOI8-R TEXT x');
    assert.equal(r.status, 'NO');
    assert.deepEqual(await search(c, '$'), []);

    // A new SELECT starts with no saved result.
    await c.command('SEARCH RETURN (SAVE) ALL');
    assert.deepEqual(await search(c, '$'), [1, 2, 3, 4]);
    await c.command('SELECT INBOX');
    assert.deepEqual(await search(c, '$'), []);
  } finally {
    c.close();
  }
});

test('SEARCH needs a selected mailbox', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    await c.login();
    assert.equal((await c.command('SEARCH ALL')).status, 'BAD');
    assert.equal((await c.command('UID SEARCH ALL')).status, 'BAD');
  } finally {
    c.close();
  }
});
