import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, missing, SENDMAIL, writeConfig } from '../helpers/cli.ts';
import { storeToml } from '../helpers/backend.ts';
import { startTestServer, inbox, blobText, type TestServer } from '../helpers/server.ts';

const skip = missing('s-nail');
let t: TestServer;
let cfg: string;
before(async () => {
  if (skip) return;
  t = await startTestServer();
  cfg = writeConfig(t.dir, `hostname = "mx.example.test"\ndata_dir = "${t.dir}"\n[listen]\nlocal = "${t.socketPath}"\n${storeToml(t.store)}`);
});
after(async () => t?.stop());

test('echo … | mail -s Subject user delivers through postern-sendmail', { skip }, async () => {
  // s-nail calls its "mta" the way it calls /usr/sbin/sendmail; install-sendmail links ours there.
  const r = await run('s-nail', ['-:/', '-S', `mta=${SENDMAIL}`, '-S', `DEAD=${t.dir}/dead.letter`, '-s', 'mama is god', 'alice@example.test'], {
    input: 'mama is god\n',
    env: { POSTERN_CONFIG: cfg, HOME: t.dir, MAILRC: '/dev/null' },
  });
  assert.equal(r.status, 0, r.stderr);
  const m = (await inbox(t, 'alice@example.test')).find((x) => x.subject === 'mama is god');
  assert.ok(m, 'delivered');
  const raw = await blobText(t, m.blobHash);
  assert.match(raw, /\r\n\r\nmama is god\r\n$/);
  assert.match(raw, /with local id/);
});

test('a shell loop piping messages into `mail` hits the per-sender rate limit (submission.rate_limit)', { skip }, async () => {
  const t2 = await startTestServer({ submission: { rate_limit: 5 } });
  try {
    const cfg2 = writeConfig(t2.dir, `hostname = "mx.example.test"\ndata_dir = "${t2.dir}"\n[listen]\nlocal = "${t2.socketPath}"\n${storeToml(t2.store)}`);
    // Eight sendmail processes one after the other: on a loaded 2-core machine each start takes seconds.
    const loop = `for i in 1 2 3 4 5 6 7 8; do echo "run $i" | s-nail -:/ -S mta=${SENDMAIL} -S DEAD=${t2.dir}/dead.letter -r script@example.test -s "loop $i" bob@example.test || echo "failed $i"; done`;
    const r = await run('sh', ['-c', loop], { env: { POSTERN_CONFIG: cfg2, HOME: t2.dir, MAILRC: '/dev/null', PATH: process.env.PATH ?? '' }, timeoutMs: 120_000 });
    assert.match(r.stdout, /failed 6/);
    assert.match(r.stdout + r.stderr, /4\.7\.1/);
    const got = (await inbox(t2, 'bob@example.test')).filter((m) => m.subject.startsWith('loop ')).length;
    assert.equal(got, 5, 'exactly the allowance got through');
  } finally {
    await t2.stop();
  }
});
