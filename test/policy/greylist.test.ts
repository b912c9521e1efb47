import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, inbox, message, type TestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { greylistNet } from '../../src/policy/greylist.ts';

/** Greylisting (Postgrey's behaviour, issue #9) on the MX port, with a fake clock. */

let t: TestServer;
let clock = Date.UTC(2026, 11, 2, 8, 0, 0);
const minutes = (n: number) => n * 60_000;

before(async () => {
  t = await startTestServer({ policy: { greylist: { enabled: true, delay: '60s', auto_whitelist: 2, whitelist_domains: ['big.test'] } } });
  // The policy reads the context's clock at each check.
  t.server.ctx.now = () => clock;
});
after(() => t.stop());

async function attempt(ip: string, from: string, to: string): Promise<{ code: number; enhanced: string | null; text: string; delivered: boolean }> {
  const c = await SmtpTestClient.connect({ port: t.smtpPort, localAddress: ip });
  try {
    const r = await c.sendMail({ from, to: [to], message: message(`grey ${clock}`) });
    return { ...r.rcpts[0]!, delivered: r.data?.code === 250 };
  } finally {
    await c.quit().catch(() => undefined);
  }
}

test('client networks: IPv4 /24, IPv6 /64', () => {
  assert.equal(greylistNet('192.0.2.77'), '192.0.2.0/24');
  assert.equal(greylistNet('::ffff:192.0.2.77'), '192.0.2.0/24');
  assert.equal(greylistNet('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
});

test('first try 451 4.7.1, an early retry 451 with the time left, a retry after the delay 250 and delivered; the triplet then passes at once', async () => {
  const first = await attempt('127.0.1.1', 'sender@remote.test', 'alice@example.test');
  assert.equal(first.code, 451);
  assert.equal(first.enhanced, '4.7.1');
  assert.equal(first.text, '<alice@example.test>: Recipient address rejected: Greylisted, try again in 60 seconds');
  clock += 10_000;
  const early = await attempt('127.0.1.2', 'sender@remote.test', 'alice@example.test'); // same /24: same triplet
  assert.equal(early.code, 451);
  assert.match(early.text, /try again in 50 seconds/);
  const before = (await inbox(t, 'alice@example.test')).length;
  clock += 51_000;
  const retry = await attempt('127.0.1.1', 'sender@remote.test', 'alice@example.test');
  assert.equal(retry.code, 250);
  assert.ok(retry.delivered);
  assert.equal((await inbox(t, 'alice@example.test')).length, before + 1);
  clock += minutes(60 * 24 * 20);
  assert.equal((await attempt('127.0.1.1', 'sender@remote.test', 'alice@example.test')).code, 250, 'a known triplet 20 days later');
});

test('another recipient is another triplet; after auto_whitelist passes the client network is not delayed any more', async () => {
  assert.equal((await attempt('127.0.1.1', 'sender@remote.test', 'bob@example.test')).code, 451);
  clock += minutes(2);
  assert.equal((await attempt('127.0.1.1', 'sender@remote.test', 'bob@example.test')).code, 250);
  // Two triplets of 127.0.1.0/24 passed (auto_whitelist = 2): a new one passes at once.
  assert.equal((await attempt('127.0.1.9', 'other@elsewhere.test', 'bob@example.test')).code, 250);
  // Another network is still greylisted.
  assert.equal((await attempt('127.0.2.1', 'other@elsewhere.test', 'bob@example.test')).code, 451);
});

test('a retry later than retry_window starts over; whitelisted sender domains are never delayed', async () => {
  assert.equal((await attempt('127.0.3.1', 'late@remote.test', 'alice@example.test')).code, 451);
  clock += minutes(60 * 24 * 3); // 3 days > retry_window (2 days)
  const late = await attempt('127.0.3.1', 'late@remote.test', 'alice@example.test');
  assert.equal(late.code, 451);
  assert.match(late.text, /try again in 60 seconds/);
  assert.equal((await attempt('127.0.4.1', 'news@mail.big.test', 'alice@example.test')).code, 250);
  // Authenticated and local submissions are never greylisted.
  const local = await SmtpTestClient.connect({ path: t.socketPath });
  const r = await local.sendMail({ from: 'bob@example.test', to: ['alice@example.test'], message: message('local') });
  assert.equal(r.data?.code, 250);
  await local.quit();
});
