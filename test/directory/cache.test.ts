import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { Slapd, missingSlapd, ldapConfig, SERVICE_PW, PEOPLE, ssha } from '../helpers/slapd.ts';
import { createDirectory } from '../../src/directory/create.ts';
import type { Directory } from '../../src/directory/directory.ts';
import { DirectoryUnavailableError } from '../../src/directory/errors.ts';
import { parseConfig } from '../../src/config/load.ts';

/**
 * The LDAP cache and failure log against a real slapd, with a fake clock: a password
 * change in LDAP is honoured after cache_ttl (the new password at once), "no such
 * user" is remembered for negative_cache_ttl, an outage is logged once per period.
 */
const skip = missingSlapd();
let slapd: Slapd;
let t: TestServer;
let secret: string;
let clock = 1_000_000;
const now = () => clock;
const lines: Array<{ msg: string; level: number }> = [];
const log = pino(
  { level: 'info' },
  new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as { msg: string; level: number });
      cb();
    },
  }),
);

before(async () => {
  if (skip) return;
  slapd = await Slapd.create();
  secret = path.join(slapd.dir, 'secret');
  fs.writeFileSync(secret, SERVICE_PW);
  t = await startTestServer({}, { users: [] });
});
after(async () => {
  await t?.stop();
  await slapd?.destroy();
});

function directory(auth: 'bind' | 'compare', overrides: Record<string, unknown> = {}): Directory {
  const extra = ldapConfig(slapd, secret, auth, { cache_ttl: '60s', negative_cache_ttl: '30s', failure_log_interval: '60s', ...overrides });
  // Through the schema, as a config file would be.
  const config = { ...t.server.ctx.config, directory: parseConfig({ directory: extra.directory }, 'test').directory };
  return createDirectory(config, t.server.ctx.data, log, now);
}

async function addUser(uid: string, password: string): Promise<void> {
  await slapd.ldif('ldapadd', `dn: uid=${uid},${PEOPLE}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: ${uid}\nmail: ${uid}@example.test\nuserPassword: ${ssha(password)}\n`);
}

for (const mode of ['bind', 'compare'] as const) {
  test(`auth = "${mode}": a password changed in LDAP is honoured after cache_ttl; the new one works at once`, { skip }, async () => {
    const d = directory(mode);
    try {
      const uid = `pw-${mode}`;
      await addUser(uid, 'old-pw');
      assert.equal((await d.authenticate!(`${uid}@example.test`, 'old-pw')).kind, 'ok');
      await slapd.setPassword(uid, 'new-pw');
      clock += 30_000;
      assert.equal((await d.authenticate!(`${uid}@example.test`, 'old-pw')).kind, 'ok', 'old password still cached within the TTL');
      assert.equal((await d.authenticate!(`${uid}@example.test`, 'new-pw')).kind, 'ok', 'the new password works at once');
      clock += 61_000;
      assert.equal((await d.authenticate!(`${uid}@example.test`, 'old-pw')).kind, 'bad-password', 'after the TTL the old password is refused');
      assert.equal((await d.authenticate!(`${uid}@example.test`, 'new-pw')).kind, 'ok');
    } finally {
      await d.close();
    }
  });
}

test('"no such user" is cached for negative_cache_ttl; a user added to LDAP is found after it', { skip }, async () => {
  const d = directory('bind');
  try {
    assert.deepEqual(await d.resolve('newbie@example.test'), { kind: 'unknown' });
    await addUser('newbie', 'x');
    clock += 20_000;
    assert.deepEqual(await d.resolve('newbie@example.test'), { kind: 'unknown' }, 'negative answer cached');
    clock += 11_000;
    const r = await d.resolve('newbie@example.test');
    assert.equal(r.kind, 'deliver');
  } finally {
    await d.close();
  }
});

test('an outage is logged once per failure_log_interval, and once when LDAP is back; failures are not cached', { skip }, async () => {
  const d = directory('bind');
  try {
    assert.equal((await d.resolve('alice@example.test')).kind, 'deliver');
    lines.length = 0;
    await slapd.stop();
    try {
      for (let i = 0; i < 5; i++) await assert.rejects(d.resolve(`x${i}@example.test`), DirectoryUnavailableError);
      await assert.rejects(d.authenticate!('bob@example.test', 'bob-pw'), DirectoryUnavailableError);
      assert.equal(lines.filter((l) => /LDAP directory unavailable/.test(l.msg)).length, 1);
      clock += 61_000;
      await assert.rejects(d.resolve('x9@example.test'), DirectoryUnavailableError);
      assert.equal(lines.filter((l) => /LDAP directory unavailable/.test(l.msg)).length, 2);
    } finally {
      await slapd.start();
    }
    // Not cached as "unknown" during the outage: found now.
    assert.equal((await d.resolve('alice@example.test')).kind, 'deliver');
    assert.equal(lines.filter((l) => /reachable again/.test(l.msg)).length, 1);
  } finally {
    await d.close();
  }
});

test('login by uid only where login_filter allows it; by full address always', { skip }, async () => {
  const without = directory('bind', { login_filter: undefined });
  const withUid = directory('bind');
  try {
    assert.equal((await without.authenticate!('carol', 'carol-pw')).kind, 'unknown');
    assert.equal((await without.authenticate!('carol@example.test', 'carol-pw')).kind, 'ok');
    assert.equal((await withUid.authenticate!('carol', 'carol-pw')).kind, 'ok');
    assert.equal((await withUid.authenticate!('CAROL@Example.Test', 'carol-pw')).kind, 'ok', 'addresses are case-insensitive');
  } finally {
    await without.close();
    await withUid.close();
  }
});
