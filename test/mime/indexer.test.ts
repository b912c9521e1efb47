import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { MimeIndexer, indexBuffer, type IndexerOptions } from '../../src/mime/indexer.ts';
import type { MessageIndex, MimePart } from '../../src/mime/types.ts';

/** Joins lines with CRLF (every line terminated). */
const crlf = (...lines: string[]) => Buffer.from(lines.map((l) => l + '\r\n').join(''), 'utf8');

function find(root: MimePart, path: string, depth = 0): MimePart {
  const stack = [root];
  const hits: MimePart[] = [];
  while (stack.length) {
    const p = stack.pop()!;
    if (p.path === path) hits.push(p);
    stack.push(...p.children);
  }
  assert.ok(hits.length > depth, `no part ${path}`);
  // Parts sharing a path (message/rfc822 and its embedded root): outermost first.
  hits.sort((a, b) => a.headerStart - b.headerStart || b.bodyEnd - b.headerStart - (a.bodyEnd - a.headerStart));
  return hits[depth]!;
}

const header = (buf: Buffer, p: MimePart) => buf.subarray(p.headerStart, p.bodyStart).toString('utf8');
const body = (buf: Buffer, p: MimePart) => buf.subarray(p.bodyStart, p.bodyEnd).toString('utf8');

/** Structural invariants every index must satisfy, whatever the input. */
function checkInvariants(ix: MessageIndex, size: number): void {
  assert.equal(ix.size, size);
  const walk = (p: MimePart, lo: number, hi: number) => {
    assert.ok(lo <= p.headerStart && p.headerStart <= p.bodyStart && p.bodyStart <= p.bodyEnd && p.bodyEnd <= hi, `offsets of ${p.path}: ${p.headerStart} ${p.bodyStart} ${p.bodyEnd} not in ${lo}..${hi}`);
    assert.equal(p.size, p.bodyEnd - p.bodyStart);
    assert.ok(p.lines >= 0, `lines of ${p.path}`);
    let prev = p.bodyStart;
    for (const c of p.children) {
      walk(c, prev, p.bodyEnd);
      prev = c.bodyEnd;
    }
  };
  walk(ix.root, 0, size);
  assert.equal(ix.root.headerStart, 0);
}

async function indexChunked(buf: Buffer, nextSize: () => number, opts?: IndexerOptions): Promise<MessageIndex> {
  const ix = new MimeIndexer(opts);
  for (let i = 0; i < buf.length; ) {
    const n = Math.max(1, nextSize());
    if (!ix.write(buf.subarray(i, i + n))) await once(ix, 'drain');
    i += n;
  }
  ix.end();
  return ix.result();
}

const simple = crlf(
  'Received: from a by b; Tue, 1 Jul 2003 10:52:37 +0200',
  'Received: from c by d; Tue, 1 Jul 2003 10:52:30 +0200',
  'From: Alice Example <alice@example.com>',
  'To: bob@example.org, "Doe, John" <john@example.net>',
  'Subject: Hello',
  '  there',
  'Date: Tue, 1 Jul 2003 10:52:37 +0200 (CEST)',
  'Message-ID: <1@example.com>',
  '',
  'Hello',
  'World',
);

test('simple text message', async () => {
  const ix = await indexBuffer(simple);
  checkInvariants(ix, simple.length);
  const r = ix.root;
  assert.equal(r.path, '');
  assert.equal(`${r.type}/${r.subtype}`, 'text/plain');
  assert.deepEqual(r.params, { charset: 'us-ascii' });
  assert.equal(r.encoding, '7BIT');
  assert.equal(body(simple, r), 'Hello\r\nWorld\r\n');
  assert.ok(header(simple, r).startsWith('Received:') && header(simple, r).endsWith('<1@example.com>\r\n\r\n'), header(simple, r));
  assert.equal(r.lines, 2);
  assert.equal(r.size, 14);
  assert.equal(ix.subject, 'Hello  there'); // RFC 5322 §2.2.3: unfolding removes only the CRLF
  assert.equal(ix.from, 'Alice Example <alice@example.com>');
  assert.equal(ix.date, Date.UTC(2003, 6, 1, 8, 52, 37));
  assert.equal(ix.messageId, '<1@example.com>');
  assert.equal(ix.receivedCount, 2);
  assert.equal(ix.truncated, false);
  const e = ix.envelope;
  assert.equal(e.date, 'Tue, 1 Jul 2003 10:52:37 +0200 (CEST)');
  assert.equal(e.subject, 'Hello  there');
  assert.deepEqual(e.from, [{ name: 'Alice Example', adl: null, mailbox: 'alice', host: 'example.com' }]);
  assert.deepEqual(e.sender, e.from);
  assert.deepEqual(e.replyTo, e.from);
  assert.deepEqual(e.to, [
    { name: null, adl: null, mailbox: 'bob', host: 'example.org' },
    { name: 'Doe, John', adl: null, mailbox: 'john', host: 'example.net' },
  ]);
  assert.equal(e.cc, null);
  assert.equal(e.bcc, null);
  assert.equal(e.inReplyTo, null);
  assert.match(ix.searchText, /Hello {2}there/);
  assert.match(ix.searchText, /Hello\r?\nWorld/);
  assert.match(ix.searchText, /Alice Example/);
});

const alternative = crlf(
  'From: a@example.com',
  'Subject: alt',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="outer"',
  '',
  'This is the preamble.',
  '--outer',
  'Content-Type: multipart/alternative; boundary=inner',
  '',
  '--inner',
  'Content-Type: text/plain; charset=utf-8',
  'Content-Transfer-Encoding: quoted-printable',
  '',
  'Gr=C3=BC=C3=9Fe, plain',
  'second line',
  '',
  '--inner',
  'Content-Type: text/html; charset=windows-1252',
  'Content-Transfer-Encoding: base64',
  '',
  Buffer.from('<p>Caf\xe9 <b>html</b>&amp;more</p><script>nope()</script>', 'latin1').toString('base64'),
  '--inner--',
  'inner epilogue',
  '--outer',
  'Content-Type: application/pdf; name="doc.pdf"',
  'Content-Disposition: attachment; filename="doc.pdf"',
  'Content-Transfer-Encoding: base64',
  'Content-ID: <pdf@x>',
  'Content-Description: A document',
  'Content-Language: en, de',
  '',
  'JVBERi0xLjQK',
  'JVBERi0xLjQK',
  '--outer--',
  'epilogue',
);

test('multipart/alternative with attachment: structure, offsets, lines, search text', async () => {
  const buf = alternative;
  const ix = await indexBuffer(buf);
  checkInvariants(ix, buf.length);
  const r = ix.root;
  assert.equal(`${r.type}/${r.subtype}`, 'multipart/mixed');
  assert.equal(r.params.boundary, 'outer');
  assert.deepEqual(r.children.map((c) => c.path), ['1', '2']);
  assert.equal(body(buf, r), buf.toString('utf8').split('\r\n\r\n').slice(1).join('\r\n\r\n'));

  const alt = find(r, '1');
  assert.equal(`${alt.type}/${alt.subtype}`, 'multipart/alternative');
  assert.deepEqual(alt.children.map((c) => c.path), ['1.1', '1.2']);
  assert.equal(header(buf, alt), 'Content-Type: multipart/alternative; boundary=inner\r\n\r\n');
  assert.ok(body(buf, alt).startsWith('--inner\r\n') && body(buf, alt).endsWith('--inner--\r\ninner epilogue'), body(buf, alt));

  const plain = find(r, '1.1');
  assert.equal(header(buf, plain), 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n');
  // RFC 2046 §5.1.1: the CRLF before "--inner" belongs to the delimiter; the blank line stays.
  assert.equal(body(buf, plain), 'Gr=C3=BC=C3=9Fe, plain\r\nsecond line\r\n');
  assert.equal(plain.lines, 2);
  assert.equal(plain.encoding, 'QUOTED-PRINTABLE');

  const html = find(r, '1.2');
  assert.equal(html.params.charset, 'windows-1252');
  assert.equal(html.lines, 1);
  assert.ok(!body(buf, html).endsWith('\r\n'), body(buf, html));

  const pdf = find(r, '2');
  assert.equal(`${pdf.type}/${pdf.subtype}`, 'application/pdf');
  assert.equal(body(buf, pdf), 'JVBERi0xLjQK\r\nJVBERi0xLjQK');
  assert.equal(pdf.lines, 2);
  assert.deepEqual(pdf.disposition, { type: 'attachment', params: { filename: 'doc.pdf' } });
  assert.deepEqual(pdf.params, { name: 'doc.pdf' });
  assert.equal(pdf.id, '<pdf@x>');
  assert.equal(pdf.description, 'A document');
  assert.deepEqual(pdf.language, ['en', 'de']);
  assert.equal(pdf.encoding, 'BASE64');

  assert.match(ix.searchText, /Grüße, plain/);
  assert.match(ix.searchText, /Café html &more/); // windows-1252 via iconv-lite, tags stripped
  assert.doesNotMatch(ix.searchText, /nope|<p>|JVBER/);
});

const embedded = crlf(
  'From: outer@example.com',
  'Subject: fwd',
  'Content-Type: multipart/mixed; boundary=b1',
  '',
  '--b1',
  '',
  'implicit text/plain part',
  '--b1',
  'Content-Type: message/rfc822',
  '',
  'From: "Inner Sender" <inner@example.com>',
  'Reply-To: list@example.com',
  'Subject: inner subject',
  'Message-ID: <inner@x>',
  'Content-Type: multipart/alternative; boundary="b2"',
  '',
  '--b2',
  'Content-Type: text/plain',
  '',
  'inner plain body',
  '--b2',
  'Content-Type: message/rfc822',
  '',
  'Subject: innermost',
  '',
  'innermost body',
  '--b2--',
  '--b1',
  'Content-Type: message/rfc822',
  '',
  'Subject: single',
  '',
  'single part body',
  '',
  '--b1--',
);

test('nested message/rfc822 containing multipart: IMAP numbering and envelopes', async () => {
  const buf = embedded;
  const ix = await indexBuffer(buf);
  checkInvariants(ix, buf.length);
  const r = ix.root;
  assert.deepEqual(r.children.map((c) => c.path), ['1', '2', '3']);
  const p1 = find(r, '1');
  assert.equal(header(buf, p1), '\r\n');
  assert.equal(body(buf, p1), 'implicit text/plain part');
  assert.deepEqual([p1.type, p1.subtype, p1.params], ['text', 'plain', { charset: 'us-ascii' }]);

  const m2 = r.children[1]!;
  assert.equal(m2.path, '2');
  assert.equal(`${m2.type}/${m2.subtype}`, 'message/rfc822');
  assert.equal(header(buf, m2), 'Content-Type: message/rfc822\r\n\r\n');
  assert.ok(body(buf, m2).startsWith('From: "Inner Sender"') && body(buf, m2).endsWith('--b2--'), body(buf, m2));
  assert.equal(m2.lines, 17);
  assert.equal(m2.children.length, 1);
  const inner = m2.children[0]!;
  // The embedded root has no number of its own: it is addressed as 2 (2.HEADER / 2.TEXT).
  assert.equal(inner.path, '2');
  assert.equal(inner.headerStart, m2.bodyStart);
  assert.equal(inner.bodyEnd, m2.bodyEnd);
  assert.ok(header(buf, inner).startsWith('From: "Inner Sender"') && header(buf, inner).endsWith('boundary="b2"\r\n\r\n'), header(buf, inner));
  assert.equal(`${inner.type}/${inner.subtype}`, 'multipart/alternative');
  assert.deepEqual(inner.children.map((c) => c.path), ['2.1', '2.2']);
  assert.equal(body(buf, inner.children[0]!), 'inner plain body');
  const m22 = inner.children[1]!;
  assert.equal(`${m22.type}/${m22.subtype}`, 'message/rfc822');
  assert.equal(m22.children[0]!.path, '2.2');
  assert.equal(body(buf, m22.children[0]!), 'innermost body');
  assert.equal(m22.envelope?.subject, 'innermost');

  const env = m2.envelope!;
  assert.equal(env.subject, 'inner subject');
  assert.equal(env.messageId, '<inner@x>');
  assert.deepEqual(env.from, [{ name: 'Inner Sender', adl: null, mailbox: 'inner', host: 'example.com' }]);
  assert.deepEqual(env.sender, env.from);
  assert.deepEqual(env.replyTo, [{ name: null, adl: null, mailbox: 'list', host: 'example.com' }]);

  // Non-multipart embedded message: its root is path 3; IMAP 3.1 is that root's body.
  const m3 = find(r, '3');
  const single = m3.children[0]!;
  assert.equal(single.path, '3');
  assert.equal(body(buf, single), 'single part body\r\n');
  assert.equal(single.lines, 1);
  assert.equal(m3.lines, 3);

  assert.equal(ix.subject, 'fwd');
  assert.match(ix.searchText, /inner subject/);
  assert.match(ix.searchText, /innermost body/);
});

test('top-level message/rfc822 root: embedded root is section 1', async () => {
  const buf = crlf('Content-Type: message/rfc822', '', 'Subject: x', 'Content-Type: multipart/mixed; boundary=z', '', '--z', '', 'a', '--z', '', 'b', '--z--');
  const ix = await indexBuffer(buf);
  checkInvariants(ix, buf.length);
  const inner = ix.root.children[0]!;
  assert.equal(inner.path, '1');
  assert.deepEqual(inner.children.map((c) => [c.path, body(buf, c)]), [['1.1', 'a'], ['1.2', 'b']]);
});

test('encoded words: decoded subject/from, raw envelope', async () => {
  const buf = crlf(
    'From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>',
    'Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= =?UTF-8?B?8J+YgA==?=',
    'To: =?utf-8?B?w4RsZnJlZA==?= <a@b.c>',
    '',
    'x',
  );
  const ix = await indexBuffer(buf);
  assert.equal(ix.subject, 'Grüße😀');
  assert.equal(ix.from, 'Jörg Müller <joerg@example.de>');
  assert.equal(ix.envelope.subject, '=?ISO-8859-1?Q?Gr=FC=DFe?= =?UTF-8?B?8J+YgA==?=');
  assert.equal(ix.envelope.from![0]!.name, '=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=');
  assert.match(ix.searchText, /Grüße😀/);
  assert.match(ix.searchText, /Älfred/);
});

test('RFC 2231 parameters are decoded', async () => {
  const buf = crlf(
    'Content-Type: multipart/mixed; boundary=q',
    '',
    '--q',
    "Content-Type: application/octet-stream; name*=utf-8''%E2%82%AC%20rates.txt",
    'Content-Disposition: attachment;',
    " filename*0*=utf-8''%C3%A4b;",
    ' filename*1=c.txt',
    '',
    'data',
    '--q--',
  );
  const ix = await indexBuffer(buf);
  const p = find(ix.root, '1');
  assert.equal(p.params.name, '€ rates.txt');
  assert.deepEqual(p.disposition, { type: 'attachment', params: { filename: 'äbc.txt' } });
});

test('group addresses and odd addresses in the envelope', async () => {
  const buf = crlf('From: foo', 'To: Team: a@b.example, "C" <c@d.example>;, solo@x.example', 'Cc: undisclosed-recipients:;', '', '');
  const ix = await indexBuffer(buf);
  const nil = { name: null, adl: null, mailbox: null, host: null };
  assert.deepEqual(ix.envelope.to, [
    { name: null, adl: null, mailbox: 'Team', host: null },
    { name: null, adl: null, mailbox: 'a', host: 'b.example' },
    { name: 'C', adl: null, mailbox: 'c', host: 'd.example' },
    nil,
    { name: null, adl: null, mailbox: 'solo', host: 'x.example' },
  ]);
  assert.deepEqual(ix.envelope.cc, [{ name: null, adl: null, mailbox: 'undisclosed-recipients', host: null }, nil]);
  // No domain: host "" (a NIL host would read as a group start).
  assert.deepEqual(ix.envelope.from, [{ name: null, adl: null, mailbox: 'foo', host: '' }]);
});

test('missing headers give nulls', async () => {
  const buf = crlf('X-Whatever: 1', '', 'body');
  const ix = await indexBuffer(buf);
  assert.deepEqual(ix.envelope, { date: null, subject: null, from: null, sender: null, replyTo: null, to: null, cc: null, bcc: null, inReplyTo: null, messageId: null });
  assert.equal(ix.subject, '');
  assert.equal(ix.from, '');
  assert.equal(ix.date, null);
  assert.equal(ix.messageId, null);
  assert.equal(ix.receivedCount, 0);
  const bad = await indexBuffer(crlf('Date: not a date', 'Subject:', '', ''));
  assert.equal(bad.date, null);
  assert.equal(bad.envelope.subject, '');
});

test('multipart/digest parts default to message/rfc822', async () => {
  const buf = crlf('Content-Type: multipart/digest; boundary=d', '', '--d', '', 'Subject: one', '', 'body one', '--d--');
  const ix = await indexBuffer(buf);
  const d1 = find(ix.root, '1');
  assert.equal(`${d1.type}/${d1.subtype}`, 'message/rfc822');
  assert.equal(d1.envelope?.subject, 'one');
  assert.equal(body(buf, d1.children[0]!), 'body one');
});

const malformed: Record<string, Buffer> = {
  empty: Buffer.alloc(0),
  headerOnly: Buffer.from('Subject: only a header\r\nFrom: a@b\r\n'),
  headerOnlyNoEol: Buffer.from('Subject: only a header'),
  noSeparatorBody: Buffer.from('This is not a header\r\nnor this\r\n'),
  bareLf: Buffer.from('Subject: lf\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nline1\nline2\n--x--\n'),
  binary: Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919 + 13) % 256)),
  missingClose: crlf('Content-Type: multipart/mixed; boundary=m', '', '--m', '', 'one', '--m', '', 'two'),
  boundaryNeverSeen: crlf('Content-Type: multipart/mixed; boundary=m', '', 'just text', 'more'),
  noBoundaryParam: crlf('Content-Type: multipart/mixed', '', '--m', '', 'x'),
  partHeaderWithoutBlank: crlf('Content-Type: multipart/mixed; boundary=m', '', '--m', 'Content-Type: text/plain', '--m', '', 'second', '--m--'),
  emptyParts: crlf('Content-Type: multipart/mixed; boundary=m', '', '--m', '--m', '', '--m--'),
  junkAfterBoundary: crlf('Content-Type: multipart/mixed; boundary=m', '', '--m', '', 'a', '--mjunk', '--m  ', '', 'b', '--m--  '),
  encodedRfc822: crlf('Content-Type: message/rfc822', 'Content-Transfer-Encoding: base64', '', 'U3ViamVjdDogeA0KDQp4'),
  badContentType: crlf('Content-Type: garbage', 'Content-Transfer-Encoding:', '', 'x'),
  unterminatedDelimiter: Buffer.from('Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\r\nx\r\n--m'),
};

test('malformed input never throws and gives a sensible index', async () => {
  for (const [name, buf] of Object.entries(malformed)) {
    const ix = await indexBuffer(buf);
    try {
      checkInvariants(ix, buf.length);
    } catch (err) {
      assert.fail(`${name}: ${(err as Error).message}`);
    }
  }
  const m = malformed;
  let ix = await indexBuffer(m.empty!);
  assert.deepEqual([ix.root.bodyStart, ix.root.bodyEnd, ix.root.lines, ix.subject], [0, 0, 0, '']);
  ix = await indexBuffer(m.headerOnly!);
  assert.equal(ix.subject, 'only a header');
  assert.equal(ix.root.bodyStart, m.headerOnly!.length);
  ix = await indexBuffer(m.headerOnlyNoEol!);
  assert.equal(ix.subject, 'only a header');
  ix = await indexBuffer(m.bareLf!);
  assert.equal(ix.subject, 'lf');
  assert.equal(body(m.bareLf!, find(ix.root, '1')), 'line1\nline2');
  assert.equal(find(ix.root, '1').lines, 2);
  ix = await indexBuffer(m.missingClose!);
  assert.deepEqual(ix.root.children.map((c) => body(m.missingClose!, c)), ['one', 'two\r\n']);
  ix = await indexBuffer(m.boundaryNeverSeen!);
  assert.equal(ix.root.children.length, 0);
  ix = await indexBuffer(m.noBoundaryParam!);
  assert.equal(ix.root.children.length, 0);
  ix = await indexBuffer(m.partHeaderWithoutBlank!);
  assert.equal(ix.root.children.length, 2);
  assert.equal(ix.root.children[0]!.size, 0);
  assert.equal(body(m.partHeaderWithoutBlank!, ix.root.children[1]!), 'second');
  ix = await indexBuffer(m.emptyParts!);
  assert.deepEqual(ix.root.children.map((c) => c.size), [0, 0]);
  ix = await indexBuffer(m.junkAfterBoundary!);
  assert.deepEqual(ix.root.children.map((c) => body(m.junkAfterBoundary!, c)), ['a\r\n--mjunk', 'b']);
  ix = await indexBuffer(m.encodedRfc822!);
  assert.equal(ix.root.children.length, 0); // RFC 2046 §5.2.1: encoded message/rfc822 is opaque
  ix = await indexBuffer(m.badContentType!);
  assert.deepEqual([ix.root.type, ix.root.subtype, ix.root.params, ix.root.encoding], ['text', 'plain', { charset: 'us-ascii' }, '7BIT']);
  ix = await indexBuffer(m.unterminatedDelimiter!);
  assert.equal(ix.root.children.length, 1);
});

test('chunk boundaries anywhere give identical results', async () => {
  let seed = 42;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  const fixtures = [simple, alternative, embedded, ...Object.values(malformed)];
  for (const buf of fixtures) {
    const whole = await indexBuffer(buf);
    assert.deepEqual(await indexChunked(buf, () => 1), whole);
    for (let i = 0; i < 5; i++) assert.deepEqual(await indexChunked(buf, () => 1 + (rand() % 97)), whole);
  }
});

test('limits: maxParts and maxDepth stop splitting and set truncated', async () => {
  const parts = crlf('Content-Type: multipart/mixed; boundary=p', '', ...Array.from({ length: 10 }, (_, i) => ['--p', '', `part ${i}`]).flat(), '--p--');
  let ix = await indexBuffer(parts, { maxParts: 4 });
  checkInvariants(ix, parts.length);
  assert.equal(ix.truncated, true);
  assert.equal(ix.root.children.length, 3);
  assert.equal(body(parts, ix.root.children[2]!), 'part 2');
  assert.equal((await indexBuffer(parts)).truncated, false);

  // 30 nested multiparts.
  const open: string[] = [];
  const close: string[] = [];
  for (let i = 0; i < 30; i++) {
    open.push(`Content-Type: multipart/mixed; boundary=n${i}`, '', `--n${i}`);
    close.unshift(`--n${i}--`);
  }
  const deep = crlf(...open, '', 'leaf', ...close);
  ix = await indexBuffer(deep, { maxDepth: 5 });
  checkInvariants(ix, deep.length);
  assert.equal(ix.truncated, true);
  let p = ix.root;
  let depth = 0;
  while (p.children.length) {
    p = p.children[0]!;
    depth++;
  }
  assert.equal(depth, 5);
  assert.equal(p.path, '1.1.1.1.1');
  ix = await indexBuffer(deep);
  assert.equal(ix.truncated, false);
  assert.equal(find(ix.root, Array(30).fill('1').join('.')).lines, 1);
});

test('search text is capped', async () => {
  const buf = crlf('Subject: s', '', 'word '.repeat(10_000));
  const ix = await indexBuffer(buf, { maxSearchText: 1000 });
  assert.equal(ix.searchText.length, 1000);
});

test('a ~62 MiB attachment is indexed with bounded memory', async () => {
  const head = crlf('From: big@example.com', 'Subject: big', 'Content-Type: multipart/mixed; boundary=BIG', '', '--BIG', 'Content-Type: text/plain', '', 'see attachment', '--BIG', 'Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64', '');
  const tail = crlf('', '--BIG--');
  const line = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n'; // 78 bytes
  const block = Buffer.from(line.repeat(840)); // ~64 KiB
  // Large enough that streaming (a few MiB of allocation churn, whatever the size) and
  // buffering (at least the attachment's size) cannot be confused under CI load.
  const blocks = 1000; // ~62.5 MiB
  const rss0 = process.memoryUsage().rss;
  const ix = new MimeIndexer();
  ix.write(head);
  for (let i = 0; i < blocks; i++) if (!ix.write(block)) await once(ix, 'drain');
  ix.write(tail);
  ix.end();
  const res = await ix.result();
  const growth = process.memoryUsage().rss - rss0;
  const attSize = block.length * blocks;
  assert.ok(attSize > 60 * 1024 * 1024, `attachment is ${attSize} bytes`);
  assert.equal(res.size, head.length + attSize + tail.length);
  const att = find(res.root, '2');
  assert.equal(att.bodyStart, head.length);
  assert.equal(att.size, attSize); // the CRLF of tail's first (empty) line precedes the delimiter
  assert.equal(att.lines, 840 * blocks);
  // Buffering the attachment would grow RSS by at least its size; streaming stays far below.
  console.log(`rss growth ${(growth / 1048576).toFixed(1)} MiB for ${(attSize / 1048576).toFixed(1)} MiB`);
  assert.ok(growth < attSize / 2, `rss grew by ${(growth / 1048576).toFixed(1)} MiB`);
});
