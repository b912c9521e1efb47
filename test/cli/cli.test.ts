import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { postern, run, SENDMAIL, writeConfig } from '../helpers/cli.ts';
import { storeToml } from '../helpers/backend.ts';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/main.ts';
import { startTestServer, inbox, blobText, tempDir, type TestServer } from '../helpers/server.ts';

let t: TestServer;
let cfg: string;
before(async () => {
  t = await startTestServer();
  // A config file describing the running test server, for the CLI.
  cfg = writeConfig(t.dir, `hostname = "mx.example.test"\ndata_dir = "${t.dir}"\n[listen]\nlocal = "${t.socketPath}"\n${storeToml(t.store)}`);
});
after(async () => t.stop());

test('--help on the command and every subcommand', async () => {
  // The binary, once for the program and once for a subcommand …
  const top = await postern(['--help']);
  assert.equal(top.status, 0);
  for (const cmd of ['serve', 'domain', 'user', 'alias', 'mail', 'send', 'install-sendmail', 'ban', 'queue', 'dkim', 'directory', 'access', 'policy', 'migrate']) assert.match(top.stdout, new RegExp(`\\b${cmd}\\b`));
  const sub = await postern(['user', 'import', 'passwd-file', '--help']);
  assert.equal(sub.status, 0);
  assert.match(sub.stdout, /--config/);
  // … and every command of the tree in this process (a process per command cost a minute): each
  // says what it does, prints usage, and takes --config except the three that need no config.
  const leaves = (c: Command, path: string[] = []): Array<{ path: string; cmd: Command }> => (c.commands.length ? c.commands.flatMap((x) => leaves(x, [...path, x.name()])) : [{ path: path.join(' '), cmd: c }]);
  const all = leaves(buildProgram());
  assert.ok(all.length >= 38, `${all.length} commands`);
  for (const { path, cmd } of all) {
    assert.ok(cmd.description().length > 10, `${path}: a description`);
    assert.match(cmd.helpInformation(), /^Usage: /, path);
  }
  assert.deepEqual(all.filter((l) => !l.cmd.options.some((o) => o.long === '--config')).map((l) => l.path), ['sendmail', 'install-sendmail', 'migrate']);
  const sm = await run(process.execPath, [SENDMAIL, '--help']);
  assert.equal(sm.status, 0);
  assert.match(sm.stdout, /-t\s/);
});

test('invalid config stops with the file, the key and what is expected', async () => {
  const dir = tempDir();
  const bad = writeConfig(dir, `hostname = "x"\n[listen]\nsmtp = "not-an-address"\n[smtp]\nmax_recipients = "lots"\nbogus = 1\n`);
  const r = await postern(['domain', 'list', '--config', bad]);
  assert.equal(r.status, 78);
  assert.match(r.stderr, new RegExp(bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  assert.match(r.stderr, /listen\.smtp: expected "address:port"/);
  assert.match(r.stderr, /smtp\.max_recipients/);
  assert.match(r.stderr, /unknown key\(s\) "bogus"/);
  const toml = writeConfig(dir, `hostname = \n`);
  const r2 = await postern(['domain', 'list', '--config', toml]);
  assert.equal(r2.status, 78);
  assert.match(r2.stderr, /not valid TOML/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('$POSTERN_CONFIG is used when --config is absent', async () => {
  const r = await postern(['domain', 'list'], { env: { POSTERN_CONFIG: cfg } });
  assert.equal(r.status, 0);
  assert.match(r.stdout, /example\.test/);
});

test('domains, users, aliases and mail list while the server runs', async () => {
  assert.equal((await postern(['domain', 'add', 'cli.test', '--config', cfg])).status, 0);
  const dup = await postern(['domain', 'add', 'cli.test', '--config', cfg]);
  assert.equal(dup.status, 1);
  assert.match(dup.stderr, /exists already/);
  const add = await postern(['user', 'add', 'dana@cli.test', '--password-stdin', '--config', cfg], { input: 'pw-dana\n' });
  assert.equal(add.status, 0, add.stderr);
  const notLocal = await postern(['user', 'add', 'x@elsewhere.test', '--password-stdin', '--config', cfg], { input: 'pw\n' });
  assert.equal(notLocal.status, 1);
  assert.match(notLocal.stderr, /postern domain add elsewhere\.test/);
  const acct = await t.server.ctx.data.getAccount('dana@cli.test');
  assert.ok(acct?.passwordHash?.startsWith('$argon2id$'), 'argon2id hash stored');
  assert.equal((await postern(['user', 'passwd', 'dana@cli.test', '--password-stdin', '--config', cfg], { input: 'new-pw\n' })).status, 0);
  assert.notEqual((await t.server.ctx.data.getAccount('dana@cli.test'))?.passwordHash, acct?.passwordHash);
  assert.equal((await postern(['alias', 'add', 'info@cli.test', 'dana@cli.test', 'alice@example.test', '--config', cfg])).status, 0);
  const aliases = await postern(['alias', 'list', '--config', cfg]);
  assert.match(aliases.stdout, /info@cli\.test\talice@example\.test, dana@cli\.test/);
  const users = await postern(['user', 'list', '--config', cfg]);
  assert.match(users.stdout, /dana@cli\.test/);

  // The running server sees the new user and alias at once.
  const sent = await run(process.execPath, [SENDMAIL, '-i', '-f', 'root@mx.example.test', 'info@cli.test'], {
    input: 'Subject: via alias\n\nhello dana\n',
    env: { POSTERN_CONFIG: cfg },
  });
  assert.equal(sent.status, 0, sent.stderr);
  const list = await postern(['mail', 'list', 'dana@cli.test', '--config', cfg]);
  assert.match(list.stdout, /^1\t\S+\troot@mx\.example\.test\tvia alias\t\d+\t$/m);
  const json = await postern(['mail', 'list', 'dana@cli.test', '--json', '--config', cfg]);
  const row = JSON.parse(json.stdout.trim().split('\n')[0]!) as Record<string, unknown>;
  assert.equal(row.uid, 1);
  assert.equal(row.subject, 'via alias');
  assert.deepEqual(row.flags, []);
  const count = await postern(['mail', 'count', '--config', cfg]);
  assert.match(count.stdout, /^\d+\n$/);

  assert.equal((await postern(['alias', 'del', 'info@cli.test', '--config', cfg])).status, 0);
  const busy = await postern(['domain', 'del', 'cli.test', '--config', cfg]);
  assert.equal(busy.status, 1);
  assert.match(busy.stderr, /still has users/);
  assert.equal((await postern(['user', 'del', 'dana@cli.test', '--config', cfg])).status, 0);
  assert.equal((await postern(['domain', 'del', 'cli.test', '--config', cfg])).status, 0);
  const unknown = await postern(['mail', 'list', 'dana@cli.test', '--config', cfg]);
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /no user dana@cli\.test/);
});

test('postern-sendmail: -t takes To/Cc/Bcc and removes Bcc; headers are completed', async () => {
  const r = await run(process.execPath, [SENDMAIL, '-t', '-oi', '-F', 'Root User'], {
    input: 'To: alice@example.test\nCc: bob@example.test\nBcc: alice+hidden@example.test\nSubject: dash-t\n\nbody line\n.\nafter dot\n',
    env: { POSTERN_CONFIG: cfg, USER: 'root' },
  });
  assert.equal(r.status, 0, r.stderr);
  const a = (await inbox(t, 'alice@example.test')).find((m) => m.subject === 'dash-t')!;
  const b = (await inbox(t, 'bob@example.test')).find((m) => m.subject === 'dash-t')!;
  assert.ok(a && b);
  const raw = await blobText(t, a.blobHash);
  assert.doesNotMatch(raw, /^Bcc:/im);
  assert.match(raw, /^From: "Root User" <\S+@mx\.example\.test>\r$/m);
  assert.match(raw, /^Date: /m);
  assert.match(raw, /^Message-ID: <.+@mx\.example\.test>\r$/m);
  assert.match(raw, /\r\n\.\r\nafter dot\r\n$/, 'with -oi a lone dot does not end the message');
});

test('postern-sendmail without -i: a lone "." ends the message; errors give sysexits codes', async () => {
  const r = await run(process.execPath, [SENDMAIL, 'bob@example.test'], { input: 'Subject: dot-end\n\nkept\n.\ndropped\n', env: { POSTERN_CONFIG: cfg } });
  assert.equal(r.status, 0, r.stderr);
  const m = (await inbox(t, 'bob@example.test')).find((x) => x.subject === 'dot-end')!;
  const raw = await blobText(t, m.blobHash);
  assert.match(raw, /kept\r\n$/);
  const unknown = await run(process.execPath, [SENDMAIL, 'nobody@example.test'], { input: 'Subject: x\n\nx\n', env: { POSTERN_CONFIG: cfg } });
  assert.equal(unknown.status, 67, 'EX_NOUSER');
  assert.match(unknown.stderr, /5\.1\.1/);
  const noRcpt = await run(process.execPath, [SENDMAIL], { input: 'Subject: x\n\nx\n', env: { POSTERN_CONFIG: cfg } });
  assert.equal(noRcpt.status, 64);
  const dir = tempDir();
  const down = writeConfig(dir, `data_dir = "${dir}"\n[listen]\nlocal = "${path.join(dir, 'none.sock')}"\n`);
  const r2 = await run(process.execPath, [SENDMAIL, 'bob@example.test'], { input: 'x\n', env: { POSTERN_CONFIG: down } });
  assert.equal(r2.status, 75, 'EX_TEMPFAIL when the server is not running');
  assert.match(r2.stderr, /is the server running/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('postern send -s with an attachment', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'report.txt');
  fs.writeFileSync(file, 'attached content\n');
  const r = await postern(['send', '-s', 'Report ✓', '-a', file, 'alice@example.test', '--config', cfg], { input: 'see attachment\n' });
  assert.equal(r.status, 0, r.stderr);
  const m = (await inbox(t, 'alice@example.test')).find((x) => x.subject === 'Report ✓');
  assert.ok(m, 'subject decoded in listing');
  const raw = await blobText(t, m.blobHash);
  assert.match(raw, /Content-Disposition: attachment; filename=report\.txt/);
  fs.rmSync(dir, { recursive: true, force: true });
});

// Regression: concurrent commands failed with "database is locked" (deferred
// transactions cannot wait for another writer; we now BEGIN IMMEDIATE).
test('several `postern user add` at once on the same data directory all succeed', async () => {
  const dir = tempDir();
  const c = writeConfig(dir, `data_dir = "${path.join(dir, 'data')}"\n`);
  assert.equal((await postern(['domain', 'add', 'par.test', '--config', c])).status, 0);
  const results = await Promise.all(
    Array.from({ length: 6 }, (_, i) => postern(['user', 'add', `u${i}@par.test`, '--password-stdin', '--config', c], { input: 'pw-par-1234\n' })),
  );
  for (const r of results) assert.equal(r.status, 0, r.stderr);
  const list = await postern(['user', 'list', '--config', c]);
  for (let i = 0; i < 6; i++) assert.match(list.stdout, new RegExp(`u${i}@par\\.test`));
});

test('a port already in use stops `serve` with the config key to change, no stack trace', async () => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  const { port } = blocker.address() as net.AddressInfo;
  const dir = tempDir();
  try {
    const c = writeConfig(dir, `data_dir = "${path.join(dir, 'data')}"\n[listen]\nsmtp = "127.0.0.1:${port}"\n[log]\nlevel = "warn"\n`);
    const r = await postern(['serve', '--config', c], { timeoutMs: 30_000 });
    assert.equal(r.status, 69);
    assert.match(r.stderr, new RegExp(`cannot listen for smtp on 127\\.0\\.0\\.1:${port} \\(config key listen\\.smtp\\).*address already in use`));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.doesNotMatch(r.stdout + r.stderr, /listener error/, 'reported once');
  } finally {
    blocker.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an unreachable PostgreSQL is one clear line naming store.url, without a stack trace', async () => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  const { port } = blocker.address() as net.AddressInfo;
  await new Promise<void>((r) => blocker.close(() => r())); // nothing listens there now
  const dir = tempDir();
  try {
    const c = writeConfig(dir, `data_dir = "${path.join(dir, 'data')}"\n[store]\nbackend = "postgres"\nurl = "postgres://postern@127.0.0.1:${port}/postern"\n`);
    for (const args of [['domain', 'list'], ['serve']]) {
      const r = await postern([...args, '--config', c], { timeoutMs: 30_000 });
      assert.equal(r.status, 69, args.join(' '));
      assert.match(r.stderr, /cannot connect to PostgreSQL \(config key store\.url\): .*ECONNREFUSED/);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
