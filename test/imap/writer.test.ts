import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  astring,
  canQuote,
  continuation,
  formatCommand,
  line,
  literal,
  nstring,
  quoted,
  readerErrorResponse,
  status,
  string,
  untagged,
  wire,
} from '../../src/imap/writer.ts';
import { CommandReader, authenticatedLimits } from '../../src/imap/parser.ts';

const s = (b: Buffer | null) => (b === null ? null : b.toString('latin1'));

test('quoted: escapes, and null where a quoted string is impossible', () => {
  assert.equal(s(quoted('hello world')), '"hello world"');
  assert.equal(s(quoted('a"b\\c')), '"a\\"b\\\\c"');
  assert.equal(s(quoted('')), '""');
  assert.equal(quoted('a\r\nb'), null);
  assert.equal(quoted('a\0b'), null);
  assert.equal(quoted('Entwürfe'), null); // 8-bit without UTF8=ACCEPT / IMAP4rev2
  assert.equal(s(quoted('Entwürfe', { utf8: true })), Buffer.from('"Entwürfe"').toString('latin1'));
  assert.equal(quoted(Buffer.from([0x22, 0xff]), { utf8: true }), null); // not UTF-8
  assert.equal(quoted('x'.repeat(2000)), null); // long → literal
  assert.ok(canQuote('x'.repeat(1024)));
});

test('string / astring / nstring choose atom, quoted or literal', () => {
  assert.equal(s(string('INBOX')), '"INBOX"');
  assert.equal(s(string('a"b')), '{3}\r\na"b');
  assert.equal(s(string('a\\b')), '{3}\r\na\\b');
  assert.equal(s(string('line1\r\nline2')), '{12}\r\nline1\r\nline2');
  assert.equal(s(string('Entwürfe')), Buffer.from('{9}\r\nEntwürfe').toString('latin1'));
  assert.equal(s(string('Entwürfe', { utf8: true })), Buffer.from('"Entwürfe"').toString('latin1'));
  assert.equal(s(string(Buffer.from('a\0b', 'latin1'))), '~{3}\r\na\0b');
  assert.equal(s(astring('INBOX')), 'INBOX');
  assert.equal(s(astring('[Gmail]/Sent')), '[Gmail]/Sent');
  assert.equal(s(astring('Sent Items')), '"Sent Items"');
  assert.equal(s(astring('NIL')), '"NIL"');
  assert.equal(s(astring('')), '""');
  assert.equal(s(astring('a%b')), '"a%b"');
  assert.equal(s(nstring(null)), 'NIL');
  assert.equal(s(nstring(undefined)), 'NIL');
  assert.equal(s(nstring('x')), '"x"');
  assert.equal(s(literal('ab', { nonSync: true })), '{2+}\r\nab');
  assert.equal(s(literal(Buffer.from([0]), { binary: true })), '~{1}\r\n\0');
});

test('response lines: lists, NIL, numbers, CRLF, no injection', () => {
  assert.equal(
    s(untagged([12, 'FETCH', ['FLAGS', ['\\Seen'], 'UID', 4827313n, 'BODY[HEADER]', { nstring: null }, 'ENVELOPE', [{ string: 'subj' }, null]]])),
    '* 12 FETCH (FLAGS (\\Seen) UID 4827313 BODY[HEADER] NIL ENVELOPE ("subj" NIL))\r\n',
  );
  assert.equal(s(line(['*', 'LIST', ['\\HasNoChildren'], { string: '/' }, { astring: 'Sent Items' }])), '* LIST (\\HasNoChildren) "/" "Sent Items"\r\n');
  assert.equal(s(line(['*', 'OK', 'a\r\nA1 OK injected'])), '* OK a  A1 OK injected\r\n');
  assert.equal(s(status('A1', 'OK', 'LOGIN completed')), 'A1 OK LOGIN completed\r\n');
  assert.equal(s(status('A2', 'NO', 'Too big', 'TOOBIG')), 'A2 NO [TOOBIG] Too big\r\n');
  assert.equal(s(status(null, 'BYE', 'bye\r\n* evil')), '* BYE bye  * evil\r\n');
  assert.equal(s(continuation()), '+ Ready\r\n');
  assert.equal(s(readerErrorResponse({ kind: 'bad', tag: 'A1', code: 'TOOBIG', text: 'Command line too long' })), 'A1 BAD [TOOBIG] Command line too long\r\n');
  assert.equal(s(readerErrorResponse({ kind: 'bad', tag: null, text: 'Invalid tag' })), '* BAD Invalid tag\r\n');
  assert.equal(s(readerErrorResponse({ kind: 'fatal', tag: 'A1', text: 'Literal too big' })), '* BYE Literal too big\r\n');
  assert.equal(readerErrorResponse({ kind: 'continue' }), null);
  assert.equal(s(wire({ literal: 'abc' })), '{3}\r\nabc');
});

test('formatCommand of parsed tokens reproduces the command', () => {
  const input = 'A1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From "To")]<0.100> BINARY[1.2]) "a\\"b" NIL 007 {4}\r\nx\r\ny ~{1}\r\n\0\r\n';
  const r = new CommandReader({ limits: authenticatedLimits(100) });
  r.push(Buffer.from(input, 'latin1'));
  const ev = r.drain().filter((e) => e.kind === 'command');
  assert.equal(ev.length, 1);
  if (ev[0].kind !== 'command') return;
  const { tag, name, args } = ev[0].command;
  assert.equal(formatCommand(tag, name, args).toString('latin1'), input);
});

test('property: string() output reads back as the same bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 60 }), fc.boolean(), (bytes, utf8) => {
      const value = Buffer.from(bytes);
      const r = new CommandReader({ limits: authenticatedLimits(100) });
      r.push(Buffer.concat([Buffer.from('A1 X '), string(value, { utf8 }), Buffer.from('\r\n')]));
      const ev = r.drain().filter((e) => e.kind !== 'continue');
      assert.equal(ev.length, 1);
      assert.ok(ev[0].kind === 'command' && ev[0].command.args[0].kind === 'string');
      assert.deepEqual((ev[0].command.args[0] as { value: Buffer }).value, value);
    }),
    { numRuns: 5000 },
  );
});
