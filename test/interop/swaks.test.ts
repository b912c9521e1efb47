import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, missing } from '../helpers/cli.ts';
import { startTestServer, inbox, blobText, type TestServer } from '../helpers/server.ts';

const skip = missing('swaks');
let t: TestServer;
before(async () => {
  if (!skip) t = await startTestServer();
});
after(async () => t?.stop());

test('swaks delivers with PIPELINING and an 8-bit body', { skip }, async () => {
  const r = await run('swaks', [
    '--server', `127.0.0.1:${t.smtpPort}`, '--from', 'sender@remote.test', '--to', 'alice@example.test', '--pipeline',
    '--header', 'Subject: swaks-1', '--header', 'Content-Type: text/plain; charset=utf-8', '--header', 'Content-Transfer-Encoding: 8bit',
    '--body', 'Grüße aus swaks',
  ]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /PIPELINING/);
  assert.match(r.stdout, /<-\s+250 2\.6\.0 Ok: queued as/);
  const m = (await inbox(t, 'alice@example.test')).find((x) => x.subject === 'swaks-1');
  assert.ok(m);
  assert.ok((await t.server.ctx.blobs.readAll(m.blobHash)).includes(Buffer.from('Grüße aus swaks', 'utf8')));
});

test('swaks over STARTTLS', { skip }, async () => {
  const r = await run('swaks', ['--server', `127.0.0.1:${t.smtpPort}`, '--from', 's@remote.test', '--to', 'bob@example.test', '-tls', '--header', 'Subject: swaks-tls']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const m = (await inbox(t, 'bob@example.test')).find((x) => x.subject === 'swaks-tls')!;
  assert.match(await blobText(t, m.blobHash), /with ESMTPS/);
});

test('swaks relay attempt is refused with 554 5.7.1', { skip }, async () => {
  const r = await run('swaks', ['--server', `127.0.0.1:${t.smtpPort}`, '--from', 's@remote.test', '--to', 'victim@elsewhere.test']);
  assert.notEqual(r.status, 0);
  assert.match(r.stdout, /<\*\* 554 5\.7\.1/);
});
