import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startTestServer, inbox, type TestServer } from '../helpers/server.ts';
import { ImapTestClient, type RawReply } from '../helpers/imap-client.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { formatBodyStructure } from '../../src/imap/bodystructure.ts';
import type { MessageIndex } from '../../src/mime/types.ts';

/** FETCH / UID FETCH over real sockets (RFC 9051 §6.4.5, §7.5.2; RFC 3516 BINARY). */

const SIMPLE =
  'From: Sender <sender@remote.test>\r\nTo: alice@example.test\r\nSubject: simple one\r\nDate: Sat, 28 Nov 2026 05:00:00 +0000\r\nMessage-ID: <simple1@remote.test>\r\nX-Extra: folded\r\n  continuation\r\n\r\nHello there.\r\nSecond line.\r\n';

const MULTIPART = [
  'From: "Bob Example" <bob@example.test>',
  'To: alice@example.test, Carol <carol@example.test>',
  'Cc: dave@example.test',
  'Subject: multipart test',
  'Date: Sat, 28 Nov 2026 05:00:00 +0000',
  'Message-ID: <mp1@example.test>',
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="BOUND"',
  '',
  'preamble',
  '--BOUND',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hello part one.',
  '--BOUND',
  'Content-Type: text/plain',
  'Content-Transfer-Encoding: base64',
  '',
  'SGVsbG8gd29y',
  'bGQ=',
  '--BOUND',
  'Content-Type: application/octet-stream; name="data.bin"',
  'Content-Transfer-Encoding: base64',
  '',
  'AAECAwQF/w==',
  '--BOUND',
  'Content-Type: message/rfc822',
  '',
  'From: inner@example.test',
  'Subject: inner',
  '',
  'inner body',
  '--BOUND',
  'Content-Type: text/plain',
  'Content-Transfer-Encoding: x-uuencode',
  '',
  'begin 644 x',
  '--BOUND--',
  '',
].join('\r\n');

function bigMessage(): string {
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789abcd\r\n';
  return `From: big@remote.test\r\nTo: alice@example.test\r\nSubject: big\r\n\r\n${line.repeat(Math.ceil((1024 * 1024) / line.length))}`;
}

let t: TestServer;
/** Stored bytes of the messages, by sequence number (1-based). */
const stored: Buffer[] = [];
let uids: number[] = [];

before(async () => {
  t = await startTestServer();
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  for (const m of [SIMPLE, MULTIPART, SIMPLE.replace('simple one', 'to be seen'), bigMessage(), SIMPLE.replace('simple one', 'peek only')]) {
    const r = await c.sendMail({ from: 'bob@example.test', to: ['alice@example.test'], message: m });
    assert.equal(r.data?.code, 250);
  }
  await c.quit();
  const rows = await inbox(t, 'alice@example.test');
  assert.equal(rows.length, 5);
  uids = rows.map((r) => r.uid);
  for (const r of rows) stored.push(await t.server.ctx.blobs.readAll(r.blobHash));
});
after(() => t.stop());

// ---- a raw response reader and a FETCH response parser (binary-safe) ----

type Raw = RawReply;
const raw = (c: ImapTestClient, command: string): Promise<Raw> => c.raw(command);

type Value = { raw: string; data?: Buffer };

/** Parses `* n FETCH (name value …)`: each value's raw text, and for strings/literals the bytes. */
function parseFetch(buf: Buffer): { seq: number; items: Map<string, Value> } {
  const s = buf.toString('latin1');
  const m = /^\* (\d+) FETCH \(/.exec(s);
  assert.ok(m, `not a FETCH response: ${s.slice(0, 100)}`);
  let i = m[0].length;
  const items = new Map<string, Value>();
  const value = (): Value => {
    const start = i;
    const c = s[i];
    if (c === '"') {
      let out = '';
      i++;
      while (s[i] !== '"') {
        if (s[i] === '\\') i++;
        out += s[i++];
      }
      i++;
      return { raw: s.slice(start, i), data: Buffer.from(out, 'latin1') };
    }
    if (c === '{' || c === '~') {
      const lm = /^~?\{(\d+)\}\r\n/.exec(s.slice(i))!;
      i += lm[0].length;
      const n = Number(lm[1]);
      const data = buf.subarray(i, i + n);
      i += n;
      return { raw: s.slice(start, i), data };
    }
    if (c === '(') {
      i++;
      while (s[i] !== ')') {
        value();
        if (s[i] === ' ') i++;
      }
      i++;
      return { raw: s.slice(start, i) };
    }
    while (i < s.length && !' )'.includes(s[i]!)) i++;
    return { raw: s.slice(start, i) };
  };
  for (;;) {
    // item name: atom chars, with a [...] that may hold spaces, and <n>
    const start = i;
    while (s[i] !== ' ') {
      if (s[i] === '[') i = s.indexOf(']', i);
      i++;
    }
    const name = s.slice(start, i);
    i++;
    items.set(name, value());
    if (s[i] === ')') break;
    assert.equal(s[i], ' ', `expected SP after ${name} in ${s}`);
    i++;
  }
  assert.equal(s.slice(i), ')', 'response ends after the item list');
  return { seq: Number(m[1]), items };
}

async function fetchOne(c: ImapTestClient, command: string): Promise<Map<string, Value>> {
  const r = await raw(c, command);
  assert.equal(r.status, 'OK', `${command}: ${r.text}`);
  const fetches = r.responses.filter((b) => /^\* \d+ FETCH/.test(b.toString('latin1')));
  assert.equal(fetches.length, 1, `${command}: ${r.responses.map((b) => b.toString('latin1').slice(0, 200)).join(' | ')}`);
  return parseFetch(fetches[0]!).items;
}

async function session(opts: { examine?: boolean } = {}): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  assert.equal((await c.login()).status, 'OK');
  const r = await c.command(`${opts.examine ? 'EXAMINE' : 'SELECT'} INBOX`);
  assert.equal(r.status, 'OK', r.text);
  return c;
}

function headerOf(msg: Buffer): Buffer {
  return msg.subarray(0, msg.indexOf('\r\n\r\n') + 4);
}

async function indexOf(seq: number): Promise<MessageIndex> {
  const rows = await inbox(t, 'alice@example.test');
  return JSON.parse((await t.server.ctx.data.blobMeta(rows[seq - 1]!.blobHash))!) as MessageIndex;
}

// ---- tests ----

test('FLAGS, UID, INTERNALDATE, RFC822.SIZE are exact; RFC822.SIZE is the length of BODY[]; BODY[] is the stored message', async () => {
  const c = await session({ examine: true });
  try {
    const rows = await inbox(t, 'alice@example.test');
    const it = await fetchOne(c, 'FETCH 1 (FLAGS UID INTERNALDATE RFC822.SIZE BODY.PEEK[])');
    assert.deepEqual([...it.keys()], ['FLAGS', 'UID', 'INTERNALDATE', 'RFC822.SIZE', 'BODY[]']);
    assert.equal(it.get('UID')!.raw, String(uids[0]));
    assert.match(it.get('FLAGS')!.raw, /^\([^)]*\)$/);
    const d = new Date(rows[0]!.internalDate);
    const months = 'Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec'.split(' ');
    const p = (n: number) => String(n).padStart(2, '0');
    const want = `"${p(d.getUTCDate())}-${months[d.getUTCMonth()]}-${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000"`;
    assert.equal(it.get('INTERNALDATE')!.raw, want);
    assert.match(want, /^"\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d \+0000"$/);
    assert.equal(Number(it.get('RFC822.SIZE')!.raw), it.get('BODY[]')!.data!.length);
    assert.deepEqual(it.get('BODY[]')!.data, stored[0]);
    assert.ok(stored[0]!.includes(Buffer.from(SIMPLE)), 'the stored message holds what was sent');
  } finally {
    c.close();
  }
});

test('macros ALL, FAST, FULL; a single item without parentheses', async () => {
  const c = await session({ examine: true });
  try {
    assert.deepEqual([...(await fetchOne(c, 'FETCH 1 FAST')).keys()], ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE']);
    assert.deepEqual([...(await fetchOne(c, 'FETCH 1 ALL')).keys()], ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE']);
    assert.deepEqual([...(await fetchOne(c, 'FETCH 1 full')).keys()], ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODY']);
    assert.deepEqual([...(await fetchOne(c, 'FETCH 1 uid')).keys()], ['UID']);
    const r = await c.command('FETCH 1 (ALL)');
    assert.equal(r.status, 'BAD', 'macros are not fetch-atts');
  } finally {
    c.close();
  }
});

test('HEADER, TEXT, HEADER.FIELDS and HEADER.FIELDS.NOT (names echoed upper-case), RFC822.HEADER/RFC822.TEXT/RFC822', async () => {
  const c = await session({ examine: true });
  try {
    const msg = stored[0]!;
    const header = headerOf(msg);
    const it = await fetchOne(c, 'FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[HEADER.FIELDS (From subject "X-Extra")] BODY.PEEK[HEADER.FIELDS.NOT (X-Extra Date)])');
    assert.deepEqual(it.get('BODY[HEADER]')!.data, header);
    assert.deepEqual(it.get('BODY[TEXT]')!.data, msg.subarray(header.length));
    assert.equal(it.get('BODY[TEXT]')!.data!.toString(), 'Hello there.\r\nSecond line.\r\n');
    assert.equal(
      it.get('BODY[HEADER.FIELDS (FROM SUBJECT X-EXTRA)]')!.data!.toString(),
      'From: Sender <sender@remote.test>\r\nSubject: simple one\r\nX-Extra: folded\r\n  continuation\r\n\r\n',
    );
    const not = it.get('BODY[HEADER.FIELDS.NOT (X-EXTRA DATE)]')!.data!.toString();
    assert.ok(not.endsWith('Message-ID: <simple1@remote.test>\r\n\r\n'), not);
    assert.doesNotMatch(not, /X-Extra|continuation|^Date:/m);
    assert.match(not, /^Subject: simple one\r$/m);

    const rfc = await fetchOne(c, 'FETCH 1 (RFC822.HEADER RFC822.TEXT RFC822)');
    assert.deepEqual(rfc.get('RFC822.HEADER')!.data, header);
    assert.deepEqual(rfc.get('RFC822.TEXT')!.data, msg.subarray(header.length));
    assert.deepEqual(rfc.get('RFC822')!.data, msg);
  } finally {
    c.close();
  }
});

test('multipart: part numbers, MIME headers, nested message/rfc822, missing parts are empty, partials give the origin only', async () => {
  const c = await session({ examine: true });
  try {
    const it = await fetchOne(
      c,
      'FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[4.HEADER] BODY.PEEK[4.TEXT] BODY.PEEK[4.1] BODY.PEEK[9] BODY.PEEK[]<0.20> BODY.PEEK[1]<6.4> BODY.PEEK[1]<100.5> BODY.PEEK[4.HEADER.FIELDS (SUBJECT)])',
    );
    assert.equal(it.get('BODY[1]')!.data!.toString(), 'Hello part one.');
    assert.equal(it.get('BODY[1.MIME]')!.data!.toString(), 'Content-Type: text/plain; charset=utf-8\r\n\r\n');
    assert.equal(it.get('BODY[2]')!.data!.toString(), 'SGVsbG8gd29y\r\nbGQ=');
    assert.equal(it.get('BODY[4.HEADER]')!.data!.toString(), 'From: inner@example.test\r\nSubject: inner\r\n\r\n');
    assert.equal(it.get('BODY[4.TEXT]')!.data!.toString(), 'inner body');
    assert.equal(it.get('BODY[4.1]')!.data!.toString(), 'inner body');
    assert.equal(it.get('BODY[9]')!.raw, '{0}\r\n');
    assert.deepEqual(it.get('BODY[]<0>')!.data, stored[1]!.subarray(0, 20));
    assert.equal(it.get('BODY[1]<6>')!.data!.toString(), 'part');
    assert.equal(it.get('BODY[1]<100>')!.raw, '{0}\r\n');
    assert.equal(it.get('BODY[4.HEADER.FIELDS (SUBJECT)]')!.data!.toString(), 'Subject: inner\r\n\r\n');
  } finally {
    c.close();
  }
});

test('BODYSTRUCTURE and BODY of a multipart message; ENVELOPE', async () => {
  const c = await session({ examine: true });
  try {
    const it = await fetchOne(c, 'FETCH 2 (BODYSTRUCTURE BODY ENVELOPE)');
    const ix = await indexOf(2);
    const bs = it.get('BODYSTRUCTURE')!.raw;
    assert.equal(bs, formatBodyStructure(ix.root, { extended: true, utf8: false }));
    assert.ok(bs.startsWith('(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 15 1 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "base64" 18 2 NIL NIL NIL NIL)'), bs);
    assert.match(bs, /\("message" "rfc822" NIL NIL NIL "7bit" \d+ \(NIL "inner" \(\(NIL NIL "inner" "example\.test"\)\)/);
    assert.ok(bs.endsWith(' "mixed" ("boundary" "BOUND") NIL NIL NIL)'), bs);
    assert.equal(it.get('BODY')!.raw, formatBodyStructure(ix.root, { extended: false, utf8: false }));
    assert.ok(it.get('BODY')!.raw.endsWith(' "mixed")'));
    assert.equal(
      it.get('ENVELOPE')!.raw,
      '("Sat, 28 Nov 2026 05:00:00 +0000" "multipart test" (("Bob Example" NIL "bob" "example.test")) (("Bob Example" NIL "bob" "example.test")) (("Bob Example" NIL "bob" "example.test")) ((NIL NIL "alice" "example.test")("Carol" NIL "carol" "example.test")) ((NIL NIL "dave" "example.test")) NIL NIL "<mp1@example.test>")',
    );
  } finally {
    c.close();
  }
});

test('BINARY of a base64 part (decoded; ~{n} when it holds NUL), BINARY.SIZE, BINARY partial, NO [UNKNOWN-CTE]', async () => {
  const c = await session({ examine: true });
  try {
    const it = await fetchOne(c, 'FETCH 2 (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[3] BINARY.SIZE[3] BINARY.PEEK[2]<6.5> BINARY.PEEK[1])');
    assert.equal(it.get('BINARY[2]')!.raw, '{11}\r\nHello world');
    assert.equal(it.get('BINARY.SIZE[2]')!.raw, '11');
    assert.ok(it.get('BINARY[3]')!.raw.startsWith('~{7}\r\n'), it.get('BINARY[3]')!.raw);
    assert.deepEqual(it.get('BINARY[3]')!.data, Buffer.from([0, 1, 2, 3, 4, 5, 0xff]));
    assert.equal(it.get('BINARY.SIZE[3]')!.raw, '7');
    assert.equal(it.get('BINARY[2]<6>')!.data!.toString(), 'world');
    assert.equal(it.get('BINARY[1]')!.data!.toString(), 'Hello part one.');
    const r = await c.command('FETCH 2 (BINARY.PEEK[5])');
    assert.equal(r.status, 'NO');
    assert.match(r.text, /^\[UNKNOWN-CTE\]/);
    assert.equal((await c.command('FETCH 2 (BINARY.PEEK[1.MIME])')).status, 'BAD');
    assert.equal((await c.command('FETCH 2 (BINARY.SIZE[1]<0.2>)')).status, 'BAD');
  } finally {
    c.close();
  }
});

test('\\Seen: set by BODY[] (with FLAGS in the response), not by BODY.PEEK[] nor in a read-only mailbox', async () => {
  const ro = await session({ examine: true });
  try {
    const it = await fetchOne(ro, 'FETCH 3 (BODY[TEXT])');
    assert.equal(it.has('FLAGS'), false);
  } finally {
    ro.close();
  }
  const c = await session();
  try {
    const peek = await fetchOne(c, 'FETCH 5 (BODY.PEEK[] BINARY.PEEK[1])');
    assert.equal(peek.has('FLAGS'), false);
    assert.doesNotMatch((await fetchOne(c, 'FETCH 5 FLAGS')).get('FLAGS')!.raw, /\\Seen/);
    assert.doesNotMatch((await fetchOne(c, 'FETCH 3 FLAGS')).get('FLAGS')!.raw, /\\Seen/, 'EXAMINE did not set it');

    const it = await fetchOne(c, 'FETCH 3 (UID BODY[])');
    assert.deepEqual([...it.keys()], ['UID', 'BODY[]', 'FLAGS']);
    assert.match(it.get('FLAGS')!.raw, /\\Seen/);
    assert.deepEqual(it.get('BODY[]')!.data, stored[2]);
    // Already seen: no FLAGS the second time.
    assert.deepEqual([...(await fetchOne(c, 'FETCH 3 BODY[]')).keys()], ['BODY[]']);
    const rows = await inbox(t, 'alice@example.test');
    assert.ok(rows[2]!.flags.includes('\\Seen'), 'stored');
    assert.ok(!rows[4]!.flags.includes('\\Seen'));
    // NOOP reports nothing more for our own change.
    const noop = await c.command('NOOP');
    assert.deepEqual(noop.lines.filter((l) => /FETCH/.test(l)), []);
  } finally {
    c.close();
  }
});

test('UID FETCH: UID first, ranges, *, reversed ranges, UIDs that match nothing', async () => {
  const c = await session({ examine: true });
  try {
    const r = await raw(c, `UID FETCH ${uids[1]}:${uids[2]} FLAGS`);
    assert.equal(r.status, 'OK');
    assert.deepEqual(
      r.responses.map((b) => b.toString('latin1').replace(/FLAGS \([^)]*\)/, 'FLAGS')),
      [`* 2 FETCH (UID ${uids[1]} FLAGS)`, `* 3 FETCH (UID ${uids[2]} FLAGS)`],
    );
    const star = await raw(c, 'UID FETCH * (FLAGS UID)');
    assert.deepEqual(star.responses.map((b) => parseFetch(b).seq), [5]);
    assert.match(star.responses[0]!.toString(), new RegExp(`^\\* 5 FETCH \\(UID ${uids[4]} FLAGS`));
    const beyond = await raw(c, `UID FETCH ${uids[4]! + 100}:* UID`);
    assert.deepEqual(beyond.responses.map((b) => b.toString()), [`* 5 FETCH (UID ${uids[4]})`], 'n:* includes the last message');
    const none = await raw(c, `UID FETCH ${uids[4]! + 100}:${uids[4]! + 200} UID`);
    assert.equal(none.status, 'OK');
    assert.deepEqual(none.responses, []);
    const rev = await raw(c, `UID FETCH ${uids[3]}:${uids[1]},${uids[0]} UID`);
    assert.deepEqual(rev.responses.map((b) => parseFetch(b).seq), [1, 2, 3, 4]);
    const seq = await raw(c, 'FETCH 4:* UID');
    assert.deepEqual(seq.responses.map((b) => b.toString()), [`* 4 FETCH (UID ${uids[3]})`, `* 5 FETCH (UID ${uids[4]})`]);
  } finally {
    c.close();
  }
});

test('$ (RFC 5182 SEARCHRES): FETCH and UID FETCH of the saved SEARCH result', async () => {
  const c = await session({ examine: true });
  try {
    const none = await raw(c, 'FETCH $ UID');
    assert.equal(none.status, 'OK', none.text);
    assert.deepEqual(none.responses, [], 'nothing saved yet');
    const s = await c.command('SEARCH RETURN (SAVE) SUBJECT "multipart"');
    assert.equal(s.status, 'OK', s.text);
    assert.deepEqual((await raw(c, 'FETCH $ UID')).responses.map((b) => b.toString()), [`* 2 FETCH (UID ${uids[1]})`]);
    assert.deepEqual((await raw(c, 'UID FETCH $,1 FLAGS')).responses.map((b) => parseFetch(b).seq), [1, 2]);
  } finally {
    c.close();
  }
});

test('a 1 MB message streams whole and in partials', async () => {
  const c = await session({ examine: true });
  try {
    const big = stored[3]!;
    assert.ok(big.length > 1024 * 1024);
    const it = await fetchOne(c, 'FETCH 4 (RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT]<100000.300000> BODY.PEEK[]<1048000.100000>)');
    assert.equal(Number(it.get('RFC822.SIZE')!.raw), big.length);
    assert.deepEqual(it.get('BODY[]')!.data, big);
    const text = big.subarray(headerOf(big).length);
    assert.deepEqual(it.get('BODY[TEXT]<100000>')!.data, text.subarray(100000, 400000));
    assert.deepEqual(it.get('BODY[]<1048000>')!.data, big.subarray(1048000, 1148000));
  } finally {
    c.close();
  }
});

test('MODSEQ and CHANGEDSINCE (RFC 7162)', async () => {
  const c = await session({ examine: true });
  try {
    const rows = await inbox(t, 'alice@example.test');
    const it = await fetchOne(c, 'FETCH 1 (MODSEQ)');
    assert.equal(it.get('MODSEQ')!.raw, `(${rows[0]!.modseq})`);
    const top = Math.max(...rows.map((r) => r.modseq));
    const ch = await raw(c, `FETCH 1:* (UID) (CHANGEDSINCE ${top - 1})`);
    assert.equal(ch.status, 'OK', ch.text);
    assert.deepEqual(ch.responses.map((b) => b.toString()), rows.filter((r) => r.modseq > top - 1).map((r) => `* ${rows.indexOf(r) + 1} FETCH (UID ${r.uid} MODSEQ (${r.modseq}))`));
  } finally {
    c.close();
  }
});

test('errors: unknown item, bad section, bad partial, out-of-range sequence numbers → BAD; FETCH before SELECT → BAD', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    await c.login();
    assert.equal((await c.command('FETCH 1 FLAGS')).status, 'BAD');
    assert.equal((await c.command('UID FETCH 1 FLAGS')).status, 'BAD');
    assert.equal((await c.command('SELECT INBOX')).status, 'OK');
    for (const cmd of [
      'FETCH 1 (FLAGS BOGUS)',
      'FETCH 1 ()',
      'FETCH 1',
      'FETCH 1 BODY[BOGUS]',
      'FETCH 1 BODY[MIME]',
      'FETCH 1 BODY[HEADER.FIELDS]',
      'FETCH 1 BODY[0]',
      'FETCH 1 BODY[]<5>',
      'FETCH 1 BODY[]<0.0>',
      'FETCH 1 BODY.PEEK',
      'FETCH 6 FLAGS',
      'FETCH 1:9 FLAGS',
      'FETCH x FLAGS',
      'FETCH 1 FLAGS (BOGUS)',
      'FETCH 1 (FLAGS) (VANISHED)',
    ]) {
      const r = await c.command(cmd);
      assert.equal(r.status, 'BAD', `${cmd}: ${r.status} ${r.text}`);
      assert.deepEqual(r.lines, [], cmd);
    }
    assert.equal((await c.command('FETCH 1 FLAGS')).status, 'OK', 'still usable');
  } finally {
    c.close();
  }
});

test('FETCH in an empty mailbox: * is BAD, UID FETCH 1:* is an empty OK', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    await c.login('bob@example.test');
    assert.equal((await c.command('SELECT INBOX')).status, 'OK');
    assert.equal((await c.command('FETCH 1:* FLAGS')).status, 'BAD');
    const r = await c.command('UID FETCH 1:* FLAGS');
    assert.equal(r.status, 'OK');
    assert.deepEqual(r.lines, []);
  } finally {
    c.close();
  }
});

test('pipelined FETCHes are answered in order', async () => {
  const c = await session({ examine: true });
  try {
    c.write('P1 FETCH 1:5 (UID RFC822.SIZE)\r\nP2 FETCH 2 BODY.PEEK[1]\r\nP3 UID FETCH 1:* UID\r\n');
    const a = await c.read('P1');
    assert.equal(a.lines.length, 5);
    const b = await c.read('P2');
    assert.equal(b.status, 'OK');
    assert.match(b.lines[0]!, /Hello part one\.\)$/);
    const d = await c.read('P3');
    assert.equal(d.lines.length, 5);
  } finally {
    c.close();
  }
});

test('interop: python3 imaplib over IMAPS fetches (RFC822) byte for byte', async (ctx) => {
  const probe = spawnSync('python3', ['-c', 'import imaplib, ssl'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    console.log('# skipped: python3 with imaplib/ssl is not available');
    ctx.skip('python3 missing');
    return;
  }
  const script = `
import imaplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL('127.0.0.1', int(sys.argv[1]), ssl_context=ctx)
m.login('alice@example.test', 'secret')
typ, data = m.select('INBOX', readonly=True)
assert typ == 'OK', data
typ, data = m.fetch('2', '(RFC822)')
assert typ == 'OK', data
sys.stdout.buffer.write(data[0][1])
typ, data = m.uid('fetch', '1:*', '(FLAGS RFC822.SIZE)')
assert typ == 'OK' and len(data) == 5, data
m.logout()
`;
  const r = await new Promise<{ status: number | null; stdout: Buffer; stderr: string }>((resolve) => {
    import('node:child_process').then(({ spawn }) => {
      const p = spawn('python3', ['-c', script, String(t.imapsPort)]);
      const out: Buffer[] = [];
      let err = '';
      p.stdout.on('data', (d: Buffer) => out.push(d));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      p.on('close', (status) => resolve({ status, stdout: Buffer.concat(out), stderr: err }));
    });
  });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout, stored[1]);
});
