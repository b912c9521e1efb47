import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineEndingNormalizer } from '../../src/smtp/line-endings.ts';

/** Reference: every CRLF, bare CR and bare LF becomes CRLF. */
const reference = (s: string) => s.replace(/\r\n|\r|\n/g, '\r\n');

function normalise(input: string, cuts: number[]): string {
  const n = new LineEndingNormalizer();
  const buf = Buffer.from(input, 'latin1');
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, buf.length]) {
    out.push(n.push(buf.subarray(at, c)));
    at = c;
  }
  out.push(n.end());
  return Buffer.concat(out).toString('latin1');
}

test('line endings: CRLF text passes unchanged, bare CR and LF become CRLF, across any chunk boundary', () => {
  const cases = ['a\r\nb\r\n', 'a\nb\n', 'a\rb\r', 'a\r\r\nb', 'a\n\r\nb\r', '\r\n\r\n', '\n', '\r', 'x\r\n.\r\n', 'mixed\r\nbare\nlone\rend'];
  for (const s of cases) {
    for (let cut = 0; cut <= s.length; cut++) assert.equal(normalise(s, [cut]), reference(s), JSON.stringify({ s, cut }));
  }
  // Seeded random strings over the interesting alphabet, random chunking.
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let k = 0; k < 2000; k++) {
    const len = Math.floor(rnd() * 30);
    let s = '';
    for (let i = 0; i < len; i++) s += 'ab\r\n.'[Math.floor(rnd() * 5)];
    const cuts = [...new Set(Array.from({ length: 3 }, () => Math.floor(rnd() * (len + 1))))].sort((a, b) => a - b);
    assert.equal(normalise(s, cuts), reference(s), JSON.stringify({ s, cuts }));
  }
});

test('a well-formed chunk is returned as is (no copy)', () => {
  const n = new LineEndingNormalizer();
  const chunk = Buffer.from('Subject: x\r\n\r\nbody\r\n');
  assert.equal(n.push(chunk), chunk);
});
