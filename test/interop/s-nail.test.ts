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
  const r = await run('s-nail', ['-:/', '-S', `mta=${SENDMAIL}`, '-s', 'mama is god', 'alice@example.test'], {
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
