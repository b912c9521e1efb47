import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCommand } from '../../src/pop3/parser.ts';
import { LineReader } from '../../src/pop3/line-reader.ts';
import { DotStuffer } from '../../src/pop3/dot-stuffing.ts';
import { Pop3Error } from '../../src/pop3/errors.ts';

const parse = (s: string) => parseCommand(Buffer.from(s));
const fails = (s: string | Buffer, re: RegExp) =>
  assert.throws(() => parseCommand(Buffer.isBuffer(s) ? s : Buffer.from(s)), (e: unknown) => e instanceof Pop3Error && re.test(e.message), s.toString());

test('parser: keywords are case-insensitive, arguments typed, PASS keeps spaces', () => {
  assert.deepEqual(parse('stat'), { name: 'STAT' });
  assert.deepEqual(parse('List'), { name: 'LIST', msg: null });
  assert.deepEqual(parse('LIST 3'), { name: 'LIST', msg: 3 });
  assert.deepEqual(parse('uidl 12'), { name: 'UIDL', msg: 12 });
  assert.deepEqual(parse('TOP 2 0'), { name: 'TOP', msg: 2, lines: 0 });
  assert.deepEqual(parse('RETR 1'), { name: 'RETR', msg: 1 });
  assert.deepEqual(parse('USER alice@example.test'), { name: 'USER', user: 'alice@example.test' });
  assert.deepEqual(parse('PASS  two words '), { name: 'PASS', password: ' two words ' });
  assert.deepEqual(parse('USER jösé@example.test'), { name: 'USER', user: 'jösé@example.test' });
  assert.deepEqual(parse('AUTH'), { name: 'AUTH', mechanism: null, initial: null });
  assert.deepEqual(parse('AUTH plain AGEAYg=='), { name: 'AUTH', mechanism: 'PLAIN', initial: 'AGEAYg==' });
});

test('parser: bad syntax and unknown commands are errors with a clear text', () => {
  fails('FOO', /Unknown command/);
  fails('', /Unknown command/);
  fails('APOP alice 0123456789abcdef', /APOP is not supported/);
  fails('STAT 1', /takes no arguments/);
  fails('RETR', /Syntax: RETR msg/);
  fails('RETR x', /Invalid message number/);
  fails('RETR -1', /Invalid message number/);
  fails('RETR 99999999999', /Invalid message number/);
  fails('RETR 0', /No such message/);
  fails('TOP 1', /Syntax: TOP msg n/);
  fails('TOP 1 x', /Invalid line count/);
  fails('LIST 1 2', /Syntax/);
  fails('USER', /Syntax: USER/);
  fails('USER a b', /Syntax: USER/);
  fails('PASS', /Syntax: PASS/);
  fails('AUTH PLAIN a b', /Syntax: AUTH/);
  fails('NOOP\x00', /Invalid characters/);
  fails('USER a\x1b[2J', /Invalid characters/);
  fails(Buffer.from([0x55, 0x53, 0x45, 0x52, 0x20, 0xff, 0xfe]), /Invalid UTF-8/);
  // RETR 0 is a user error (no such message), not a syntax error: it does not count as a bad command
  assert.throws(() => parse('RETR 0'), (e: unknown) => e instanceof Pop3Error && !e.bad);
  assert.throws(() => parse('FOO'), (e: unknown) => e instanceof Pop3Error && e.bad);
});

test('line reader: CRLF and bare LF, lines split across chunks, too-long lines reported once and skipped', () => {
  const r = new LineReader(10);
  r.push(Buffer.from('NOOP\r\nST'));
  assert.deepEqual(r.next(), { kind: 'line', line: Buffer.from('NOOP') });
  assert.equal(r.next(), null);
  r.push(Buffer.from('AT\nQUIT\r'));
  assert.deepEqual(r.next(), { kind: 'line', line: Buffer.from('STAT') });
  assert.equal(r.next(), null);
  assert.equal(r.pending, 5);
  r.push(Buffer.from('\n'));
  assert.deepEqual(r.next(), { kind: 'line', line: Buffer.from('QUIT') });
  // a long line without LF: reported as soon as it crosses the limit, memory stays bounded
  r.push(Buffer.alloc(100, 0x41));
  assert.deepEqual(r.next(), { kind: 'too-long' });
  assert.equal(r.pending, 0);
  r.push(Buffer.alloc(1000, 0x41));
  assert.equal(r.next(), null);
  assert.equal(r.pending, 0);
  r.push(Buffer.from('AAAA\r\nNOOP\r\n'));
  assert.deepEqual(r.next(), { kind: 'line', line: Buffer.from('NOOP') });
  // a long line arriving whole
  r.push(Buffer.from('A'.repeat(20) + '\r\nSTAT\r\n'));
  assert.deepEqual(r.next(), { kind: 'too-long' });
  assert.deepEqual(r.next(), { kind: 'line', line: Buffer.from('STAT') });
});

/** What RFC 1939 says the client must receive, computed the slow, obvious way. */
function expected(msg: string, top: number | null): string {
  if (msg === '') return '.\r\n';
  const lines = msg.split(/\r?\n/);
  const endsWithNewline = /\n$/.test(msg);
  if (endsWithNewline) lines.pop();
  let out = lines;
  if (top !== null) {
    const blank = lines.indexOf('');
    if (blank >= 0) out = lines.slice(0, blank + 1 + top);
  }
  return out.map((l) => (l.startsWith('.') ? `.${l}` : l) + '\r\n').join('') + '.\r\n';
}

function run(msg: string, top: number | null, chunk: number): string {
  const d = new DotStuffer(top);
  const data = Buffer.from(msg, 'latin1');
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length && !d.done; i += chunk) parts.push(d.push(data.subarray(i, i + chunk)));
  parts.push(d.end());
  return Buffer.concat(parts).toString('latin1');
}

test('dot-stuffing: every line starting with "." gets one more, bare LF becomes CRLF, the end is added, whatever the chunking', () => {
  const messages = [
    'Subject: a\r\n\r\nbody\r\n',
    'Subject: a\r\n\r\n.\r\n..\r\n.x\r\nx.\r\n\r\n.',
    '.Header-like: x\r\nSubject: b\r\n\r\nline 1\nline 2\n.line 3\n',
    'Subject: no body',
    'Subject: c\r\n\r\nno final newline',
    'Subject: d\n\nbare\nlf\n\n.\n',
    '',
  ];
  for (const m of messages) {
    for (const chunk of [1, 2, 3, 7, 1000]) {
      assert.equal(run(m, null, chunk), expected(m, null), `${JSON.stringify(m)} in chunks of ${chunk}`);
    }
  }
  assert.equal(run('a\r\n.\r\n', null, 100), 'a\r\n..\r\n.\r\n');
});

test('TOP: the header, the empty line and exactly n body lines', () => {
  const m = 'From: x\r\nSubject: top\r\n\r\nb1\r\n.b2\r\n\r\nb4\r\nb5\r\n';
  for (const chunk of [1, 4, 1000]) {
    for (const n of [0, 1, 2, 3, 4, 5, 6, 100]) assert.equal(run(m, n, chunk), expected(m, n), `TOP ${n}, chunks of ${chunk}`);
  }
  assert.equal(run(m, 0, 1000), 'From: x\r\nSubject: top\r\n\r\n.\r\n');
  assert.equal(run(m, 2, 1000), 'From: x\r\nSubject: top\r\n\r\nb1\r\n..b2\r\n.\r\n');
  // bare LF messages and a message that is all header
  assert.equal(run('A: 1\n\nx\ny\n', 1, 3), 'A: 1\r\n\r\nx\r\n.\r\n');
  assert.equal(run('A: 1\r\nB: 2', 0, 1000), 'A: 1\r\nB: 2\r\n.\r\n');
  // "stops reading": done is set once the lines are out
  const d = new DotStuffer(1);
  d.push(Buffer.from('A: 1\r\n\r\nline\r\nmore'));
  assert.equal(d.done, true);
});
