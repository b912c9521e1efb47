import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyPartial,
  binarySize,
  decodeQuotedPrintable,
  fetchBinary,
  fetchSection,
  findPart,
  formatSection,
  parsePartial,
  parseSection,
  SectionSyntaxError,
} from '../../src/imap/sections.ts';
import type { MessageIndex } from '../../src/mime/types.ts';
import { indexMessage, loadMessage } from './corpus.ts';

interface Loaded {
  msg: Buffer;
  ix: MessageIndex;
  get(section: string, partial?: string): Promise<string>;
}

async function load(name: string): Promise<Loaded> {
  const msg = loadMessage(name);
  const ix = await indexMessage(msg);
  const read = (s: number, e: number) => msg.subarray(s, e);
  return {
    msg,
    ix,
    get: async (section, partial) => (await fetchSection(ix, section, read, partial ? parsePartial(partial) : null)).toString('latin1'),
  };
}

// ---- parsing ----

test('parseSection: the section-spec grammar', () => {
  assert.deepEqual(parseSection(''), { part: [], text: null, fields: [] });
  assert.deepEqual(parseSection('1.2'), { part: [1, 2], text: null, fields: [] });
  assert.deepEqual(parseSection('header'), { part: [], text: 'HEADER', fields: [] });
  assert.deepEqual(parseSection('TEXT'), { part: [], text: 'TEXT', fields: [] });
  assert.deepEqual(parseSection('1.MIME'), { part: [1], text: 'MIME', fields: [] });
  assert.deepEqual(parseSection('1.2.HEADER'), { part: [1, 2], text: 'HEADER', fields: [] });
  assert.deepEqual(parseSection('HEADER.FIELDS (From To)'), { part: [], text: 'HEADER.FIELDS', fields: ['From', 'To'] });
  assert.deepEqual(parseSection('2.header.fields.not ("Received" X-Spam)'), { part: [2], text: 'HEADER.FIELDS.NOT', fields: ['Received', 'X-Spam'] });
  for (const bad of ['MIME', '0', '1.0', '1.', '.1', '1..2', 'HEADER.FIELDS', 'HEADER.FIELDS ()', 'HEADER.FIELDS (a b', 'HEADER.FIELDS (a  b)', 'BODY', '1.TEXT.MIME', 'HEADER.FIELDS (a:b)']) {
    assert.throws(() => parseSection(bad), SectionSyntaxError, bad);
  }
});

test('formatSection and parsePartial', () => {
  assert.equal(formatSection(parseSection('1.2.header.fields (from "to")')), '1.2.HEADER.FIELDS (FROM TO)');
  assert.equal(formatSection(parseSection('')), '');
  assert.equal(formatSection(parseSection('3.mime')), '3.MIME');
  assert.deepEqual(parsePartial('<0.10>'), { origin: 0, count: 10 });
  for (const bad of ['<0.0>', '<1>', '<01.2>', '0.1']) assert.throws(() => parsePartial(bad), SectionSyntaxError, bad);
  const b = Buffer.from('0123456789');
  assert.equal(applyPartial(b, { origin: 2, count: 3 }).toString(), '234');
  assert.equal(applyPartial(b, { origin: 8, count: 100 }).toString(), '89');
  assert.equal(applyPartial(b, { origin: 10, count: 1 }).length, 0);
});

// ---- single-part messages ----

test('01-simple-text: [], HEADER, TEXT, 1, 1.MIME, out of range', async () => {
  const m = await load('01-simple-text');
  const header =
    'From: Alice Example <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: Hello\r\n' +
    'Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\nMIME-Version: 1.0\r\n' +
    'Content-Type: text/plain; charset=utf-8\r\n\r\n';
  const body = 'Hello Bob.\r\nBye.\r\n';
  assert.equal(await m.get(''), header + body);
  assert.equal(await m.get('HEADER'), header);
  assert.equal(await m.get('TEXT'), body);
  assert.equal(await m.get('1'), body); // RFC 9051 §6.4.5: part 1 of a non-multipart message is its body
  assert.equal(await m.get('1.MIME'), header); // Dovecot: the part's header is the message header
  assert.equal(await m.get('2'), '');
  assert.equal(await m.get('1.1'), ''); // only a message/rfc822 can be entered
  assert.equal(await m.get('1.HEADER'), ''); // HEADER after a number needs message/rfc822
  assert.equal(await m.get('1.TEXT'), '');
});

test('HEADER.FIELDS: case-insensitive, order of the message, blank line included', async () => {
  const m = await load('01-simple-text');
  assert.equal(await m.get('HEADER.FIELDS (subject FROM)'), 'From: Alice Example <alice@example.com>\r\nSubject: Hello\r\n\r\n');
  assert.equal(await m.get('HEADER.FIELDS (X-Missing)'), '\r\n');
  assert.equal(
    await m.get('HEADER.FIELDS.NOT (From to subject date message-id)'),
    'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n',
  );
});

test('HEADER.FIELDS keeps folded lines exactly: 24-folded-headers', async () => {
  const m = await load('24-folded-headers');
  assert.equal(await m.get('HEADER.FIELDS (Subject)'), 'Subject: this subject\r\n is folded\r\n\r\n');
  assert.equal(await m.get('HEADER.FIELDS (to content-type)'), 'To: a@example.com,\r\n\tb@example.com\r\nContent-Type: text/plain;\r\n charset="iso-8859-1"\r\n\r\n');
});

test('HEADER.FIELDS returns every occurrence of a duplicated field: 18-duplicate-headers', async () => {
  const m = await load('18-duplicate-headers');
  assert.equal(await m.get('HEADER.FIELDS (SUBJECT)'), 'Subject: one\r\nSubject: two\r\n\r\n');
});

test('partial is applied after extraction', async () => {
  const m = await load('01-simple-text');
  assert.equal(await m.get('TEXT', '<6.3>'), 'Bob');
  assert.equal(await m.get('HEADER.FIELDS (Subject)', '<9.100>'), 'Hello\r\n\r\n');
  assert.equal(await m.get('', '<0.4>'), 'From');
  assert.equal(await m.get('TEXT', '<18.1>'), ''); // origin at the end: empty
  assert.equal(await m.get('TEXT', '<1000.1>'), '');
});

test('empty body and header without blank line: 16, 29', async () => {
  const e = await load('16-empty-body');
  assert.equal(await e.get('TEXT'), '');
  assert.equal(await e.get('1'), '');
  assert.equal(await e.get('HEADER'), 'From: a@example.com\r\nSubject: empty\r\n\r\n');
  const h = await load('29-header-only');
  assert.equal(await h.get('HEADER'), 'From: a@example.com\r\nSubject: header only\r\n');
  assert.equal(await h.get('TEXT'), '');
  assert.equal(await h.get('HEADER.FIELDS (subject)'), 'Subject: header only\r\n\r\n');
});

test('no header at all: 17-missing-headers', async () => {
  const m = await load('17-missing-headers');
  assert.equal(await m.get('HEADER'), '\r\n');
  assert.equal(await m.get('TEXT'), 'just a body\r\n');
  assert.equal(await m.get('HEADER.FIELDS (From)'), '\r\n');
});

// ---- multiparts ----

test('05-nested-multipart: part numbers, MIME headers, out-of-range parts', async () => {
  const m = await load('05-nested-multipart');
  assert.equal(await m.get('1.1'), 'one');
  assert.equal(await m.get('1.2'), '<b>one</b>');
  assert.equal(await m.get('1.2.MIME'), 'Content-Type: text/html\r\n\r\n');
  assert.equal(await m.get('1.MIME'), 'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n');
  assert.equal(
    await m.get('1'),
    '--inner\r\nContent-Type: text/plain\r\n\r\none\r\n--inner\r\nContent-Type: text/html\r\n\r\n<b>one</b>\r\n--inner--',
  );
  assert.equal(await m.get('2'), 'AAAA');
  assert.equal(await m.get('3'), '');
  assert.equal(await m.get('1.3'), '');
  // Dovecot imap_msgpart_find: in a non-multipart part only number 1 exists, and it is the part itself.
  assert.equal(await m.get('1.1.1'), 'one');
  assert.equal(await m.get('1.1.2'), '');
  assert.equal(await m.get('1.HEADER'), '');
  assert.equal(await m.get('2.TEXT'), '');
  assert.equal(await m.get('TEXT', '<0.7>'), '--outer');
  assert.equal((await m.get('TEXT')).slice(-9), '--outer--\r\n'.slice(-9));
});

test('preamble and epilogue belong to TEXT only: 11-garbage-preamble', async () => {
  const m = await load('11-garbage-preamble');
  const text = await m.get('TEXT');
  assert.ok(text.startsWith('garbage line\r\n--gx not a delimiter\r\n--g\r\n'));
  assert.ok(text.endsWith('--g--\r\nepilogue text\r\n'));
  assert.equal(await m.get('1'), 'real');
  assert.equal(await m.get('2'), '');
});

test('broken MIME: missing close delimiter and lost boundary', async () => {
  const m = await load('09-missing-end-boundary');
  assert.equal(await m.get('1'), 'part one');
  assert.equal(await m.get('2'), 'part two\r\n');
  const n = await load('10-boundary-never-found');
  assert.equal(await n.get('1'), '');
  assert.ok((await n.get('TEXT')).startsWith('--other\r\n'));
});

// ---- message/rfc822 ----

test('06-forward: n.HEADER, n.TEXT, n.MIME, n.1 inside message/rfc822', async () => {
  const m = await load('06-forward');
  const inner =
    'From: orig@example.com\r\nTo: fwd@example.com\r\nSubject: orig\r\nDate: Tue, 2 Jan 2024 09:00:00 +0100\r\nMessage-ID: <orig@example.com>\r\n\r\n';
  assert.equal(await m.get('2'), inner + 'Original body.');
  assert.equal((await m.get('2')).length, 146);
  assert.equal(await m.get('2.HEADER'), inner);
  assert.equal(await m.get('2.TEXT'), 'Original body.');
  assert.equal(await m.get('2.1'), 'Original body.');
  assert.equal(await m.get('2.MIME'), 'Content-Type: message/rfc822\r\n\r\n');
  assert.equal(await m.get('2.1.MIME'), inner); // the embedded single part's header is its message header
  assert.equal(await m.get('2.HEADER.FIELDS (SUBJECT message-id)'), 'Subject: orig\r\nMessage-ID: <orig@example.com>\r\n\r\n');
  assert.equal(await m.get('2.HEADER.FIELDS.NOT (From To Date Message-ID)'), 'Subject: orig\r\n\r\n');
  assert.equal(await m.get('2.2'), '');
  assert.equal(await m.get('1.HEADER'), '');
});

test('07-forward-in-forward: a top-level message/rfc822 with a nested forward', async () => {
  const m = await load('07-forward-in-forward');
  assert.equal(await m.get('HEADER'), 'From: outer@example.com\r\nSubject: Fwd: Fwd: deep\r\nContent-Type: message/rfc822\r\n\r\n');
  assert.equal((await m.get('1')).length, 227);
  assert.equal(await m.get('1'), await m.get('TEXT'));
  assert.equal(await m.get('1.HEADER'), 'From: middle@example.com\r\nSubject: Fwd: deep\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n');
  assert.equal(await m.get('1.1'), 'mid');
  assert.equal(await m.get('1.1.MIME'), 'Content-Type: text/plain\r\n\r\n');
  assert.equal(await m.get('1.2.HEADER'), 'From: deep@example.com\r\nSubject: deep\r\n\r\n');
  assert.equal(await m.get('1.2.TEXT'), 'deep body');
  assert.equal(await m.get('1.2.1'), 'deep body');
  assert.equal(await m.get('1.2.HEADER.FIELDS (from)'), 'From: deep@example.com\r\n\r\n');
  assert.equal(await m.get('1.3'), '');
  assert.equal(await m.get('2'), '');
  assert.equal(findPart(m.ix.root, [1, 2, 1])?.subtype, 'plain');
});

test('08-digest: a part without Content-Type is a message/rfc822', async () => {
  const m = await load('08-digest');
  assert.equal(await m.get('1.HEADER'), 'From: one@example.com\r\nSubject: first\r\n\r\n');
  assert.equal(await m.get('1.TEXT'), 'first');
  assert.equal(await m.get('1.MIME'), '\r\n');
  assert.equal(await m.get('2.HEADER'), '');
});

// ---- BINARY (RFC 3516) ----

async function binary(name: string, part: number[], partial?: string) {
  const msg = loadMessage(name);
  const ix = await indexMessage(msg);
  const read = (s: number, e: number) => msg.subarray(s, e);
  return { r: await fetchBinary(ix, part, read, partial ? parsePartial(partial) : null), size: await binarySize(ix, part, read) };
}

test('BINARY decodes base64 and quoted-printable; BINARY.SIZE is the decoded size', async () => {
  const pdf = await binary('04-mixed-attachments', [2]);
  assert.ok(pdf.r.ok);
  assert.equal(pdf.r.ok && pdf.r.data.toString('latin1'), '%PDF-1.4\n');
  assert.deepEqual(pdf.size, { ok: true, size: 9 });
  const png = await binary('04-mixed-attachments', [3]);
  assert.ok(png.r.ok && png.r.data.equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])));
  assert.ok(png.r.ok && !png.r.hasNul);
  const qp = await binary('26-weird-case', [1]);
  assert.ok(qp.r.ok && qp.r.data.equals(Buffer.from('café\r\n', 'utf8')));
  assert.deepEqual(qp.size, { ok: true, size: 7 });
  const part = await binary('04-mixed-attachments', [2], '<1.3>');
  assert.ok(part.r.ok && part.r.data.toString() === 'PDF');
});

test('BINARY of identity encodings is the body as it is', async () => {
  const t = await binary('01-simple-text', [1]);
  assert.ok(t.r.ok && t.r.data.toString() === 'Hello Bob.\r\nBye.\r\n');
  const whole = await binary('01-simple-text', []);
  assert.ok(whole.r.ok && whole.r.data.equals(loadMessage('01-simple-text')));
  const fwd = await binary('06-forward', [2]);
  assert.ok(fwd.r.ok && fwd.r.data.length === 146);
  const missing = await binary('06-forward', [9]);
  assert.ok(missing.r.ok && missing.r.data.length === 0);
});

test('BINARY of an encoded message/rfc822 decodes it: 28-encoded-rfc822', async () => {
  const b = await binary('28-encoded-rfc822', [1]);
  assert.ok(b.r.ok && b.r.data.toString() === 'From: b@example.com\r\n\r\nhi');
});

test('BINARY with an unknown transfer encoding: UNKNOWN-CTE', async () => {
  const b = await binary('30-quoting-unknown-cte', [1]);
  assert.deepEqual(b.r, { ok: false, code: 'UNKNOWN-CTE' });
  assert.deepEqual(b.size, { ok: false, code: 'UNKNOWN-CTE' });
});

test('decodeQuotedPrintable: soft breaks, padding, malformed escapes', () => {
  const d = (s: string) => decodeQuotedPrintable(Buffer.from(s, 'latin1')).toString('latin1');
  assert.equal(d('a=3Db'), 'a=b');
  assert.equal(d('long=\r\nline'), 'longline');
  assert.equal(d('soft=  \r\nbreak'), 'softbreak');
  assert.equal(d('pad   \r\nnext\t\r\n'), 'pad\r\nnext\r\n');
  assert.equal(d('bad=ZZ=4'), 'bad=ZZ=4');
  assert.equal(d('lf=\nonly'), 'lfonly');
  assert.equal(d('end='), 'end');
  assert.equal(d('=c3=A9'), '\xc3\xa9');
});

test('BINARY marks NUL bytes for literal8', async () => {
  const msg = Buffer.from('Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n');
  const ix = await indexMessage(msg);
  const r = await fetchBinary(ix, [1], (s, e) => msg.subarray(s, e));
  assert.ok(r.ok && r.hasNul && r.data.equals(Buffer.from([0, 1, 2])));
});
