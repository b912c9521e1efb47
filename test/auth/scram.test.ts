import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { ScramSha256, deriveScram, formatScram, parseScram } from '../../src/auth/scram.ts';
import { startTestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';

/** RFC 7677 §3: the SCRAM-SHA-256 example exchange, user "user", password "pencil". */
test('SCRAM-SHA-256 reproduces the RFC 7677 test vector', async () => {
  const secret = await deriveScram('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096);
  const m = new ScramSha256(async (u) => (u === 'user' ? secret : null), () => '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0');
  const first = await m.start(Buffer.from('n,,n=user,r=rOprNGfwEbeRWgbNEkqO'));
  assert.equal(first.kind, 'challenge');
  assert.equal(first.kind === 'challenge' && first.data.toString(), 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096');
  const final = await m.next(Buffer.from('c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ='));
  assert.deepEqual(final, { kind: 'verified', username: 'user', ok: true, final: Buffer.from('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=') });
  // A wrong proof fails; a replayed/other nonce and channel binding are refused.
  const m2 = new ScramSha256(async () => secret, () => '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0');
  await m2.start(Buffer.from('n,,n=user,r=rOprNGfwEbeRWgbNEkqO'));
  const bad = await m2.next(Buffer.from('c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=' + Buffer.alloc(32, 1).toString('base64')));
  assert.equal(bad.kind === 'verified' && bad.ok, false);
  const m3 = new ScramSha256(async () => secret);
  await m3.start(Buffer.from('n,,n=user,r=abc'));
  assert.equal((await m3.next(Buffer.from('c=biws,r=abcWRONG,p=' + Buffer.alloc(32).toString('base64')))).kind, 'error');
  assert.equal((await new ScramSha256(async () => secret).start(Buffer.from('p=tls-unique,,n=user,r=abc'))).kind, 'error');
  assert.deepEqual(parseScram(formatScram(secret)), secret);
  assert.equal(parseScram('{SCRAM-SHA-256}10,AAAA,BBBB,CCCC'), null);
});

/** The client side of RFC 5802, for driving the server over SMTP. */
function scramClient(user: string, password: string) {
  const cnonce = crypto.randomBytes(12).toString('base64');
  const first = `n,,n=${user},r=${cnonce}`;
  return {
    first: Buffer.from(first).toString('base64'),
    async final(serverFirstB64: string): Promise<{ msg: string; serverSignature: string }> {
      const serverFirst = Buffer.from(serverFirstB64, 'base64').toString();
      const attrs = Object.fromEntries(serverFirst.split(',').map((p) => [p[0], p.slice(2)]));
      const salted = crypto.pbkdf2Sync(password, Buffer.from(attrs.s!, 'base64'), Number(attrs.i), 32, 'sha256');
      const clientKey = crypto.createHmac('sha256', salted).update('Client Key').digest();
      const storedKey = crypto.createHash('sha256').update(clientKey).digest();
      const withoutProof = `c=biws,r=${attrs.r}`;
      const authMessage = `n=${user},r=${cnonce},${serverFirst},${withoutProof}`;
      const sig = crypto.createHmac('sha256', storedKey).update(authMessage).digest();
      const proof = Buffer.from(clientKey.map((b, i) => b ^ sig[i]!));
      const serverKey = crypto.createHmac('sha256', salted).update('Server Key').digest();
      const serverSignature = crypto.createHmac('sha256', serverKey).update(authMessage).digest('base64');
      return { msg: Buffer.from(`${withoutProof},p=${proof.toString('base64')}`).toString('base64'), serverSignature };
    },
  };
}

test('AUTH SCRAM-SHA-256 over SMTP: success with the server signature, wrong password 535 5.7.8, unknown user indistinguishable', async () => {
  const t = await startTestServer({ auth: { failure_delay: '10ms' }, bans: { max_retry: 10 } });
  try {
    const c = await SmtpTestClient.connect({ port: t.submissionsPort, tls: true });
    const e = await c.command('EHLO client.test');
    assert.ok(e.lines.includes('AUTH SCRAM-SHA-256 PLAIN LOGIN'), e.text);
    const s = scramClient('alice@example.test', 'secret');
    const r1 = await c.command(`AUTH SCRAM-SHA-256 ${s.first}`);
    assert.equal(r1.code, 334);
    const fin = await s.final(r1.text);
    const r2 = await c.command(fin.msg);
    assert.equal(r2.code, 334);
    assert.equal(Buffer.from(r2.text, 'base64').toString(), `v=${fin.serverSignature}`, 'the server proves it knows the secret');
    const r3 = await c.command('');
    assert.equal(r3.code, 235);
    assert.equal((await c.command('MAIL FROM:<alice@example.test>')).code, 250);
    await c.quit();

    for (const [user, pass] of [['alice@example.test', 'wrong'], ['nobody@example.test', 'secret']] as const) {
      const d = await SmtpTestClient.connect({ port: t.submissionsPort, tls: true });
      await d.command('EHLO client.test');
      const x = scramClient(user, pass);
      const a = await d.command(`AUTH SCRAM-SHA-256 ${x.first}`);
      assert.equal(a.code, 334, `${user}: a challenge even for unknown users`);
      const b = await d.command((await x.final(a.text)).msg);
      assert.equal(b.code, 535, `${user}: ${b.code} ${b.text}`);
      assert.equal(b.enhanced, '5.7.8');
      await d.quit();
    }
  } finally {
    await t.stop();
  }
});

test('a user without a SCRAM secret gets one at the next PLAIN login', async () => {
  const t = await startTestServer({});
  try {
    const { hashPassword } = await import('../../src/auth/password.ts');
    await t.server.ctx.data.addAccount('carol@example.test', await hashPassword('pw'));
    const auth = t.server.ctx.security.auth;
    assert.equal(await auth.scramSecret('carol@example.test'), null);
    assert.equal((await auth.login({ username: 'carol@example.test', password: 'pw', address: '127.0.0.1', protocol: 'test' })).ok, true);
    for (let i = 0; i < 100 && !(await t.server.ctx.data.getAccount('carol@example.test'))!.scramSecret; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(await auth.scramSecret('carol@example.test'));
  } finally {
    await t.stop();
  }
});

test('an imported Dovecot hash logs in over SMTP AUTH and is upgraded to argon2id (with a SCRAM secret)', async () => {
  const t = await startTestServer({});
  try {
    // openssl passwd -6 -salt saltsalt 'correct horse'
    const imported = '{SHA512-CRYPT}$6$saltsalt$hRM5XZ86KXEw9UOmjigeVqFgULtFB2sgpC9lXQDfMib3Zgw7mEiUvBJI2EplzfAqxL5Vvwp2scFtv/uamSo5z0';
    await t.server.ctx.data.addAccount('dave@example.test', imported);
    const c = await SmtpTestClient.connect({ port: t.submissionsPort, tls: true });
    await c.command('EHLO client.test');
    const r = await c.command(`AUTH PLAIN ${Buffer.from('\0dave@example.test\0correct horse').toString('base64')}`);
    assert.equal(r.code, 235, `${r.code} ${r.text}`);
    await c.quit();
    let account = await t.server.ctx.data.getAccount('dave@example.test');
    for (let i = 0; i < 100 && account!.passwordHash === imported; i++) {
      await new Promise((res) => setTimeout(res, 20));
      account = await t.server.ctx.data.getAccount('dave@example.test');
    }
    assert.match(account!.passwordHash!, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    assert.ok(parseScram(account!.scramSecret), 'SCRAM secret derived too');
    assert.equal((await t.server.ctx.security.auth.login({ username: 'dave@example.test', password: 'correct horse', address: '127.0.0.1', protocol: 'test' })).ok, true);
  } finally {
    await t.stop();
  }
});
