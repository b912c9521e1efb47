import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { postern, writeConfig } from '../helpers/cli.ts';
import { storeToml } from '../helpers/backend.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';

let t: TestServer;
let cfg: string;
let queueId = '';
before(async () => {
  // The delivery agent is off: these tests steer the queue by hand.
  t = await startTestServer({}, { delivery: false });
  cfg = writeConfig(t.dir, `hostname = "mx.example.test"\ndata_dir = "${t.dir}"\n[listen]\nlocal = "${t.socketPath}"\n${storeToml(t.store)}`);
  // Mail for two remote recipients, through the local socket (like postern-sendmail).
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  const r = await c.sendMail({ from: 'alice@example.test', to: ['carol@remote.test', 'dave@remote.test'], message: 'From: alice@example.test\r\nSubject: waiting\r\n\r\nqueued body\r\n' });
  assert.equal(r.data?.code, 250);
  queueId = /queued as (\w+)/.exec(r.data!.text)![1]!;
  await c.quit();
});
after(() => t.stop());

test('queue list shows the message, its recipients and their state; --json too', async () => {
  const r = await postern(['queue', 'list', '--config', cfg]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^${queueId}\\s+\\d+s\\s+\\d+\\s+<alice@example\\.test>$`, 'm'));
  assert.match(r.stdout, /carol@remote\.test\s+active/);
  assert.match(r.stdout, /-- 1 message\(s\), 2 recipient\(s\)/);
  const j = await postern(['queue', 'list', '--json', '--config', cfg]);
  const parsed = JSON.parse(j.stdout) as Array<{ queueId: string; recipients: Array<{ address: string; status: string }> }>;
  assert.equal(parsed[0]!.queueId, queueId);
  assert.deepEqual(parsed[0]!.recipients.map((x) => x.address).sort(), ['carol@remote.test', 'dave@remote.test']);
});

test('queue show prints the recipients and the message', async () => {
  const r = await postern(['queue', 'show', queueId, '--config', cfg]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /sender:\s+<alice@example\.test>/);
  assert.match(r.stdout, /Subject: waiting\r?\n/);
  assert.match(r.stdout, /queued body/);
  const missing = await postern(['queue', 'show', 'NOSUCHID', '--config', cfg]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /no queued message NOSUCHID/);
});

test('hold keeps a message from delivery, release and flush make it due, delete removes it', async () => {
  const data = t.server.ctx.data;
  const hold = await postern(['queue', 'hold', queueId, '--config', cfg]);
  assert.match(hold.stdout, /2 recipient\(s\) put on hold/);
  assert.deepEqual(await data.claimQueue(10, 60_000, 'test'), [], 'held mail is not handed to delivery');
  assert.match((await postern(['queue', 'list', '--config', cfg])).stdout, /carol@remote\.test\s+hold/);
  assert.match((await postern(['queue', 'release', queueId, '--config', cfg])).stdout, /2 recipient\(s\) released/);
  // Deferred: one failed attempt, next try in an hour; flush makes it due now.
  const [claimed] = await data.claimQueue(1, 60_000, 'test');
  await data.finishQueueEntries([{ id: claimed!.id, kind: 'retry', nextAttempt: Date.now() + 3_600_000, error: '451 4.3.0 try later' }]);
  const list = (await postern(['queue', 'list', '--config', cfg])).stdout;
  assert.match(list, /deferred after 1 attempt\(s\), next try in 60m\n\s+\(451 4\.3\.0 try later\)/);
  assert.match((await postern(['queue', 'flush', '--config', cfg])).stdout, /recipient\(s\) due now/);
  const due = await data.claimQueue(10, 60_000, 'test');
  assert.equal(due.length, 2, 'both due after the flush');
  for (const d of due) await data.finishQueueEntries([{ id: d.id, kind: 'retry', nextAttempt: Date.now() + 60_000, error: 'x' }]);
  const del = await postern(['queue', 'delete', queueId, '--config', cfg]);
  assert.equal(del.status, 0, del.stderr);
  assert.match(del.stdout, /2 recipient\(s\) of \w+ deleted/);
  assert.match((await postern(['queue', 'list', '--config', cfg])).stdout, /queue is empty/);
  assert.equal((await postern(['queue', 'delete', queueId, '--config', cfg])).status, 1);
});

test('queue delete --all-deferred removes recipients that were tried, not fresh ones; no id and no flag is an error', async () => {
  const data = t.server.ctx.data;
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  for (const to of ['tried@remote.test', 'fresh@remote.test']) {
    const r = await c.sendMail({ from: 'alice@example.test', to: [to], message: `From: alice@example.test\r\nSubject: ${to}\r\n\r\nx\r\n` });
    assert.equal(r.data?.code, 250);
  }
  await c.quit();
  const [tried] = (await data.claimQueue(10, 60_000, 'test')).filter((e) => e.recipient === 'tried@remote.test');
  await data.finishQueueEntries([{ id: tried!.id, kind: 'retry', nextAttempt: Date.now() + 60_000, error: '451 later' }]);
  await data.steerQueue(null, 'release');
  const none = await postern(['queue', 'delete', '--config', cfg]);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /--all-deferred/);
  const r = await postern(['queue', 'delete', '--all-deferred', '--config', cfg]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^1 deferred recipient\(s\) deleted/);
  const left = await data.listQueue();
  assert.deepEqual(left.map((x) => x.recipient), ['fresh@remote.test']);
});
