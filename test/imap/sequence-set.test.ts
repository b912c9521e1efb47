import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  contains,
  expand,
  formatOrdered,
  formatSequenceSet,
  parseSequenceSet,
  resolve,
  type SequenceSet,
} from '../../src/imap/sequence-set.ts';

function parse(s: string): SequenceSet {
  const r = parseSequenceSet(s);
  assert.ok(r.ok, s);
  return r.value;
}

test('parse: numbers, ranges in either order, *, $', () => {
  assert.deepEqual(parse('1:*,5,7:3,$'), {
    ranges: [
      { from: 1, to: '*' },
      { from: 5, to: 5 },
      { from: 7, to: 3 },
    ],
    saved: true,
  });
  assert.deepEqual(parse('*'), { ranges: [{ from: '*', to: '*' }], saved: false });
  assert.deepEqual(parse('4294967295'), { ranges: [{ from: 4294967295, to: 4294967295 }], saved: false });
  for (const bad of ['', '0', '01', '1:', ':1', '1,,2', '1:2:3', 'a', '4294967296', '1 ', '-1', '1.5', ',', '**', '$1']) {
    assert.equal(parseSequenceSet(bad).ok, false, bad);
  }
  assert.equal(parseSequenceSet('$', { allowSaved: false }).ok, false);
});

test('resolve, contains and expand', () => {
  const s = parse('1:*,5,7:3');
  assert.deepEqual(resolve(s, 10), [{ lo: 1, hi: 10 }]);
  assert.deepEqual(resolve(parse('9:7,2,3,1,20'), 10), [
    { lo: 1, hi: 3 },
    { lo: 7, hi: 9 },
    { lo: 20, hi: 20 },
  ]);
  // UID 10:* when the highest UID is 5 covers 5:10 (RFC 9051 §6.4.8).
  assert.deepEqual(resolve(parse('10:*'), 5), [{ lo: 5, hi: 10 }]);
  assert.deepEqual(resolve(parse('*'), 0), []);
  assert.ok(contains(parse('2:4,8'), 3, 10));
  assert.ok(!contains(parse('2:4,8'), 5, 10));
  assert.ok(contains(parse('*'), 10, 10));
  assert.ok(contains(parse('$'), 42, 100, [40, 42]));
  assert.ok(!contains(parse('$'), 41, 100, [40, 42]));
  assert.deepEqual(expand(parse('5,1:3,2,*'), 9, { cap: 100 }), { ok: true, value: [1, 2, 3, 5, 9] });
  assert.deepEqual(expand(parse('1:*'), 4, { cap: 100 }), { ok: true, value: [1, 2, 3, 4] });
  assert.equal(expand(parse('1:4294967295'), 10, { cap: 100000 }).ok, false);
  assert.deepEqual(expand(parse('1:4294967295'), 3, { cap: 10, clamp: true }), { ok: true, value: [1, 2, 3] });
});

test('format: compact sets', () => {
  assert.equal(formatSequenceSet([1, 2, 3, 5]), '1:3,5');
  assert.equal(formatSequenceSet([5, 3, 1, 2, 2, 9, 10]), '1:3,5,9:10');
  assert.equal(formatSequenceSet([]), '');
  assert.equal(formatSequenceSet([7]), '7');
  assert.equal(formatOrdered([3, 4, 5, 1, 9, 10]), '3:5,1,9:10');
});

test('property: format → parse → expand gives the sorted unique numbers; contains agrees', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 60 }), fc.integer({ min: 1, max: 400 }), (nums, probe) => {
      const sorted = [...new Set(nums)].sort((a, b) => a - b);
      const text = formatSequenceSet(nums);
      if (sorted.length === 0) return assert.equal(text, '');
      const set = parse(text);
      assert.deepEqual(expand(set, 300, { cap: 1000 }), { ok: true, value: sorted });
      assert.equal(contains(set, probe, 300), sorted.includes(probe));
    }),
    { numRuns: 3000 },
  );
});
