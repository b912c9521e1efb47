import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { postern, writeConfig } from '../helpers/cli.ts';
import { storeToml } from '../helpers/backend.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { Slapd, missingSlapd, ldapConfig, SERVICE_PW, SERVICE_DN, PEOPLE, SUFFIX } from '../helpers/slapd.ts';

/** `postern directory test` and `postern user …` against a real slapd, through a config file. */
const skip = missingSlapd();
let slapd: Slapd;
let t: TestServer;
let cfg: string;

before(async () => {
  if (skip) return;
  slapd = await Slapd.create();
  const secret = path.join(slapd.dir, 'secret');
  fs.writeFileSync(secret, `${SERVICE_PW}\n`);
  t = await startTestServer(ldapConfig(slapd, secret, 'compare'), { users: [] });
  cfg = writeConfig(
    t.dir,
    `hostname = "mx.example.test"
data_dir = "${t.dir}"
domains = ["example.test"]
${storeToml(t.store)}
[directory]
backend = "ldap"
[directory.ldap]
url = "${slapd.url}"
bind_dn = "${SERVICE_DN}"
bind_password_file = "${secret}"
base_dn = "${PEOPLE}"
auth = "compare"
login_filter = "(&(objectClass=inetOrgPerson)(|(mail=%s)(uid=%s)))"
group_filter = "(&(objectClass=groupOfNames)(mail=%s))"
group_base_dn = "ou=groups,${SUFFIX}"
[directory.ldap.attributes]
quota = "mailQuota"
enabled = "accountStatus"
`,
  );
});
after(async () => {
  await t?.stop();
  await slapd?.destroy();
});

test('postern directory test EMAIL prints the user, aliases, quota, flag, password scheme and delivery', { skip }, async () => {
  const r = await postern(['directory', 'test', 'a.smith@example.test', '--config', cfg]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /directory: ldap ldap:\/\/127\.0\.0\.1:\d+, base ou=people,dc=example,dc=test, auth = "compare"/);
  assert.match(r.stdout, /user:\s+uid=alice,ou=people,dc=example,dc=test/);
  assert.match(r.stdout, /mail:\s+alice@example\.test/);
  assert.match(r.stdout, /aliases:\s+a\.smith@example\.test/);
  assert.match(r.stdout, /quota:\s+1073741824 bytes/);
  assert.match(r.stdout, /enabled:\s+yes/);
  assert.match(r.stdout, /password:\s+\{SSHA\}/);
  assert.match(r.stdout, /delivery:\s+alice@example\.test \(account \d+\)/);

  const g = await postern(['directory', 'test', 'staff@example.test', '--config', cfg]);
  assert.equal(g.status, 0, g.stderr);
  assert.match(g.stdout, /group:\s+cn=staff,ou=groups,dc=example,dc=test/);
  assert.match(g.stdout, /delivery:.*alice@example\.test.*bob@example\.test/);

  const d = await postern(['directory', 'test', 'dave@example.test', '--config', cfg]);
  assert.match(d.stdout, /enabled:\s+no/);
  assert.match(d.stdout, /delivery:\s+refused at RCPT \(550 5\.1\.1/);

  const n = await postern(['directory', 'test', 'nobody@example.test', '--config', cfg]);
  assert.equal(n.status, 1);
  assert.match(n.stdout, /no user or group in the directory/);

  const pw = await postern(['directory', 'test', 'bob', '--password-stdin', '--config', cfg], { input: 'bob-pw\n' });
  assert.equal(pw.status, 0, pw.stdout + pw.stderr);
  assert.match(pw.stdout, /password:\s+\{ARGON2ID\}/);
  assert.match(pw.stdout, /login:\s+ok \(as bob@example\.test\)/);
  const bad = await postern(['directory', 'test', 'bob', '--password-stdin', '--config', cfg], { input: 'nope\n' });
  assert.equal(bad.status, 1);
  assert.match(bad.stdout, /login:\s+refused: bad-password/);
});

test('postern directory test without EMAIL checks the connection; 69 when LDAP is down', { skip }, async () => {
  const r = await postern(['directory', 'test', '--config', cfg]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /connection: ok/);
  assert.match(r.stdout, /users: 4 /);
  await slapd.stop();
  try {
    const down = await postern(['directory', 'test', 'alice@example.test', '--config', cfg]);
    assert.equal(down.status, 69);
    assert.match(down.stderr, /the directory did not answer \(ldap ldap:\/\/127\.0\.0\.1:\d+.*ECONNREFUSED/);
  } finally {
    await slapd.start();
  }
});

test('postern user list shows LDAP users; user add/del/passwd are refused naming directory.backend', { skip }, async () => {
  const l = await postern(['user', 'list', '--config', cfg]);
  assert.equal(l.status, 0, l.stderr);
  assert.match(l.stdout, /^alice@example\.test\t0 messages\t0 bytes\taliases: a\.smith@example\.test$/m);
  assert.match(l.stdout, /^dave@example\.test\t.*\tdisabled$/m);
  assert.match(l.stdout, /^carol@example\.test\t/m);
  // A stored mailbox whose address LDAP no longer has (a rename): listed as such.
  await t.server.ctx.data.addAccount('old-name@example.test', null);
  const o = await postern(['user', 'list', '--config', cfg]);
  assert.match(o.stdout, /^old-name@example\.test\t0 messages\t0 bytes\tnot in the directory/m);
  for (const args of [['user', 'add', 'x@example.test', '--no-password'], ['user', 'del', 'alice@example.test'], ['user', 'passwd', 'alice@example.test', '--password-stdin']]) {
    const r = await postern([...args, '--config', cfg], { input: 'pw\n' });
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, /read-only.*directory\.backend = "ldap"|directory\.backend = "ldap".*read-only/, r.stderr);
  }
  assert.ok(await t.server.ctx.data.getAccount('old-name@example.test'));
  const help = await postern(['directory', 'test', '--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--password-stdin/);
  assert.match(help.stdout, /--config/);
});
