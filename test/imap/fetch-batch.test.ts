import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fc from 'fast-check';
import { startTestServer, inbox, type TestServer } from '../helpers/server.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';
import { indexBuffer } from '../../src/mime/indexer.ts';
import { filterHeader, headerEnd } from '../../src/imap/sections.ts';
import { formatInternalDate, formatWithDate } from '../../src/imap/fetch-items.ts';
import { formatEnvelope } from '../../src/imap/envelope.ts';
import { ResponseBuffer } from '../../src/imap/writer.ts';
import { readBlobRows } from '../../src/store/blob-batch.ts';
import type { MessageIndex } from '../../src/mime/types.ts';

/**
 * FETCH of many messages at once (commands/fetch.ts): answered in batches from one
 * query per batch, header-only items without the MIME index, everything else from
 * memory when it fits and on its own when it does not (files, messages above 256 KiB,
 * headers longer than the prefix read). Every response is checked against the stored
 * bytes and the stored MIME index, over a mailbox of ~640 messages (more than one
 * batch) mixing all of these.
 */

let t: TestServer;
let accountId = 0;

interface Stored {
  uid: number;
  hash: string;
  raw: Buffer;
  index: MessageIndex;
}
/** By sequence number - 1. */
let stored: Stored[] = [];
/** Hashes whose blobs a test deleted. */
const collected = new Set<string>();

const line = (c: string, n: number) => `${c.repeat(n)}\r\n`;

/** ~40-byte folded header lines: a header of about `bytes` bytes. */
function longField(bytes: number): string {
  let s = 'X-Long: start\r\n';
  while (s.length < bytes) s += `\tcontinued ${'x'.repeat(28)}\r\n`;
  return s;
}

function small(i: number): string {
  return `From: Sender ${i} <s${i}@remote.test>\r\nTo: alice@example.test\r\nSubject: message ${i}\r\nX-Seq: ${i}\r\nDate: Sat, 28 Nov 2026 05:00:00 +0000\r\n\r\nbody of ${i}\r\n`;
}

/** The messages, in delivery order; the comment says which path each one takes. */
function corpus(): string[] {
  const out: string[] = [];
  for (let i = 0; i < 600; i++) {
    if (i % 97 === 5) {
      // inline, 30 KB, multipart with a base64 part
      const b = `b${i}`;
      out.push(
        `From: m${i}@remote.test\r\nSubject: multipart ${i}\r\nX-Seq: ${i}\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n--${b}\r\nContent-Type: text/plain\r\n\r\n${line('t', 70).repeat(400)}--${b}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF/w==\r\n--${b}--\r\n`,
      );
    } else if (i % 101 === 7) out.push(small(i).replace('\r\n\r\n', '\r\n\r\n' + line('f', 78).repeat(1300))); // ~100 KB: a file
    else out.push(small(i));
  }
  const extra = [
    // header longer than the 16 KiB read for header-only items: inline, a file, larger than 256 KiB
    `Subject: long header inline\r\nX-Seq: L1\r\n${longField(20_000)}\r\nshort body\r\n`,
    `Subject: long header file\r\nX-Seq: L2\r\n${longField(20_000)}\r\n${line('g', 78).repeat(1000)}`,
    `Subject: long header huge\r\nX-Seq: L3\r\n${longField(40_000)}\r\n${line('h', 78).repeat(4000)}`,
    // larger than 256 KiB: ranges are read or streamed, never the whole message
    `Subject: huge\r\nX-Seq: H1\r\n\r\n${line('i', 78).repeat(5000)}`,
    // no blank line: all header; bare LF; a blank first line; LF CR LF; CR LF LF
    'Subject: header only\r\nX-Seq: N1\r\nFrom: a@b.test\r\n',
    'Subject: bare lf\nX-Seq: N2\nFrom: a@b.test\n\nbody\n',
    '\r\nSubject: not a header\r\n\r\nbody\r\n',
    'Subject: lf crlf\nX-Seq: N3\n\r\nbody\r\n',
    'Subject: crlf lf\r\nX-Seq: N4\r\n\nbody\r\n',
    // field names with blanks before the colon and odd case; a continuation line
    'SUBJECT  : spaced\r\nx-seq\t: N5\r\n folded\r\nReceived: r\r\n\r\nbody\r\n',
  ];
  // The blank line right at the end of the 16 KiB prefix (and around it).
  for (let k = -3; k <= 3; k++) {
    const head = `Subject: boundary ${k}\r\nX-Seq: B${k}\r\n`;
    const fill = 16 * 1024 + k - head.length - 'X-Fill: \r\n'.length - 2;
    extra.push(`${head}X-Fill: ${'y'.repeat(fill)}\r\n\r\nbody ${k}\r\n`);
  }
  out.splice(300, 0, ...extra.slice(0, 5));
  out.push(...extra.slice(5));
  return out;
}

before(async () => {
  t = await startTestServer();
  const acct = await t.server.ctx.data.getAccount('alice@example.test');
  accountId = acct!.id;
  const msgs = corpus();
  // Through Ingest, as SMTP delivers, 16 at a time.
  let next = 0;
  const worker = async () => {
    while (next < msgs.length) {
      const i = next++;
      await t.server.ctx.ingest.ingestBuffer(Buffer.from(msgs[i]!, 'latin1'), { deliveries: [{ accountId }], queue: null, internalDate: Date.UTC(2026, 10, 1) + i * 3_600_000 });
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  const rows = await inbox(t, 'alice@example.test');
  stored = [];
  for (const r of rows) {
    const meta = await t.server.ctx.data.blobMeta(r.blobHash);
    stored.push({ uid: r.uid, hash: r.blobHash, raw: await t.server.ctx.blobs.readAll(r.blobHash), index: JSON.parse(meta!) as MessageIndex });
  }
});
after(() => t.stop());

// ---- responses ----

const raw = (c: ImapTestClient, command: string) => c.raw(command);

/** `* n FETCH (name value …)`: each item's raw text, and the bytes of literals. */
function parseFetch(buf: Buffer): { seq: number; items: Map<string, { raw: string; data?: Buffer }> } {
  const s = buf.toString('latin1');
  const m = /^\* (\d+) FETCH \(/.exec(s);
  assert.ok(m, `not a FETCH response: ${s.slice(0, 100)}`);
  let i = m[0].length;
  const items = new Map<string, { raw: string; data?: Buffer }>();
  const value = (): { raw: string; data?: Buffer } => {
    const start = i;
    if (s[i] === '{' || s[i] === '~') {
      const lm = /^~?\{(\d+)\}\r\n/.exec(s.slice(i, i + 30))!;
      i += lm[0].length;
      const data = buf.subarray(i, i + Number(lm[1]));
      i += data.length;
      return { raw: s.slice(start, i), data };
    }
    if (s[i] === '(') {
      let depth = 0;
      do {
        if (s[i] === '"') {
          i++;
          while (s[i] !== '"') i += s[i] === '\\' ? 2 : 1;
        } else if (s[i] === '(') depth++;
        else if (s[i] === ')') depth--;
        i++;
      } while (depth > 0);
      return { raw: s.slice(start, i) };
    }
    while (i < s.length && !' )'.includes(s[i]!)) i++;
    return { raw: s.slice(start, i) };
  };
  for (;;) {
    const start = i;
    while (s[i] !== ' ') i = s[i] === '[' ? s.indexOf(']', i) + 1 : i + 1;
    const name = s.slice(start, i);
    i++;
    items.set(name, value());
    if (s[i] === ')') break;
    assert.equal(s[i], ' ');
    i++;
  }
  assert.equal(s.slice(i), ')');
  return { seq: Number(m[1]), items };
}

async function session(examine = true): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  assert.equal((await c.login()).status, 'OK');
  assert.equal((await c.command(`${examine ? 'EXAMINE' : 'SELECT'} INBOX`)).status, 'OK');
  return c;
}

// ---- expected values, from the stored bytes and index ----

function headerOf(m: Stored): Buffer {
  return m.raw.subarray(0, m.index.root.bodyStart);
}

/** HEADER.FIELDS[.NOT] written plainly: whole fields (with continuations) whose name matches, then CRLF. */
function fieldsOf(header: Buffer, names: string[], not: boolean): Buffer {
  const text = header.toString('latin1');
  const lines = text.split(/(?<=\n)/).filter((l) => l !== '');
  const out: string[] = [];
  let keep = false;
  for (const l of lines) {
    if (l === '\r\n' || l === '\n' || l.startsWith('\r')) break;
    if (!/^[ \t]/.test(l)) {
      const colon = l.indexOf(':');
      keep = (colon >= 0 && names.includes(l.slice(0, colon).replace(/[ \t]+$/, '').toLowerCase())) !== not;
    }
    if (keep) out.push(l.endsWith('\n') ? l : `${l}\r\n`);
  }
  return Buffer.from(out.join('') + '\r\n', 'latin1');
}

function seqsOf(responses: Buffer[]): number[] {
  return responses.map((b) => parseFetch(b).seq);
}

// ---- tests ----

test('the corpus has inline and file messages, messages over 256 KiB, headers over 16 KiB, and more than a batch', () => {
  assert.ok(stored.length > 600, `${stored.length}`);
  const inline = stored.filter((m) => m.raw.length <= 64 * 1024).length;
  assert.ok(inline > 500 && inline < stored.length);
  assert.ok(stored.some((m) => m.raw.length > 256 * 1024));
  assert.ok(stored.filter((m) => m.index.root.bodyStart > 16 * 1024).length >= 5);
  assert.ok(t.store !== undefined || fs.readdirSync(t.server.ctx.blobs.root).length > 0, 'some messages are files');
});

test('header-only FETCH 1:* (HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, partials) gives every stored header byte for byte', async () => {
  const c = await session();
  try {
    const r = await raw(c, 'FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER] BODY.PEEK[HEADER.FIELDS (Subject X-SEQ)] BODY.PEEK[HEADER.FIELDS.NOT (x-long X-Fill)] BODY.PEEK[HEADER]<5.20> RFC822.HEADER)');
    assert.equal(r.status, 'OK', r.text);
    assert.deepEqual(seqsOf(r.responses), stored.map((_, i) => i + 1));
    r.responses.forEach((b, i) => {
      const m = stored[i]!;
      const it = parseFetch(b).items;
      const header = headerOf(m);
      assert.deepEqual([...it.keys()], ['UID', 'RFC822.SIZE', 'BODY[HEADER]', 'BODY[HEADER.FIELDS (SUBJECT X-SEQ)]', 'BODY[HEADER.FIELDS.NOT (X-LONG X-FILL)]', 'BODY[HEADER]<5>', 'RFC822.HEADER']);
      assert.equal(it.get('UID')!.raw, String(m.uid));
      assert.equal(it.get('RFC822.SIZE')!.raw, String(m.raw.length));
      assert.deepEqual(it.get('BODY[HEADER]')!.data, header, `message ${i + 1}`);
      assert.deepEqual(it.get('RFC822.HEADER')!.data, header);
      assert.deepEqual(it.get('BODY[HEADER.FIELDS (SUBJECT X-SEQ)]')!.data, fieldsOf(header, ['subject', 'x-seq'], false), `message ${i + 1}`);
      assert.deepEqual(it.get('BODY[HEADER.FIELDS.NOT (X-LONG X-FILL)]')!.data, fieldsOf(header, ['x-long', 'x-fill'], true), `message ${i + 1}`);
      assert.deepEqual(it.get('BODY[HEADER]<5>')!.data, header.subarray(5, 25));
    });
    // The odd ones, spelled out.
    const bySubject = (s: string) => r.responses.find((b) => b.includes(`Subject: ${s}`))!;
    assert.match(parseFetch(bySubject('header only')).items.get('BODY[HEADER]')!.raw, /^\{\d+\}\r\nSubject: header only\r\nX-Seq: N1\r\nFrom: a@b\.test\r\n$/);
    assert.equal(parseFetch(bySubject('bare lf')).items.get('BODY[HEADER.FIELDS (SUBJECT X-SEQ)]')!.data!.toString(), 'Subject: bare lf\nX-Seq: N2\n\r\n');
    const spaced = r.responses.find((b) => b.includes('spaced'))!;
    assert.equal(parseFetch(spaced).items.get('BODY[HEADER.FIELDS (SUBJECT X-SEQ)]')!.data!.toString(), 'SUBJECT  : spaced\r\nx-seq\t: N5\r\n folded\r\n\r\n');
    const blank = stored.findIndex((m) => m.raw[0] === 13);
    assert.equal(parseFetch(r.responses[blank]!).items.get('BODY[HEADER]')!.raw, '{2}\r\n\r\n');
    // Again, now from cached header blocks, whose HEADER.FIELDS answers are kept by field
    // list (commands/fetch.ts fieldsMemo): other lists, the same names with NOT, another
    // order and case, partials of a kept answer.
    const again = await raw(
      c,
      'FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[HEADER.FIELDS.NOT (Subject X-SEQ)] BODY.PEEK[HEADER.FIELDS (x-seq SUBJECT)]<2.7> BODY.PEEK[HEADER.FIELDS (Subject X-SEQ)])',
    );
    assert.equal(again.status, 'OK', again.text);
    again.responses.forEach((b, i) => {
      const it = parseFetch(b).items;
      const header = headerOf(stored[i]!);
      const both = fieldsOf(header, ['subject', 'x-seq'], false);
      assert.deepEqual(it.get('BODY[HEADER.FIELDS (SUBJECT)]')!.data, fieldsOf(header, ['subject'], false), `message ${i + 1}`);
      assert.deepEqual(it.get('BODY[HEADER.FIELDS.NOT (SUBJECT X-SEQ)]')!.data, fieldsOf(header, ['subject', 'x-seq'], true), `message ${i + 1}`);
      assert.deepEqual(it.get('BODY[HEADER.FIELDS (X-SEQ SUBJECT)]<2>')!.data, both.subarray(2, 9), `message ${i + 1}`);
      assert.deepEqual(it.get('BODY[HEADER.FIELDS (SUBJECT X-SEQ)]')!.data, both, `message ${i + 1}`);
    });
  } finally {
    c.close();
  }
});

test('FETCH 1:* of whole messages, bodies, partials and BINARY across inline, file and >256 KiB messages', async () => {
  const c = await session();
  try {
    const r = await raw(c, 'FETCH 1:* (BODY.PEEK[] BODY.PEEK[TEXT]<10.300> BODY.PEEK[]<100.50> BINARY.SIZE[1] FLAGS)');
    assert.equal(r.status, 'OK', r.text);
    assert.deepEqual(seqsOf(r.responses), stored.map((_, i) => i + 1));
    r.responses.forEach((b, i) => {
      const m = stored[i]!;
      const it = parseFetch(b).items;
      assert.deepEqual(it.get('BODY[]')!.data, m.raw, `message ${i + 1}`);
      const text = m.raw.subarray(m.index.root.bodyStart);
      assert.deepEqual(it.get('BODY[TEXT]<10>')!.data, text.subarray(10, 310));
      assert.deepEqual(it.get('BODY[]<100>')!.data, m.raw.subarray(100, 150));
      assert.match(it.get('BINARY.SIZE[1]')!.raw, /^\d+$/);
      assert.match(it.get('FLAGS')!.raw, /^\((\\Recent)?\)$/);
    });
    const mp = stored.findIndex((m) => m.index.root.type === 'multipart');
    const bin = await raw(c, `FETCH ${mp + 1}:${mp + 3} (BINARY.PEEK[2] BODY.PEEK[1]<0.10>)`);
    assert.equal(bin.status, 'OK', bin.text);
    const first = parseFetch(bin.responses[0]!).items;
    assert.deepEqual(first.get('BINARY[2]')!.data, Buffer.from([0, 1, 2, 3, 4, 5, 0xff]));
    assert.ok(first.get('BINARY[2]')!.raw.startsWith('~{7}'));
    assert.equal(first.get('BODY[1]<0>')!.data!.toString(), 'tttttttttt');
  } finally {
    c.close();
  }
});

test('ENVELOPE with header fields: the same from a cold and a warm index cache, and message by message', async () => {
  const c = await session();
  try {
    const cmd = '(UID ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])';
    const cold = await raw(c, `FETCH 1:* ${cmd}`);
    const warm = await raw(c, `FETCH 1:* ${cmd}`);
    assert.equal(cold.status, 'OK', cold.text);
    assert.deepEqual(warm.responses, cold.responses);
    cold.responses.forEach((b, i) => {
      const it = parseFetch(b).items;
      assert.equal(it.get('ENVELOPE')!.raw, formatEnvelope(stored[i]!.index.envelope, { utf8: false }));
      assert.deepEqual(it.get('BODY[HEADER.FIELDS (SUBJECT)]')!.data, fieldsOf(headerOf(stored[i]!), ['subject'], false));
    });
    for (const seq of [1, 301, 303, stored.length - 3, stored.length]) {
      const one = await raw(c, `FETCH ${seq} ${cmd}`);
      assert.deepEqual(one.responses, [cold.responses[seq - 1]]);
    }
  } finally {
    c.close();
  }
});

test('a message expunged by another session in the middle of the set is still fetched; NOOP then reports it', async () => {
  const a = await session(false);
  const b = await session(false);
  try {
    const victim = 250;
    assert.equal((await b.command(`STORE ${victim} +FLAGS.SILENT (\\Deleted)`)).status, 'OK');
    assert.equal((await b.command('EXPUNGE')).status, 'OK');
    const r = await raw(a, 'FETCH 1:* (UID BODY.PEEK[HEADER])');
    assert.equal(r.status, 'OK', r.text);
    assert.deepEqual(seqsOf(r.responses), stored.map((_, i) => i + 1), 'no EXPUNGE during FETCH, every number still answered');
    assert.deepEqual(parseFetch(r.responses[victim - 1]!).items.get('BODY[HEADER]')!.data, headerOf(stored[victim - 1]!));
    const noop = await a.command('NOOP');
    assert.ok(noop.lines.includes(`* ${victim} EXPUNGE`), noop.lines.join(' | '));
  } finally {
    a.close();
    b.close();
  }
  stored.splice(249, 1);
});

test('a message whose blob was collected while still listed: the others are answered, then NO [EXPUNGEISSUED]', async () => {
  const a = await session();
  const b = await session(false);
  try {
    // Two inline messages, on both sides of a batch boundary, whose blobs nobody else holds.
    const smallFrom = (q: number) => q + stored.slice(q - 1).findIndex((m) => m.raw.length < 4096);
    const victims = [smallFrom(10), smallFrom(520)];
    for (const v of victims) assert.equal((await b.command(`STORE ${v} +FLAGS.SILENT (\\Deleted)`)).status, 'OK');
    assert.equal((await b.command('EXPUNGE')).status, 'OK');
    for (const v of victims) collected.add(stored[v - 1]!.hash);
    await t.server.ctx.data.db.deleteFrom('blobs').where('hash', 'in', victims.map((v) => stored[v - 1]!.hash)).execute();
    // Header blocks fetched before are kept in memory (header-blocks.ts, content-addressed):
    // a header FETCH of a message still listed but expunged elsewhere is answered from
    // there, as RFC 9051 §7.5.1 allows (Dovecot answers from its cache file alike).
    const headers = await raw(a, 'FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
    assert.equal(headers.status, 'OK', headers.text);
    assert.deepEqual(seqsOf(headers.responses), stored.map((_, i) => i + 1));
    for (const items of ['(UID BODY.PEEK[])', '(UID BODYSTRUCTURE BODY.PEEK[1])']) {
      const r = await raw(a, `FETCH 1:* ${items}`);
      assert.equal(r.status, 'NO', `${items}: ${r.status} ${r.text}`);
      assert.match(r.text, /^\[EXPUNGEISSUED\] 2 message/);
      const want = stored.map((_, i) => i + 1).filter((q) => !victims.includes(q));
      assert.deepEqual(seqsOf(r.responses), want, items);
      for (const buf of r.responses) {
        const { seq, items: it } = parseFetch(buf);
        assert.equal(it.get('UID')!.raw, String(stored[seq - 1]!.uid));
      }
    }
    // Items that need nothing of the blob are still answered.
    const flags = await raw(a, `FETCH ${victims[0]} (UID FLAGS)`);
    assert.equal(flags.status, 'OK');
  } finally {
    a.close();
    b.close();
  }
});

test('a header FETCH of a message whose blob was collected before its header was ever read: NO [EXPUNGEISSUED]', async () => {
  const a = await session();
  const b = await session(false);
  try {
    // Delivered here and never fetched: its header block is in no cache.
    const text = 'From: late@remote.test\r\nSubject: never read\r\n\r\nbody\r\n';
    await t.server.ctx.ingest.ingestBuffer(Buffer.from(text), { deliveries: [{ accountId }], queue: null, internalDate: Date.UTC(2026, 11, 1) });
    const seen = await a.command('NOOP');
    const exists = Number(/^\* (\d+) EXISTS$/.exec(seen.lines.find((l) => l.endsWith(' EXISTS')) ?? '')?.[1]);
    assert.ok(exists > 1, seen.lines.join(' | '));
    const hash = (await t.server.ctx.data.listMessages(accountId, 'INBOX')).at(-1)!.blobHash;
    await b.command('NOOP');
    assert.equal((await b.command(`STORE ${exists} +FLAGS.SILENT (\\Deleted)`)).status, 'OK');
    assert.equal((await b.command('EXPUNGE')).status, 'OK');
    collected.add(hash);
    await t.server.ctx.data.db.deleteFrom('blobs').where('hash', '=', hash).execute();
    const r = await raw(a, `FETCH ${exists - 1}:${exists} (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])`);
    assert.equal(r.status, 'NO', `${r.status} ${r.text}`);
    assert.match(r.text, /^\[EXPUNGEISSUED\] 1 message/);
    assert.deepEqual(seqsOf(r.responses), [exists - 1], 'the other message is answered');
  } finally {
    a.close();
    b.close();
  }
});

// ---- the pieces, on their own ----

test('headerEnd finds the header end the MIME indexer records, and never a wrong one in a prefix', async () => {
  const piece = fc.constantFrom('\r\n', '\n', '\r', 'A: b', ' c', ':', '\r\n\r\n', '\n\r\n', '\r\n\n', '--x', 'é');
  await fc.assert(
    fc.asyncProperty(fc.array(piece, { maxLength: 30 }), fc.nat(), async (parts, cut) => {
      const buf = Buffer.from(parts.join(''), 'latin1');
      const want = (await indexBuffer(buf)).root.bodyStart;
      assert.equal(headerEnd(buf, true), want, JSON.stringify(parts.join('')));
      const prefix = buf.subarray(0, buf.length ? cut % (buf.length + 1) : 0);
      const got = headerEnd(prefix, false);
      assert.ok(got === -1 || got === want, `prefix ${JSON.stringify(prefix.toString('latin1'))}: ${got}, want ${want}`);
    }),
    { numRuns: 3000 },
  );
});

test('filterHeader keeps whole fields by name, case-insensitively, as stored; NOT drops them', () => {
  const piece = fc.constantFrom('Subject: a\r\n', 'SUBJECT : b\r\n', 'subject\t:c\n', ' folded\r\n', '\tmore\r\n', 'X-É: d\r\n', 'x-é: e\r\n', 'no colon\r\n', ': empty\r\n', 'To: f', '\r\n', 'Received: g\r\n');
  const names = fc.subarray(['Subject', 'x-é', 'TO', 'received', 'X-É', 'missing']);
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 12 }), names, fc.boolean(), (parts, want, not) => {
      if (want.length === 0) return;
      const block = Buffer.from(parts.join(''), 'latin1');
      assert.deepEqual(filterHeader(block, want, not), fieldsOf(block, want.map((n) => n.toLowerCase()), not));
    }),
    { numRuns: 3000 },
  );
});

test('formatInternalDate is what a Date prints, across the whole range', () => {
  for (const ms of [0, -1, 1, 86_399_999, 951_782_400_000, 951_868_799_999, -62_135_596_800_000, -62_198_755_200_000, 8.64e15, -8.64e15, 8.64e15 + 1, 0.5, NaN]) {
    assert.equal(formatInternalDate(ms), formatWithDate(ms), String(ms));
  }
  fc.assert(
    fc.property(fc.integer({ min: -8.64e15, max: 8.64e15 }), (ms) => formatInternalDate(ms) === formatWithDate(ms)),
    { numRuns: 20_000 },
  );
  assert.equal(formatInternalDate(Date.UTC(2026, 11, 1, 5, 56, 1)), '01-Dec-2026 05:56:01 +0000');
});

test('ResponseBuffer: text, small and large byte strings come out in order, as their concatenation', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 300 }), fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a))), { maxLength: 60 }),
      fc.boolean(),
      (parts, takeMidway) => {
        const out = new ResponseBuffer(1024, 256);
        const got: Buffer[] = [];
        parts.forEach((p, i) => {
          if (typeof p === 'string') out.text(p);
          else out.bytes(p);
          if (takeMidway && i % 7 === 3) got.push(...out.take());
        });
        const want = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
        assert.equal(out.length + got.reduce((n, b) => n + b.length, 0), want.length);
        got.push(...out.take());
        assert.deepEqual(Buffer.concat(got), want);
        assert.equal(out.length, 0);
      },
    ),
    { numRuns: 500 },
  );
});

test('readBlobRows: one query for many hashes, prefixes, missing rows left out, duplicates once', async () => {
  const some = stored.filter((m) => !collected.has(m.hash)).slice(0, 40);
  const hashes = some.map((m) => m.hash);
  const rows = await readBlobRows(t.server.ctx.data, [...hashes, hashes[0]!, 'f'.repeat(64)], { meta: true, data: 100 });
  assert.equal(rows.size, 40);
  for (const m of some) {
    const r = rows.get(m.hash)!;
    assert.deepEqual(JSON.parse(r.meta!), m.index);
    assert.deepEqual(r.data, m.raw.length <= 64 * 1024 ? m.raw.subarray(0, 100) : null);
  }
  const whole = await readBlobRows(t.server.ctx.data, hashes, { meta: false, data: 'whole' });
  for (const m of some) {
    assert.equal(whole.get(m.hash)!.meta, null);
    assert.deepEqual(whole.get(m.hash)!.data, m.raw.length <= 64 * 1024 ? m.raw : null);
  }
});
