import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, run, missing } from '../helpers/cli.ts';
import { inbox, blobText, message, tempDir } from '../helpers/server.ts';
import { deliver, startPop3TestServer, type Pop3TestServer } from '../helpers/pop3-client.ts';

/**
 * fetchmail (Debian package fetchmail, 6.4): POP3S with --ssl, STLS on the plain
 * port with --sslproto (the server refuses passwords before TLS, so a successful
 * run proves STLS was used), keep (a second run finds nothing new: UIDL is stable)
 * and nokeep (the messages are deleted), and certificate checking against the
 * server's self-signed certificate (sslcertfile + sslcommonname), as the README's
 * example does it. Messages go to an MDA script that writes one file each.
 */
const skip = missing('fetchmail');
let t: Pop3TestServer;
let dir: string;
before(async () => {
  if (skip) return;
  t = await startPop3TestServer({}, { users: ['alice@example.test', 'bob@example.test', 'carol@example.test'] });
  dir = tempDir('postern-fetchmail-');
});
after(async () => {
  await t?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs fetchmail once with a generated rc file; returns its exit code (0: mail, 1: no mail) and the delivered messages. */
async function fetchmail(name: string, user: string, port: number, rcOptions: string, args: string[]): Promise<{ status: number; output: string; messages: string[] }> {
  const home = path.join(dir, name);
  const out = path.join(home, 'out');
  fs.mkdirSync(out, { recursive: true });
  const mda = path.join(home, 'deliver.sh');
  fs.writeFileSync(mda, `#!/bin/sh\ncat > "$(mktemp ${out}/msg.XXXXXXXX)"\n`, { mode: 0o755 });
  const rc = path.join(home, 'fetchmailrc');
  // fetchmail refuses an rc file others can read (it holds the password).
  fs.writeFileSync(
    rc,
    `set no syslog\npoll 127.0.0.1 with protocol POP3 port ${port}\n  user "${user}" there with password "secret" is "${user.split('@')[0]}" here\n  mda "${mda}"\n  ${rcOptions}\n`,
    { mode: 0o600 },
  );
  const before = new Set(fs.readdirSync(out));
  // Its own lock file: as root fetchmail would use /var/run/fetchmail.pid, shared with any other run.
  const r = await run('fetchmail', ['-f', rc, '-v', '--nodetach', '--pidfile', path.join(home, 'fetchmail.pid'), ...args], { env: { HOME: home, FETCHMAILHOME: home }, timeoutMs: 60_000 });
  const files = fs.readdirSync(out).filter((f) => !before.has(f));
  return { status: r.status, output: r.stdout + r.stderr, messages: files.map((f) => fs.readFileSync(path.join(out, f), 'latin1')) };
}

/** fetchmail hands the MDA LF line ends and adds a Received line: the stored message must be in there, line for line. */
function assertDelivered(delivered: string[], stored: string[]): void {
  assert.equal(delivered.length, stored.length);
  const lf = stored.map((s) => s.replace(/\r\n/g, '\n'));
  for (const m of delivered) assert.ok(lf.some((s) => m.endsWith(s)), `delivered message not among the stored ones:\n${m}`);
}

test('fetchmail --ssl (POP3S), keep: everything fetched, a second run finds nothing new (stable UIDLs), messages stay', { skip }, async () => {
  for (const s of ['k1', 'k2']) await deliver(t, 'alice@example.test', message(s, `.dotted ${s}\r\nbody\r\n`));
  const stored = await Promise.all((await inbox(t, 'alice@example.test')).map((m) => blobText(t, m.blobHash)));
  const first = await fetchmail('keep', 'alice@example.test', t.pop3sPort, 'no sslcertck', ['--ssl', '--keep']);
  assert.equal(first.status, 0, first.output);
  assertDelivered(first.messages, stored);
  const second = await fetchmail('keep', 'alice@example.test', t.pop3sPort, 'no sslcertck', ['--ssl', '--keep']);
  assert.equal(second.status, 1, second.output); // PS_NOMAIL
  assert.equal(second.messages.length, 0);
  const rows = await inbox(t, 'alice@example.test');
  assert.equal(rows.length, 2);
  assert.ok(rows.every((m) => m.flags.includes('\\Seen')), 'retrieved messages are \\Seen');
});

test('fetchmail --sslproto TLS1.2+ on the plain port (STLS), nokeep: fetched and deleted from the server', { skip }, async () => {
  for (const s of ['n1', 'n2', 'n3']) await deliver(t, 'bob@example.test', message(s));
  const stored = await Promise.all((await inbox(t, 'bob@example.test')).map((m) => blobText(t, m.blobHash)));
  const r = await fetchmail('nokeep', 'bob@example.test', t.pop3Port, 'no sslcertck', ['--sslproto', 'TLS1.2+', '--nokeep']);
  assert.equal(r.status, 0, r.output);
  assert.match(r.output, /STLS/);
  assertDelivered(r.messages, stored);
  assert.equal((await inbox(t, 'bob@example.test')).length, 0);
});

test('fetchmail checks the certificate: the server\'s own (sslcertfile, sslcommonname) is accepted, a wrong name is not', { skip }, async () => {
  await deliver(t, 'carol@example.test', message('c1'));
  const cert = path.join(t.dir, 'tls', 'selfsigned.crt');
  assert.ok(fs.existsSync(cert), cert);
  const wrong = await fetchmail('certck', 'carol@example.test', t.pop3sPort, `sslcertck sslcertfile "${cert}" sslcommonname "other.example"`, ['--ssl', '--keep']);
  assert.notEqual(wrong.status, 0, wrong.output);
  assert.match(wrong.output, /certificate verification error/);
  assert.equal(wrong.messages.length, 0);
  const ok = await fetchmail('certck', 'carol@example.test', t.pop3sPort, `sslcertck sslcertfile "${cert}" sslcommonname "mx.example.test"`, ['--ssl', '--keep']);
  assert.equal(ok.status, 0, ok.output);
  assert.equal(ok.messages.length, 1);
});

test("the README's fetchmail example works as written (POP3S, certificate checked), with keep and then nokeep", { skip }, async () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Downloading mail with POP3'));
  const example = /```\n(poll [\s\S]*?)```/.exec(section)?.[1];
  assert.ok(example, 'a fetchmailrc block in the README');
  // The README's server: hostname localhost (its self-signed certificate's name), user alice@localhost.
  const u = await startPop3TestServer({ hostname: 'localhost', domains: ['localhost'] }, { users: ['alice@localhost'] });
  try {
    for (const s of ['r1', 'r2']) await deliver(u, 'alice@localhost', message(s));
    const home = path.join(dir, 'readme');
    fs.mkdirSync(path.join(home, 'Mail', 'postern'), { recursive: true });
    const rc = example.replace('port 2995', `port ${u.pop3sPort}`).replace('/path/to/postern/data/tls/selfsigned.crt', path.join(u.dir, 'tls', 'selfsigned.crt'));
    const runIt = async (text: string) => {
      fs.writeFileSync(path.join(home, '.fetchmailrc'), text, { mode: 0o600 });
      // Only HOME: fetchmail reads ~/.fetchmailrc and keeps ~/.fetchids (UIDLs seen), as for a user.
      return run('fetchmail', ['-v', '--nodetach', '--pidfile', path.join(home, 'fetchmail.pid')], { env: { HOME: home, FETCHMAILHOME: undefined }, timeoutMs: 60_000 });
    };
    const keep = await runIt(rc);
    assert.equal(keep.status, 0, keep.stdout + keep.stderr);
    assert.equal(fs.readdirSync(path.join(home, 'Mail', 'postern')).length, 2);
    assert.equal((await inbox(u, 'alice@localhost')).length, 2);
    const nokeep = await runIt(rc.replace(/^ {2}keep$/m, '  nokeep fetchall'));
    assert.equal(nokeep.status, 0, nokeep.stdout + nokeep.stderr);
    assert.equal((await inbox(u, 'alice@localhost')).length, 0);
  } finally {
    await u.stop();
  }
});
