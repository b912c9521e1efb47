import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CommandReader, authenticatedLimits, type ReaderEvent, type ReaderLimits, type Token } from '../../src/imap/parser.ts';
import { formatCommand } from '../../src/imap/writer.ts';

/** Small limits so that fuzz inputs hit them often. */
const SMALL: ReaderLimits = { line: 200, literal: 40, append: 60, command: 300, preAuth: false };
const SMALL_PRE: ReaderLimits = { ...SMALL, preAuth: true };
const SLACK = 128;

/**
 * Feed `input` in the given pieces, draining after each; check the invariants:
 * no exception, every event well-formed, all input consumed (no hang), memory bounded.
 */
function run(input: Uint8Array, cuts: number[], limits: ReaderLimits, literalMinus = false): ReaderEvent[] {
  const r = new CommandReader({ limits, literalMinus });
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const events: ReaderEvent[] = [];
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  let at = 0;
  for (const c of [...points, buf.length]) {
    r.push(buf.subarray(at, c));
    at = c;
    let guard = 0;
    for (let e = r.next(); e; e = r.next()) {
      events.push(e);
      if (++guard > 10 * (buf.length + 10)) assert.fail('too many events: hang?');
    }
    assert.ok(r.retainedBytes <= limits.line + limits.command + SLACK, `retained ${r.retainedBytes}`);
    assert.equal(r.pendingBytes, 0);
  }
  for (const e of events) {
    if (e.kind === 'bad' || e.kind === 'no' || e.kind === 'fatal') assert.equal(typeof e.text, 'string');
    if (e.kind === 'command') assert.ok(e.command.tag.length > 0 && /^[A-Z]/.test(e.command.name));
  }
  return events;
}

function merged(events: ReaderEvent[]): unknown[] {
  const out: unknown[] = [];
  for (const e of events) {
    const last = out[out.length - 1] as ReaderEvent | undefined;
    if (e.kind === 'literal-data' && last && last.kind === 'literal-data') last.data = Buffer.concat([last.data, e.data]);
    else out.push(e.kind === 'literal-data' ? { kind: 'literal-data', data: Buffer.from(e.data) } : e);
  }
  return out;
}

const SOUP = [
  '(', ')', '[', ']', '{', '}', '<', '>', '.', '"', '\\', ' ', ' ', ' ', '\r\n', '\r\n', '\n', '\r', '\0', '\xff', '~',
  '{3}\r\n', '{2+}\r\n', '~{1}\r\n', '{0}\r\n', '{50}\r\n', '{70+}\r\n', '{99999999999999999999+}\r\n',
  'A1 ', 'a2 ', '* ', '+ ', 'NIL', 'nil', '123', '0', '1:*', '$', '<0.5>', '<1>', 'BODY[', 'BODY.PEEK[', 'BINARY[',
  'HEADER.FIELDS', 'APPEND ', 'UID ', 'FETCH ', 'LOGIN ', 'SEARCH ', 'UTF8 (', 'CATENATE (TEXT ', '\\Seen', 'INBOX', 'x'.repeat(90),
];

const soupArb = fc.array(fc.constantFrom(...SOUP), { maxLength: 40, size: 'max' }).map((parts) => new Uint8Array(Buffer.from(parts.join(''), 'latin1')));
const cutsArb = fc.array(fc.nat(400), { maxLength: 6, size: 'max' });
/** Uniform random bytes, and bytes drawn from the characters that matter to the grammar. */
const bytesArb = fc.oneof(
  fc.uint8Array({ maxLength: 300, size: 'max' }),
  fc
    .array(fc.constantFrom(...Buffer.from('A1 ()[]{}<>"\\+~*%0123456789.\r\n\r\n\r\n\0\xff', 'latin1')), { maxLength: 300, size: 'max' })
    .map((a) => new Uint8Array(a)),
);

test('fuzz: random bytes never throw, never hang, stay bounded', () => {
  fc.assert(
    fc.property(bytesArb, cutsArb, fc.boolean(), fc.boolean(), (input, cuts, pre, minus) => {
      run(input, cuts, pre ? SMALL_PRE : SMALL, minus);
    }),
    { numRuns: 40_000 },
  );
});

test('fuzz: token soup (braces, brackets, quotes, CRLF, literals) — chunking never changes the events', () => {
  fc.assert(
    fc.property(soupArb, cutsArb, fc.boolean(), (input, cuts, pre) => {
      const limits = pre ? SMALL_PRE : SMALL;
      const whole = merged(run(input, [], limits));
      const split = merged(run(input, cuts, limits));
      assert.deepEqual(split, whole);
    }),
    { numRuns: 40_000 },
  );
});

// Round trip: a random command formatted by the writer parses back to the same tokens.
const WORD = 'abcXYZ019-_.:*%$\\!#&\'+,/;<=>?@^`|~'.split('');
const atomArb: fc.Arbitrary<Token> = fc
  .array(fc.constantFrom(...WORD), { minLength: 1, maxLength: 8 })
  .map((cs) => cs.join(''))
  .filter((s) => !/^[0-9]+$/.test(s) && s.toUpperCase() !== 'NIL')
  .map((value) => ({ kind: 'atom', value }));
const numberArb: fc.Arbitrary<Token> = fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)).map((n) => ({ kind: 'number', value: n, text: String(n) }));
const quotedArb: fc.Arbitrary<Token> = fc.string({ maxLength: 20 }).map((s) => ({
  kind: 'string',
  value: Buffer.from(s.replace(/[\r\n\0]/g, ''), 'utf8'),
  literal: false,
}));
const literalArb: fc.Arbitrary<Token> = fc
  .tuple(fc.uint8Array({ maxLength: 30 }), fc.boolean())
  .map(([b, binary]) => (binary ? { kind: 'string', value: Buffer.from(b), literal: true, binary: true } : { kind: 'string', value: Buffer.from(b), literal: true }));
const leafArb: fc.Arbitrary<Token> = fc.oneof(atomArb, numberArb, quotedArb, literalArb, fc.constant<Token>({ kind: 'nil', text: 'NIL' }));
const sectionArb: fc.Arbitrary<Token> = fc
  .tuple(
    fc.constantFrom('BODY', 'BODY.PEEK', 'BINARY', 'binary.peek', 'BINARY.SIZE'),
    fc.array(fc.oneof(atomArb, numberArb, fc.array(fc.oneof(atomArb, quotedArb, literalArb), { maxLength: 3 }).map((items): Token => ({ kind: 'list', items }))), { maxLength: 2 }),
    fc.option(fc.tuple(fc.nat(), fc.option(fc.nat(), { nil: undefined })), { nil: undefined }),
  )
  .map(([value, section, p]) => {
    const t: Token = { kind: 'atom', value, section };
    if (p) t.partial = p[1] === undefined ? { offset: p[0] } : { offset: p[0], length: p[1] };
    return t;
  });
const { tree } = fc.letrec<{ tree: Token }>((tie) => ({
  tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leafArb, sectionArb, fc.array(tie('tree'), { maxLength: 4 }).map((items): Token => ({ kind: 'list', items }))),
}));
const commandArb = fc
  .record({
  tag: fc.array(fc.constantFrom(...'Aa019.-]!#'.split('')), { minLength: 1, maxLength: 6 }).map((c) => c.join('')),
  name: fc.constantFrom('FETCH', 'UID FETCH', 'SEARCH', 'STORE', 'LOGIN', 'X-FOO', 'ID'),
  args: fc.array(tree, { maxLength: 5 }),
  })
  .map((c) => ({ tag: c.tag, name: c.name, args: c.args }));

test('fuzz: writer → parser round trip gives the same command', () => {
  fc.assert(
    fc.property(commandArb, fc.boolean(), cutsArb, (cmd, nonSync, cuts) => {
      const wire = formatCommand(cmd.tag, cmd.name, cmd.args, { nonSync, utf8: true });
      const events = run(wire, cuts, authenticatedLimits(1000)).filter((e) => e.kind !== 'continue');
      assert.deepEqual(events, [{ kind: 'command', command: cmd }]);
    }),
    { numRuns: 25_000 },
  );
});
