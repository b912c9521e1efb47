import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, missing } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/**
 * GNU SASL's command-line client (Debian package gsasl) logs in over SMTP with
 * SCRAM-SHA-256 (RFC 7677) after STARTTLS, and checks the server's signature.
 * (--no-cb: we do not offer the channel-binding -PLUS variant.)
 */
const skip = missing('gsasl');
let t: TestServer;
before(async () => {
  if (!skip) t = await startTestServer({ auth: { failure_delay: '10ms' } });
});
after(async () => t?.stop());

const gsasl = (mech: string, password: string) =>
  run('gsasl', ['--smtp', '--connect', `127.0.0.1:${t.submissionPort}`, '--starttls', '--no-cb', '--x509-ca-file=', '-m', mech, '-a', 'alice@example.test', '-p', password, '--verbose'], {
    timeoutMs: 20_000,
  });

test('gsasl: SCRAM-SHA-256 succeeds and the client trusts the server signature', { skip }, async () => {
  const r = await gsasl('SCRAM-SHA-256', 'secret');
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /235 2\.7\.0 Authentication successful/);
  assert.match(r.stdout + r.stderr, /server trusted/);
});

test('gsasl: SCRAM-SHA-256 with a wrong password gets 535 5.7.8', { skip }, async () => {
  const r = await gsasl('SCRAM-SHA-256', 'wrong');
  assert.notEqual(r.status, 0);
  assert.match(r.stdout + r.stderr, /535 5\.7\.8/);
});

test('gsasl: PLAIN inside STARTTLS', { skip }, async () => {
  const r = await gsasl('PLAIN', 'secret');
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /235 2\.7\.0/);
});
