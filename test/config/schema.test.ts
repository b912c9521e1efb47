import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.ts';

// Regression: zod applies .default() after the transform, so a default written in
// config units ("300" seconds) came out as 300 ms whenever an [smtp] section existed.
test('defaults are the same whether a section is absent, empty or partly set', () => {
  const none = parseConfig({}, 'test');
  const empty = parseConfig({ smtp: {}, store: {}, log: {} }, 'test');
  const partial = parseConfig({ smtp: { max_recipients: 10 } }, 'test');
  assert.deepEqual(empty.smtp, none.smtp);
  assert.deepEqual(empty.store, none.store);
  assert.deepEqual({ ...partial.smtp, max_recipients: 1000 }, none.smtp);
  assert.equal(none.smtp.idle_timeout, 300_000);
  assert.equal(none.smtp.error_delay, 1000);
  assert.equal(none.smtp.greet_delay, 0);
  assert.equal(none.smtp.max_message_size, 25 * 1024 * 1024);
  assert.equal(none.store.inline_max_size, 64 * 1024);
});

test('durations and sizes are parsed into milliseconds and bytes', () => {
  const c = parseConfig({ smtp: { idle_timeout: '10m', error_delay: '250ms', greet_delay: 2, max_message_size: '10M' }, store: { inline_max_size: '16K' } }, 'test');
  assert.equal(c.smtp.idle_timeout, 600_000);
  assert.equal(c.smtp.error_delay, 250);
  assert.equal(c.smtp.greet_delay, 2000);
  assert.equal(c.smtp.max_message_size, 10 * 1024 * 1024);
  assert.equal(c.store.inline_max_size, 16 * 1024);
  assert.equal(parseConfig({ store: { inline_max_size: 0 } }, 'test').store.inline_max_size, 0);
});
