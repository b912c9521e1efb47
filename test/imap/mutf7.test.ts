import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeMutf7, encodeMutf7, isValidMutf7 } from '../../src/imap/mutf7.ts';

test('RFC 3501 §5.1.3 example', () => {
  assert.deepEqual(decodeMutf7('~peter/mail/&U,BTFw-/&ZeVnLIqe-'), { ok: true, value: '~peter/mail/台北/日本語' });
  assert.equal(encodeMutf7('~peter/mail/台北/日本語'), '~peter/mail/&U,BTFw-/&ZeVnLIqe-');
});

test('ampersand, ASCII, non-BMP and control characters', () => {
  const cases: Array<[string, string]> = [
    ['INBOX', 'INBOX'],
    ['', ''],
    ['&', '&-'],
    ['Tom & Jerry', 'Tom &- Jerry'],
    ['Entwürfe', 'Entw&APw-rfe'],
    ['Gesendete Objekte', 'Gesendete Objekte'],
    ['Отправленные', '&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-'],
    ['😀', '&2D3eAA-'],
    ['a\tb', 'a&AAk-b'],
    ['~', '~'],
  ];
  for (const [plain, enc] of cases) {
    assert.equal(encodeMutf7(plain), enc, plain);
    assert.deepEqual(decodeMutf7(enc), { ok: true, value: plain }, enc);
  }
});

test('strict decoding rejects invalid and non-minimal encodings', () => {
  const invalid = [
    '&', // unterminated
    'abc&U,BT', // unterminated
    '&U,BTFw', // unterminated
    '&U,BTFw-&ZeVnLIqe-', // adjacent runs must be one run
    '&AGE-', // "a" encoded
    '&ACY-', // "&" encoded
    '&U,BTF-', // leftover bits not zero / incomplete unit
    '&U,BTFx-', // non-zero padding bits
    '&U/BTFw-', // "/" is not in the modified alphabet
    '&U=BTFw-',
    '&2D0-', // lone high surrogate
    '&3gA-', // lone low surrogate
    'caf\u00e9', // 8-bit character raw
    'a\tb', // control character raw
    '&AAAA-', // 24 bits: more than 6 bits left over
  ];
  for (const s of invalid) {
    const r = decodeMutf7(s);
    assert.equal(r.ok, false, s);
    assert.equal(isValidMutf7(s), false);
  }
  // A literal "&-" between two runs is fine.
  assert.deepEqual(decodeMutf7('&AOk-&-&AOk-'), { ok: true, value: 'é&é' });
});

test('property: decode(encode(s)) = s and encode(decode(e)) = e', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', maxLength: 30 }), (s) => {
      const enc = encodeMutf7(s);
      assert.match(enc, /^[\x20-\x7e]*$/);
      assert.deepEqual(decodeMutf7(enc), { ok: true, value: s });
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom(...'&-AZaz09+,/Ue~ '.split('')), maxLength: 20 }), (e) => {
      const r = decodeMutf7(e);
      if (r.ok) assert.equal(encodeMutf7(r.value), e, 'every accepted name has exactly one encoding');
    }),
    { numRuns: 20000 },
  );
});
