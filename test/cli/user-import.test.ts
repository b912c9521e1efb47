import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { postern, writeConfig } from '../helpers/cli.ts';
import { dropTestStore, storeToml, testStore } from '../helpers/backend.ts';
import { tempDir } from '../helpers/server.ts';
import { loadConfig } from '../../src/config/load.ts';
import { openStoresFromConfig } from '../../src/store/open.ts';
import { needsRehash, verifyPassword } from '../../src/auth/password.ts';

// Runs on the suite's backend: SQLite, or PostgreSQL when POSTERN_TEST_PG is set.
const store = testStore();
let dir: string;
let cfg: string;

before(async () => {
  dir = tempDir();
  cfg = writeConfig(dir, `hostname = "mx.import.test"\ndata_dir = "${path.join(dir, 'data')}"\n${storeToml(store)}`);
  for (const args of [['domain', 'add', 'import.test'], ['domain', 'add', 'other.test']]) {
    const r = await postern([...args, '--config', cfg]);
    assert.equal(r.status, 0, r.stderr);
  }
  const r = await postern(['user', 'add', 'existing@import.test', '--password-stdin', '--config', cfg], { input: 'old-password\n' });
  assert.equal(r.status, 0, r.stderr);
});
after(async () => {
  await dropTestStore(store);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The stored password hash of each user (null: no such user). */
async function hashes(emails: string[]): Promise<Record<string, string | null>> {
  const stores = await openStoresFromConfig(loadConfig(cfg).config, { listen: false });
  try {
    const out: Record<string, string | null> = {};
    for (const e of emails) out[e] = (await stores.data.getAccount(e))?.passwordHash ?? null;
    return out;
  } finally {
    await stores.close();
  }
}

function passwdFile(name: string, lines: string[]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

// Vectors from test/auth/password.test.ts (openssl passwd, libxcrypt, python hashlib); password "correct horse".
const SHA512_CRYPT = '{SHA512-CRYPT}$6$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2scFtv/uamSo5z0';
const BLF_CRYPT = '$2y$05$abcdefghijklmnopqrstuuHNbAKRhpaujgo33bRWs.NLUTJO3lOy2';
const SSHA512 = '{SSHA512}6kJoZvE0mjRyT4RNlrpAZZOjV8pY9GF5Y1jsGvcE8g9Rlx8JY2V48pKsWNJVLQn9fRx9t4L8v/BfC+JRRR0HZgECTmFDbP8A';
const SHA256_CRYPT = '$5$saltsalt$myjXcpMpE2Ofk7fj9hqyNYSn6lmWG4Mqnjx.KIRRr4/';
const USERS = ['ann@import.test', 'ben@import.test', 'cat@import.test', 'dan@import.test', 'eve@import.test', 'existing@import.test', 'fay@other.test'];

const FILE = [
  '# users exported from dovecot (passwd-file)',
  `ann@import.test:${SHA512_CRYPT}:5000:5000::/var/mail/ann::userdb_quota_rule=*:storage=1G`,
  `ben:${BLF_CRYPT}`, // bare name: --domain import.test
  '',
  `cat@import.test:${SSHA512}:::`,
  'dan@import.test:{PLAIN}plain-secret-1',
  'eve@import.test:{MD5-CRYPT}$1$zz$not-supported-secret',
  'frank', // no password field
  'existing@import.test:{CLEAR}plain-secret-2',
  `fay@other.test:${SHA256_CRYPT}`,
];

test('import passwd-file: --dry-run writes nothing, then the import keeps hashes that verify', async () => {
  const file = passwdFile('users', FILE);
  const dry = await postern(['user', 'import', 'passwd-file', file, '--domain', 'import.test', '--dry-run', '--config', cfg]);
  assert.equal(dry.status, 0, dry.stderr);
  assert.match(dry.stdout, /dry run, nothing written: would have imported 5, updated 0, skipped 3/);
  const before = await hashes(USERS);
  assert.deepEqual(
    Object.entries(before).filter(([, h]) => h !== null).map(([e]) => e),
    ['existing@import.test'],
    'a dry run creates no user',
  );

  const r = await postern(['user', 'import', 'passwd-file', file, '--domain', 'import.test', '--config', cfg]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^imported 5, updated 0, skipped 3$/m);
  assert.match(r.stdout, /line 7: user eve@import\.test: unsupported scheme MD5-CRYPT/);
  assert.match(r.stdout, /line 8: user frank@import\.test has no password field/);
  assert.match(r.stdout, /line 9: user existing@import\.test exists already \(--update/);
  assert.match(r.stdout, /upgraded to argon2id/);
  assert.doesNotMatch(r.stdout + r.stderr, /secret/, 'password fields are never echoed');

  const h = await hashes(USERS);
  assert.equal(h['ann@import.test'], SHA512_CRYPT, 'hashes are stored as they were');
  assert.equal(h['ben@import.test'], BLF_CRYPT);
  assert.equal(h['eve@import.test'], null);
  assert.match(h['dan@import.test']!, /^\$argon2id\$/, '{PLAIN} is hashed at import');
  for (const e of ['ann@import.test', 'ben@import.test', 'cat@import.test', 'fay@other.test']) {
    assert.equal(await verifyPassword(h[e]!, 'correct horse'), true, e);
    assert.equal(await verifyPassword(h[e]!, 'wrong'), false, e);
    assert.equal(needsRehash(h[e]!), true, e);
  }
  assert.equal(await verifyPassword(h['dan@import.test']!, 'plain-secret-1'), true);
  assert.equal(await verifyPassword(h['existing@import.test']!, 'old-password'), true, 'existing user untouched without --update');

  // Again with --update: the existing user's password is replaced; the others count as updated too.
  const up = await postern(['user', 'import', 'passwd-file', file, '--domain', 'import.test', '--update', '--config', cfg]);
  assert.equal(up.status, 0, up.stderr);
  assert.match(up.stdout, /^imported 0, updated 6, skipped 2$/m);
  const existing = (await hashes(['existing@import.test']))['existing@import.test']!;
  assert.match(existing, /^\$argon2id\$/);
  assert.equal(await verifyPassword(existing, 'plain-secret-2'), true);
});

test('import passwd-file: a domain that is not local stops the whole import', async () => {
  const file = passwdFile('remote', [`zed@import.test:${SSHA512}`, `yan@nowhere.test:${SSHA512}`, `xi@elsewhere.test:${SSHA512}`]);
  const r = await postern(['user', 'import', 'passwd-file', file, '--config', cfg]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /nothing imported/);
  assert.match(r.stderr, /postern domain add elsewhere\.test/);
  assert.match(r.stderr, /postern domain add nowhere\.test/);
  assert.equal((await hashes(['zed@import.test']))['zed@import.test'], null, 'no partial import');
});

test('import passwd-file: exit non-zero when every entry had an error; bad options and files are clear', async () => {
  const file = passwdFile('bad', ['nodomain:{SSHA512}AAAA', 'x@import.test:{LANMAN}00']);
  const r = await postern(['user', 'import', 'passwd-file', file, '--config', cfg]);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /imported 0, updated 0, skipped 2/);
  assert.match(r.stdout, /line 1: user nodomain has no @domain \(give --domain DOMAIN\)/);
  assert.match(r.stderr, /nothing imported/);

  const scheme = await postern(['user', 'import', 'passwd-file', file, '--default-scheme', 'ROT13', '--config', cfg]);
  assert.equal(scheme.status, 1);
  assert.match(scheme.stderr, /--default-scheme ROT13/);
  const missing = await postern(['user', 'import', 'passwd-file', path.join(dir, 'no-such-file'), '--config', cfg]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read .*no-such-file: ENOENT/);

  // "-" reads standard input; --default-scheme applies to fields without a prefix.
  const stdin = await postern(['user', 'import', 'passwd-file', '-', '--default-scheme', 'PLAIN', '--config', cfg], { input: 'gus@import.test:pw-gus\n' });
  assert.equal(stdin.status, 0, stdin.stderr);
  const gus = (await hashes(['gus@import.test']))['gus@import.test']!;
  assert.equal(await verifyPassword(gus, 'pw-gus'), true);

  const help = await postern(['user', 'import', 'passwd-file', '--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--update[\s\S]*--dry-run[\s\S]*--default-scheme[\s\S]*--config/);
});
