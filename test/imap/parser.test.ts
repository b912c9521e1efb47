import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CommandReader,
  PRE_AUTH_LIMITS,
  authenticatedLimits,
  tokenText,
  type Command,
  type ReaderEvent,
  type ReaderLimits,
  type Token,
} from '../../src/imap/parser.ts';

const AUTH = authenticatedLimits(25 * 1024 * 1024);

/** Merge consecutive literal-data events so that chunking does not matter. */
function normalise(events: ReaderEvent[]): ReaderEvent[] {
  const out: ReaderEvent[] = [];
  for (const e of events) {
    const last = out[out.length - 1];
    if (e.kind === 'literal-data' && last?.kind === 'literal-data') out[out.length - 1] = { kind: 'literal-data', data: Buffer.concat([last.data, e.data]) };
    else if (e.kind === 'literal-data') out.push({ kind: 'literal-data', data: Buffer.from(e.data) });
    else out.push(e);
  }
  return out;
}

function feed(input: string | Buffer, opts: { limits?: ReaderLimits; cuts?: number[]; literalMinus?: boolean } = {}): ReaderEvent[] {
  const buf = typeof input === 'string' ? Buffer.from(input, 'latin1') : input;
  const r = new CommandReader({ limits: opts.limits ?? AUTH, literalMinus: opts.literalMinus });
  const events: ReaderEvent[] = [];
  let at = 0;
  for (const c of [...(opts.cuts ?? []), buf.length]) {
    r.push(buf.subarray(at, c));
    at = c;
    events.push(...r.drain());
  }
  return normalise(events);
}

function commands(events: ReaderEvent[]): Command[] {
  return events.flatMap((e) => (e.kind === 'command' ? [e.command] : []));
}

function one(input: string, limits: ReaderLimits = AUTH): Command {
  const cs = commands(feed(input, { limits }));
  assert.equal(cs.length, 1, input);
  return cs[0];
}

const atom = (value: string): Token => ({ kind: 'atom', value });
const num = (value: number): Token => ({ kind: 'number', value, text: String(value) });
const str = (value: string, literal = false): Token => ({ kind: 'string', value: Buffer.from(value, 'latin1'), literal });
const list = (...items: Token[]): Token => ({ kind: 'list', items });

test('LOGIN with quoted strings and atoms (RFC 9051 §6.2.3)', () => {
  assert.deepEqual(one('a001 LOGIN SMITH SESAME\r\n'), { tag: 'a001', name: 'LOGIN', args: [atom('SMITH'), atom('SESAME')] });
  assert.deepEqual(one('a001 login "smith" "se\\"sa\\\\me"\r\n'), {
    tag: 'a001',
    name: 'LOGIN',
    args: [str('smith'), str('se"sa\\me')],
  });
});

test('LOGIN with synchronizing literals: continuation first, bytes read only after it', () => {
  const r = new CommandReader({ limits: PRE_AUTH_LIMITS });
  r.push(Buffer.from('A1 LOGIN {5}\r\nfr\r\nd {6}\r\nsecret\r\n'));
  assert.deepEqual(r.next(), { kind: 'continue' });
  // Nothing past the announcing line has been consumed yet.
  assert.equal(r.pendingBytes, 'fr\r\nd {6}\r\nsecret\r\n'.length);
  assert.deepEqual(r.next(), { kind: 'continue' });
  const ev = r.next();
  assert.deepEqual(ev, { kind: 'command', command: { tag: 'A1', name: 'LOGIN', args: [str('fr\r\nd', true), str('secret', true)] } });
  assert.equal(r.next(), null);
});

test('LITERAL+ non-synchronizing literals get no continuation (RFC 7888)', () => {
  const events = feed('A1 LOGIN {3+}\r\nbob {4+}\r\npass\r\n');
  assert.deepEqual(events, [{ kind: 'command', command: { tag: 'A1', name: 'LOGIN', args: [str('bob', true), str('pass', true)] } }]);
});

test('literal8 ~{n} carries NUL bytes (RFC 3516)', () => {
  const c = one('A1 X ~{3}\r\na\0b\r\n');
  assert.deepEqual(c.args, [{ kind: 'string', value: Buffer.from('a\0b', 'latin1'), literal: true, binary: true }]);
});

test('FETCH with complex items: sections, header field lists, partials, BINARY', () => {
  const c = one('A654 FETCH 2:4 (FLAGS BODY.PEEK[HEADER.FIELDS (From To "Subject")]<0.100> BINARY[1.2] BINARY.SIZE[3] BODY[] BODY[1.2.MIME]<5> RFC822.SIZE)\r\n');
  assert.equal(c.name, 'FETCH');
  assert.deepEqual(c.args, [
    atom('2:4'),
    list(
      atom('FLAGS'),
      { kind: 'atom', value: 'BODY.PEEK', section: [atom('HEADER.FIELDS'), list(atom('From'), atom('To'), str('Subject'))], partial: { offset: 0, length: 100 } },
      { kind: 'atom', value: 'BINARY', section: [atom('1.2')] },
      { kind: 'atom', value: 'BINARY.SIZE', section: [num(3)] },
      { kind: 'atom', value: 'BODY', section: [] },
      { kind: 'atom', value: 'BODY', section: [atom('1.2.MIME')], partial: { offset: 5 } },
      atom('RFC822.SIZE'),
    ),
  ]);
  // A literal inside a section (header names are astrings).
  const d = one('A1 FETCH 1 BODY[HEADER.FIELDS ({4}\r\nFrom)]\r\n');
  assert.deepEqual(d.args[1], { kind: 'atom', value: 'BODY', section: [atom('HEADER.FIELDS'), list(str('From', true))] });
  // "[" after other atoms is an ordinary atom character (e.g. mailbox [Gmail]/Sent).
  assert.deepEqual(one('A1 SELECT [Gmail]/Sent\r\n').args, [atom('[Gmail]/Sent')]);
  assert.deepEqual(one('A1 SELECT foo[bar]\r\n').args, [atom('foo[bar]')]);
});

test('FETCH syntax errors in sections are BAD', () => {
  for (const bad of ['A1 FETCH 1 BODY[HEADER\r\n', 'A1 FETCH 1 BODY[]<x>\r\n', 'A1 FETCH 1 BODY[]<1.>\r\n', 'A1 FETCH 1 (BODY[1)]\r\n', 'A1 FETCH 1 BODY[]x\r\n']) {
    const ev = feed(bad);
    assert.equal(ev.length, 1, bad);
    assert.equal(ev[0].kind, 'bad', bad);
    assert.equal((ev[0] as { tag: string }).tag, 'A1');
  }
});

test('SEARCH with nested lists and literals', () => {
  const c = one('A282 SEARCH CHARSET UTF-8 (OR SUBJECT {5}\r\nf\xc3\xb6\xc3\xb6 FROM "Smith") NOT (SEEN (DELETED)) UID 1:*,$ LARGER 1024\r\n');
  assert.deepEqual(c.args, [
    atom('CHARSET'),
    atom('UTF-8'),
    list(atom('OR'), atom('SUBJECT'), str('f\xc3\xb6\xc3\xb6', true), atom('FROM'), str('Smith')),
    atom('NOT'),
    list(atom('SEEN'), list(atom('DELETED'))),
    atom('UID'),
    atom('1:*,$'),
    atom('LARGER'),
    num(1024),
  ]);
  assert.equal(tokenText(c.args[2].kind === 'list' ? c.args[2].items[2] : undefined), 'föö');
});

test('STORE and UID commands', () => {
  assert.deepEqual(one('A003 STORE 2:4 +FLAGS.SILENT (\\Deleted \\Seen $Forwarded)\r\n'), {
    tag: 'A003',
    name: 'STORE',
    args: [atom('2:4'), atom('+FLAGS.SILENT'), list(atom('\\Deleted'), atom('\\Seen'), atom('$Forwarded'))],
  });
  assert.equal(one('A999 uid fetch 4827313:4828442 FLAGS\r\n').name, 'UID FETCH');
  assert.equal(one('A1 UID STORE 1 (UNCHANGEDSINCE 12345678901234) FLAGS ()\r\n').name, 'UID STORE');
  assert.deepEqual(one('A1 UID EXPUNGE 3000:3002\r\n'), { tag: 'A1', name: 'UID EXPUNGE', args: [atom('3000:3002')] });
  assert.deepEqual(one('A1 UID MOVE 42 "Trash"\r\n').args, [num(42), str('Trash')]);
  assert.deepEqual(one('A1 STORE 1 FLAGS ()\r\n').args[2], list());
  for (const bad of ['A1 UID\r\n', 'A1 UID \r\n', 'A1 UID (FETCH)\r\n']) assert.equal(feed(bad)[0].kind, 'bad', bad);
});

test('APPEND: flags, date and the message literal as a stream', () => {
  const msg = 'Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nSubject: hi\r\n\r\nA2 LOGOUT\r\n';
  const events = feed(`A003 APPEND saved-messages (\\Seen) "07-Feb-1994 21:52:25 -0800" {${msg.length}}\r\n${msg}\r\nA004 NOOP\r\n`);
  const args = [atom('saved-messages'), list(atom('\\Seen')), str('07-Feb-1994 21:52:25 -0800')];
  assert.deepEqual(events, [
    { kind: 'continue' },
    { kind: 'literal-start', tag: 'A003', name: 'APPEND', index: 0, size: msg.length, binary: false, args },
    { kind: 'literal-data', data: Buffer.from(msg, 'latin1') },
    { kind: 'literal-end', index: 0 },
    { kind: 'command', command: { tag: 'A003', name: 'APPEND', args: [...args, { kind: 'stream', index: 0, size: msg.length, binary: false }] } },
    { kind: 'command', command: { tag: 'A004', name: 'NOOP', args: [] } },
  ]);
});

test('APPEND: MULTIAPPEND, UTF8 literal8, CATENATE TEXT; mailbox literal is buffered', () => {
  const ev = feed('A1 APPEND {5+}\r\nINBOX {2+}\r\nab (\\Seen) {3+}\r\ncde\r\n');
  assert.deepEqual(
    ev.filter((e) => e.kind !== 'literal-data'),
    [
      { kind: 'literal-start', tag: 'A1', name: 'APPEND', index: 0, size: 2, binary: false, args: [str('INBOX', true)] },
      { kind: 'literal-end', index: 0 },
      {
        kind: 'literal-start',
        tag: 'A1',
        name: 'APPEND',
        index: 1,
        size: 3,
        binary: false,
        args: [str('INBOX', true), { kind: 'stream', index: 0, size: 2, binary: false }, list(atom('\\Seen'))],
      },
      { kind: 'literal-end', index: 1 },
      {
        kind: 'command',
        command: {
          tag: 'A1',
          name: 'APPEND',
          args: [str('INBOX', true), { kind: 'stream', index: 0, size: 2, binary: false }, list(atom('\\Seen')), { kind: 'stream', index: 1, size: 3, binary: false }],
        },
      },
    ],
  );
  const utf8 = feed('A2 APPEND INBOX UTF8 (~{3+}\r\na\0b)\r\n');
  assert.deepEqual(utf8[1], { kind: 'literal-data', data: Buffer.from('a\0b', 'latin1') });
  assert.equal(utf8[0].kind === 'literal-start' && utf8[0].binary, true);
  const cat = feed('A3 APPEND Drafts CATENATE (URL "/Drafts;UIDVALIDITY=1/;UID=2" TEXT {4+}\r\nbody)\r\n');
  assert.deepEqual(cat.map((e) => e.kind), ['literal-start', 'literal-data', 'literal-end', 'command']);
});

test('split at every byte position and byte by byte: same events', () => {
  const inputs = [
    'A1 LOGIN {5}\r\nfr\r\nd "pa\\"ss"\r\nA2 SELECT INBOX\r\n',
    'A3 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100> BINARY[1.2])\r\nA4 UID STORE 1 +FLAGS (\\Seen)\r\n',
    'A5 APPEND INBOX (\\Seen) {11+}\r\nhello\r\nworld\r\nA6 SEARCH (OR SUBJECT {3}\r\nfoo NOT SEEN) ~{2}\r\n\0\0\r\n',
    '\r\nbad tag\r\n+ X\r\nA7 NOOP \r\nA8 X "unterminated\r\nA9 LOGOUT\r\n',
  ];
  for (const input of inputs) {
    const whole = feed(input);
    const buf = Buffer.from(input, 'latin1');
    for (let cut = 0; cut <= buf.length; cut++) assert.deepEqual(feed(buf, { cuts: [cut] }), whole, `cut at ${cut} of ${JSON.stringify(input)}`);
    const bytes = Array.from({ length: buf.length }, (_, i) => i);
    assert.deepEqual(feed(buf, { cuts: bytes }), whole, 'byte by byte');
  }
});

test('tags and garbage: * BAD for bad tags, tagged BAD for bad commands, empty lines ignored', () => {
  assert.deepEqual(feed('\r\n\r\n'), []);
  for (const line of ['+ NOOP', '* NOOP', '"a" NOOP', '(a) NOOP', 'a{ NOOP', ' NOOP', '\x01 NOOP', 'a% NOOP', 'a\\b NOOP', '\xff NOOP']) {
    assert.deepEqual(feed(line + '\r\n'), [{ kind: 'bad', tag: null, text: 'Invalid tag' }], line);
  }
  assert.equal(one('a]b NOOP\r\n').tag, 'a]b'); // resp-specials are ASTRING-CHARs
  assert.deepEqual(feed('A1\r\n'), [{ kind: 'bad', tag: 'A1', text: 'Missing command name' }]);
  assert.deepEqual(feed('A1  NOOP\r\n'), [{ kind: 'bad', tag: 'A1', text: 'Missing command name' }]);
  for (const line of ['A1 NOOP ', 'A1 X (a', 'A1 X a)', 'A1 X ( a)', 'A1 X a  b', 'A1 X "a\\x"', 'A1 X a\rb', 'A1 X \xe9', 'A1 X a"b"', 'A1 X {3}x', 'A1 X {']) {
    const ev = feed(line + '\r\n');
    assert.equal(ev.length, 1, line);
    assert.equal(ev[0].kind, 'bad', line);
    assert.equal((ev[0] as { tag: string | null }).tag, 'A1', line);
  }
  // Bare LF ends a line too (as in Dovecot).
  assert.deepEqual(one('A1 NOOP\n'), { tag: 'A1', name: 'NOOP', args: [] });
});

test('numbers, NIL, UTF-8 quoted strings, deep nesting', () => {
  assert.deepEqual(one('A1 X 0 007 9007199254740991 9007199254740992 nil NIL "NIL"\r\n').args, [
    num(0),
    { kind: 'number', value: 7, text: '007' },
    num(9007199254740991),
    atom('9007199254740992'),
    { kind: 'nil', text: 'nil' },
    { kind: 'nil', text: 'NIL' },
    str('NIL'),
  ]);
  assert.equal(tokenText(one('A1 CREATE "Entw\xc3\xbcrfe"\r\n').args[0]), 'Entwürfe');
  assert.equal(one('A1 X ' + '('.repeat(64) + ')'.repeat(64) + '\r\n').args.length, 1);
  assert.deepEqual(feed('A1 X ' + '('.repeat(65) + ')'.repeat(65) + '\r\n'), [{ kind: 'bad', tag: 'A1', text: 'Too deeply nested' }]);
});

test('limits: 64 KiB command line → BAD [TOOBIG], drained without buffering, then resync', () => {
  const r = new CommandReader({ limits: AUTH });
  r.push(Buffer.from('A1 SEARCH TEXT '));
  const junk = Buffer.alloc(1024 * 1024, 0x61);
  let peak = 0;
  for (let i = 0; i < 10; i++) {
    r.push(junk);
    assert.equal(r.next(), null);
    peak = Math.max(peak, r.retainedBytes);
  }
  assert.ok(peak <= 64 * 1024 + 256, `retained ${peak}`);
  r.push(Buffer.from('\r\nA2 NOOP\r\n'));
  assert.deepEqual(r.drain(), [
    { kind: 'bad', tag: 'A1', code: 'TOOBIG', text: 'Command line too long' },
    { kind: 'command', command: { tag: 'A2', name: 'NOOP', args: [] } },
  ]);
  assert.equal(r.retainedBytes, 0);
  // Exactly at the limit is fine; the limit counts all lines of one command.
  const head = 'A3 X ';
  const ok = head + 'a'.repeat(64 * 1024 - head.length - 1) + '\r\n';
  assert.equal(commands(feed(ok)).length, 1);
  assert.equal(feed(head + 'a'.repeat(64 * 1024) + '\r\n')[0].kind, 'bad');
  assert.equal(feed(`A4 X {1+}\r\nx ${'a'.repeat(64 * 1024)}\r\n`)[0].kind, 'bad');
});

test('limits: an over-long line ending in a non-synchronizing literal skips that literal (no smuggling)', () => {
  const events = feed(`A1 X ${'a'.repeat(70000)} {15+}\r\nA2 DELETE INBOX\r\nA3 NOOP\r\n`);
  assert.deepEqual(events, [
    { kind: 'bad', tag: 'A1', code: 'TOOBIG', text: 'Command line too long' },
    { kind: 'command', command: { tag: 'A3', name: 'NOOP', args: [] } },
  ]);
  // Synchronizing: the client waits for "+" which never comes; the next line is a new command.
  const sync = feed(`A1 X ${'a'.repeat(70000)} {15}\r\nA2 NOOP\r\n`);
  assert.deepEqual(commands(sync), [{ tag: 'A2', name: 'NOOP', args: [] }]);
});

test('limits before login: no continuation above 8 KiB, fatal for a non-sync literal above it', () => {
  const sync = feed('A1 LOGIN {8193}\r\nA2 CAPABILITY\r\n', { limits: PRE_AUTH_LIMITS });
  assert.deepEqual(sync, [
    { kind: 'bad', tag: 'A1', code: 'TOOBIG', text: 'Literal too big' },
    { kind: 'command', command: { tag: 'A2', name: 'CAPABILITY', args: [] } },
  ]);
  assert.equal(feed(`A1 LOGIN {8192}\r\n${'x'.repeat(8192)} p\r\n`, { limits: PRE_AUTH_LIMITS })[0].kind, 'continue');
  const r = new CommandReader({ limits: PRE_AUTH_LIMITS });
  r.push(Buffer.from('A1 LOGIN {8193+}\r\nxxxx'));
  assert.deepEqual(r.drain(), [{ kind: 'fatal', tag: 'A1', text: 'Literal too big before authentication' }]);
  assert.ok(r.isClosed);
  r.push(Buffer.from('A2 NOOP\r\n'));
  assert.deepEqual(r.drain(), []);
  assert.equal(r.retainedBytes + r.pendingBytes, 0);
  // Even inside a command that is already BAD.
  assert.equal(feed('A1 LOGIN ( {9000+}\r\n', { limits: PRE_AUTH_LIMITS })[0].kind, 'fatal');
});

test('limits after login: 100 KiB ordinary literals, per-command total, APPEND limit', () => {
  const lim = authenticatedLimits(1000);
  assert.deepEqual(feed('A1 SEARCH TEXT {102401}\r\nA2 NOOP\r\n', { limits: lim }), [
    { kind: 'bad', tag: 'A1', code: 'TOOBIG', text: 'Literal too big' },
    { kind: 'command', command: { tag: 'A2', name: 'NOOP', args: [] } },
  ]);
  // Non-sync over the limit: skipped (the payload is data, not commands), then BAD.
  const payload = 'A9 DELETE INBOX\r\n'.repeat(7000);
  assert.deepEqual(feed(`A1 SEARCH TEXT {${payload.length}+}\r\n${payload} ALL\r\nA2 NOOP\r\n`, { limits: lim }), [
    { kind: 'bad', tag: 'A1', code: 'TOOBIG', text: 'Literal too big' },
    { kind: 'command', command: { tag: 'A2', name: 'NOOP', args: [] } },
  ]);
  // Many literals each under the cap still hit the per-command total (1 MiB).
  const chunk = 'x'.repeat(100 * 1024);
  let many = 'A1 X';
  for (let i = 0; i < 11; i++) many += ` {${chunk.length}+}\r\n${chunk}`;
  assert.deepEqual(feed(many + '\r\n', { limits: lim }).map((e) => e.kind), ['bad']);
  // APPEND above APPENDLIMIT: NO [TOOBIG] without continuation; non-sync skipped.
  assert.deepEqual(feed('A1 APPEND INBOX {1001}\r\nA2 NOOP\r\n', { limits: lim }), [
    { kind: 'no', tag: 'A1', code: 'TOOBIG', text: 'Message too big' },
    { kind: 'command', command: { tag: 'A2', name: 'NOOP', args: [] } },
  ]);
  assert.deepEqual(feed(`A1 APPEND INBOX {1001+}\r\n${'A2 LOGOUT\r\n'.repeat(91)}\r\nA3 NOOP\r\n`.replace(/(\r\n)\r\nA3/, 'x$1A3'), { limits: lim }).map((e) => e.kind), [
    'no',
    'command',
  ]);
});

test('limits: LITERAL- caps non-synchronizing literals at 4096 bytes', () => {
  const big = 'y'.repeat(4097);
  assert.deepEqual(feed(`A1 X {4097+}\r\n${big}\r\nA2 NOOP\r\n`, { literalMinus: true }), [
    { kind: 'bad', tag: 'A1', code: 'TOOBIG', text: 'Non-synchronizing literal too big (LITERAL-)' },
    { kind: 'command', command: { tag: 'A2', name: 'NOOP', args: [] } },
  ]);
  assert.equal(commands(feed(`A1 X {4096+}\r\n${'y'.repeat(4096)}\r\n`, { literalMinus: true })).length, 1);
  assert.equal(feed(`A1 X {4097}\r\n${big}\r\n`, { literalMinus: true })[0].kind, 'continue');
});

test('memory stays bounded while 1 GiB streams through (APPEND and skipped literal)', () => {
  const GiB = 1024 * 1024 * 1024;
  const chunk = Buffer.alloc(4 * 1024 * 1024, 0x41);
  for (const [limit, expectData] of [[2 * GiB, true], [1000, false]] as const) {
    const r = new CommandReader({ limits: authenticatedLimits(limit) });
    r.push(Buffer.from(`A1 APPEND INBOX {${GiB}+}\r\n`));
    let data = 0;
    let peak = 0;
    const kinds = new Set<string>();
    for (let sent = 0; sent < GiB; sent += chunk.length) {
      r.push(chunk);
      for (let e = r.next(); e; e = r.next()) {
        kinds.add(e.kind);
        if (e.kind === 'literal-data') data += e.data.length;
      }
      peak = Math.max(peak, r.retainedBytes + r.pendingBytes);
    }
    r.push(Buffer.from('\r\n'));
    const last = r.drain();
    assert.ok(peak < 4096, `peak ${peak}`);
    assert.equal(data, expectData ? GiB : 0);
    assert.equal(last[last.length - 1].kind, expectData ? 'command' : 'no');
  }
});

test('smuggling: literal contents are data, never commands', () => {
  const payload = 'x\r\nA1 LOGOUT\r\n';
  const c = one(`A0 LOGIN {${payload.length}+}\r\n${payload} {${payload.length}}\r\n${payload}\r\n`);
  assert.deepEqual(c.args, [str(payload, true), str(payload, true)]);
  const ap = feed(`A0 APPEND INBOX {${payload.length}+}\r\n${payload}\r\n`);
  assert.deepEqual(commands(ap).map((x) => x.name), ['APPEND']);
  // Literal bytes containing a literal announcement are not re-framed.
  const inner = 'a {5+}\r\n';
  assert.deepEqual(one(`A0 X {${inner.length}+}\r\n${inner} b\r\n`).args, [str(inner, true), atom('b')]);
  // A quoted string cannot contain CR/LF: the line ends and the command is BAD.
  assert.deepEqual(feed('A0 LOGIN "a\r\nA1 LOGOUT\r\n').map((e) => e.kind), ['bad', 'command']);
});

test('setLimits between pipelined commands applies to the next command', () => {
  const r = new CommandReader({ limits: PRE_AUTH_LIMITS });
  r.push(Buffer.from(`A1 LOGIN u p\r\nA2 SEARCH TEXT {9000+}\r\n${'z'.repeat(9000)}\r\n`));
  const first = r.next();
  assert.equal(first?.kind, 'command');
  r.setLimits(AUTH);
  const second = r.next();
  assert.equal(second?.kind, 'command');
});
