import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GroupCommitter } from '../../src/core/group-commit.ts';

/**
 * core/group-commit.ts: requests submitted together share a commit; with maxInFlight
 * > 1 the next batch goes without waiting for the previous one's answer (the SQLite
 * writer thread's case), and still nothing resolves before its own commit, and one bad
 * item fails only itself.
 */

/** A commit function whose commits the test finishes by hand. */
function held() {
  const calls: Array<{ items: number[]; finish: (fail?: number) => void }> = [];
  const commit = (items: number[]) =>
    new Promise<number[]>((resolve, reject) => {
      calls.push({ items, finish: (fail) => (fail !== undefined && items.includes(fail) ? reject(new Error(`bad ${fail}`)) : resolve(items.map((i) => i * 10))) });
    });
  return { calls, commit };
}

const turn = () => new Promise<void>((r) => setImmediate(r));

test('one commit at a time: what arrives meanwhile waits and goes as one batch', async () => {
  const { calls, commit } = held();
  const g = new GroupCommitter(commit);
  const done: number[] = [];
  const p1 = g.submit(1).then((r) => done.push(r));
  const p2 = g.submit(2).then((r) => done.push(r));
  await turn();
  assert.deepEqual(calls.map((c) => c.items), [[1, 2]]);
  const p3 = g.submit(3).then((r) => done.push(r));
  const p4 = g.submit(4).then((r) => done.push(r));
  await turn();
  await turn();
  assert.equal(calls.length, 1, 'the second batch waits for the first commit');
  assert.deepEqual(done, []);
  calls[0]!.finish();
  await Promise.all([p1, p2]);
  await turn();
  await turn();
  assert.deepEqual(calls.map((c) => c.items), [[1, 2], [3, 4]]);
  assert.deepEqual(done, [10, 20]);
  calls[1]!.finish();
  await Promise.all([p3, p4]);
  assert.deepEqual(done, [10, 20, 30, 40]);
});

test('several in flight: batches go at once, each resolves with its own commit, a bad item fails alone', async () => {
  const { calls, commit } = held();
  const g = new GroupCommitter(commit, 256, 3);
  const results = new Map<number, number | string>();
  const submit = (n: number) =>
    g.submit(n).then(
      (r) => results.set(n, r),
      (e: Error) => results.set(n, e.message),
    );
  const first = [submit(1), submit(2)];
  await turn();
  const second = [submit(3)];
  await turn();
  const third = [submit(4), submit(5)];
  await turn();
  const fourth = [submit(6)];
  await turn();
  await turn();
  // Three batches out, none answered; the fourth waits for room.
  assert.deepEqual(calls.map((c) => c.items), [[1, 2], [3], [4, 5]]);
  assert.equal(results.size, 0);
  // The second answers first: only its item resolves.
  calls[1]!.finish();
  await Promise.all(second);
  assert.deepEqual([...results], [[3, 30]]);
  await turn();
  await turn();
  assert.deepEqual(calls.map((c) => c.items), [[1, 2], [3], [4, 5], [6]]);
  // A batch with a bad item: retried one by one, only the bad one fails.
  calls[2]!.finish(5);
  await turn();
  await turn();
  assert.deepEqual(calls.slice(4).map((c) => c.items), [[4]]);
  calls[4]!.finish();
  await turn();
  await turn();
  assert.deepEqual(calls.slice(5).map((c) => c.items), [[5]]);
  calls[5]!.finish(5);
  await Promise.all(third);
  calls[0]!.finish();
  calls[3]!.finish();
  await Promise.all([...first, ...fourth]);
  assert.deepEqual(
    [...results].sort((a, b) => a[0] - b[0]),
    [
      [1, 10],
      [2, 20],
      [3, 30],
      [4, 40],
      [5, 'bad 5'],
      [6, 60],
    ],
  );
});
