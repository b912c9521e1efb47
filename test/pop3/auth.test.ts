import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { message, inbox } from '../helpers/server.ts';
import { Pop3TestClient, deliver, startPop3TestServer, type Pop3TestServer } from '../helpers/pop3-client.ts';

/**
 * Logging in: no USER/PASS/AUTH before TLS (STLS or POP3S) except the loopback
 * exemption, STLS with plaintext injection, AUTH (RFC 5034) with PLAIN, LOGIN and
 * SCRAM-SHA-256 through the shared SASL layer, failed logins feeding the ban guard,
 * a failing directory answered [SYS/TEMP], LOGIN-DELAY.
 */
let t: Pop3TestServer;
before(async () => {
  t = await startPop3TestServer();
  await deliver(t, 'alice@example.test', message('auth test'));
});
after(async () => t?.stop());

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('before TLS: CAPA offers STLS but neither USER nor SASL; USER, PASS and AUTH are refused with [AUTH]', async () => {
  const c = await Pop3TestClient.connect(t.pop3Port);
  const caps = (await c.multi('CAPA')).lines;
  assert.ok(caps.includes('STLS'), caps.join(' '));
  assert.ok(!caps.includes('USER') && !caps.some((l) => l.startsWith('SASL')), caps.join(' '));
  const refused = '-ERR [AUTH] Plaintext authentication disallowed on non-secure connections; use STLS or the POP3S port';
  assert.equal(await c.cmd('USER alice@example.test'), refused);
  assert.equal(await c.cmd('PASS secret'), refused);
  assert.equal(await c.cmd(`AUTH PLAIN ${b64('\0alice@example.test\0secret')}`), refused);
  assert.equal(await c.cmd('QUIT'), '+OK Logging out');
});

test('STLS: then CAPA offers USER and SASL (not STLS again), and USER/PASS log in; STLS inside TLS is refused', async () => {
  const c = await Pop3TestClient.connect(t.pop3Port);
  assert.equal(await c.stls(), '+OK Begin TLS negotiation');
  const caps = (await c.multi('CAPA')).lines;
  assert.ok(caps.includes('USER') && caps.includes('SASL SCRAM-SHA-256 PLAIN LOGIN') && !caps.includes('STLS'), caps.join(' '));
  assert.equal(await c.cmd('STLS'), '-ERR Command not permitted when TLS active');
  assert.match(await c.login(), /^\+OK Logged in, 1 messages/);
  await c.cmd('QUIT');
  const s = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.ok(!(await s.multi('CAPA')).lines.includes('STLS'));
  assert.equal(await s.cmd('STLS'), '-ERR Command not permitted when TLS active');
  s.close();
});

test('STLS injection: commands pipelined in plaintext behind STLS are discarded, never run inside TLS', async () => {
  const c = await Pop3TestClient.connect(t.pop3Port);
  // An attacker on the path appends USER/PASS (or anything) to the client's STLS.
  c.write('STLS\r\nUSER alice@example.test\r\nPASS secret\r\n');
  assert.equal(await c.line(), '+OK Begin TLS negotiation');
  // handshake by hand (the client helper's stls() sends its own STLS)
  const tls = await import('node:tls');
  c.socket.removeAllListeners('data');
  c.socket.removeAllListeners('close');
  const secure = tls.connect({ socket: c.socket, rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => {
    secure.once('secureConnect', () => resolve());
    secure.once('error', reject);
  });
  let got = '';
  secure.on('data', (d: Buffer) => (got += d.toString()));
  // Nothing was answered for the injected lines, and the session is not logged in nor holds a USER.
  secure.write('STAT\r\nPASS secret\r\n');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(got, '-ERR STAT needs a login first\r\n-ERR No user name given; send USER first\r\n');
  secure.destroy();
});

test('allow_plaintext_loopback: USER/PASS without TLS from loopback, and CAPA says so', async () => {
  const u = await startPop3TestServer({ auth: { allow_plaintext_loopback: true, failure_delay: '10ms' } });
  try {
    const c = await Pop3TestClient.connect(u.pop3Port);
    const caps = (await c.multi('CAPA')).lines;
    assert.ok(caps.includes('USER') && caps.includes('STLS'), caps.join(' '));
    assert.match(await c.login(), /^\+OK Logged in, 0 messages/);
    await c.cmd('QUIT');
  } finally {
    await u.stop();
  }
});

test('wrong password: -ERR [AUTH], the client may try again', async () => {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.equal(await c.login('alice@example.test', 'wrong'), '-ERR [AUTH] Authentication failed');
  assert.equal(await c.login('nobody@example.test', 'secret'), '-ERR [AUTH] Authentication failed');
  assert.match(await c.login(), /^\+OK/);
  await c.cmd('QUIT');
});

test('AUTH PLAIN with an initial response, with an empty challenge, and with authzid = authcid', async () => {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.equal(await c.cmd(`AUTH PLAIN ${b64('\0alice@example.test\0secret')}`), '+OK Logged in, 1 messages (' + (await inbox(t, 'alice@example.test'))[0]!.size + ' octets)');
  await c.cmd('QUIT');
  const d = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.equal(await d.cmd('AUTH PLAIN'), '+ ');
  assert.match(await d.cmd(b64('alice@example.test\0alice@example.test\0secret')), /^\+OK Logged in/);
  await d.cmd('QUIT');
  const e = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.equal(await e.cmd(`AUTH PLAIN ${b64('bob@example.test\0alice@example.test\0secret')}`), '-ERR [AUTH] Authorization identity not permitted');
  assert.equal(await e.cmd(`AUTH PLAIN ${b64('\0alice@example.test\0wrong')}`), '-ERR [AUTH] Authentication failed');
  e.close();
});

test('AUTH LOGIN; "*" aborts; bad base64, unknown mechanism; AUTH alone lists the mechanisms', async () => {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.deepEqual((await c.multi('AUTH')).lines, ['SCRAM-SHA-256', 'PLAIN', 'LOGIN']);
  assert.equal(await c.cmd('AUTH CRAM-MD5'), '-ERR Unsupported mechanism; use one of SCRAM-SHA-256 PLAIN LOGIN');
  assert.equal(await c.cmd('AUTH PLAIN !!!!'), '-ERR Invalid base64 in the initial response');
  assert.equal(await c.cmd('AUTH PLAIN'), '+ ');
  assert.equal(await c.cmd('*'), '-ERR Authentication aborted');
  assert.equal(await c.cmd('AUTH LOGIN'), `+ ${b64('Username:')}`);
  assert.equal(await c.cmd(b64('alice@example.test')), `+ ${b64('Password:')}`);
  assert.match(await c.cmd(b64('secret')), /^\+OK Logged in/);
  await c.cmd('QUIT');
  const d = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.equal(await d.cmd(`AUTH LOGIN ${b64('alice@example.test')}`), `+ ${b64('Password:')}`);
  assert.equal(await d.cmd('not base64!'), '-ERR Invalid base64 in the response');
  d.close();
});

/** The client side of RFC 5802 SCRAM-SHA-256. */
function scramClient(user: string, password: string) {
  const cnonce = crypto.randomBytes(12).toString('base64');
  return {
    first: b64(`n,,n=${user},r=${cnonce}`),
    final(serverFirstB64: string) {
      const serverFirst = Buffer.from(serverFirstB64, 'base64').toString();
      const a = Object.fromEntries(serverFirst.split(',').map((p) => [p[0], p.slice(2)]));
      const salted = crypto.pbkdf2Sync(password, Buffer.from(a.s!, 'base64'), Number(a.i), 32, 'sha256');
      const clientKey = crypto.createHmac('sha256', salted).update('Client Key').digest();
      const storedKey = crypto.createHash('sha256').update(clientKey).digest();
      const withoutProof = `c=biws,r=${a.r}`;
      const authMessage = `n=${user},r=${cnonce},${serverFirst},${withoutProof}`;
      const sig = crypto.createHmac('sha256', storedKey).update(authMessage).digest();
      const proof = Buffer.from(clientKey.map((b, i) => b ^ sig[i]!));
      const serverKey = crypto.createHmac('sha256', salted).update('Server Key').digest();
      return { msg: b64(`${withoutProof},p=${proof.toString('base64')}`), serverSignature: crypto.createHmac('sha256', serverKey).update(authMessage).digest('base64') };
    },
  };
}

test('AUTH SCRAM-SHA-256: the server signature comes as a last challenge, then +OK; a wrong password fails', async () => {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  const s = scramClient('alice@example.test', 'secret');
  const first = await c.cmd(`AUTH SCRAM-SHA-256 ${s.first}`);
  assert.match(first, /^\+ /);
  const f = s.final(first.slice(2));
  const last = await c.cmd(f.msg);
  assert.equal(Buffer.from(last.slice(2), 'base64').toString(), `v=${f.serverSignature}`);
  assert.match(await c.cmd(''), /^\+OK Logged in/);
  await c.cmd('QUIT');
  const d = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  const x = scramClient('alice@example.test', 'wrong');
  const r = await d.cmd(`AUTH SCRAM-SHA-256 ${x.first}`);
  assert.equal(await d.cmd(x.final(r.slice(2)).msg), '-ERR [AUTH] Authentication failed');
  d.close();
});

test('a directory that throws is a temporary failure: -ERR [SYS/TEMP], not a failed login (no ban count)', async () => {
  const auth = t.server.ctx.security.auth;
  const original = auth.login.bind(auth);
  auth.login = async () => {
    throw new Error('LDAP server unreachable');
  };
  try {
    for (let i = 0; i < 4; i++) {
      const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true, localAddress: '127.0.0.9' });
      assert.equal(await c.login(), '-ERR [SYS/TEMP] Temporary authentication failure, try again later');
      assert.equal(await c.cmd(`AUTH PLAIN ${b64('\0alice@example.test\0secret')}`), '-ERR [SYS/TEMP] Temporary authentication failure, try again later');
      c.close();
    }
  } finally {
    auth.login = original;
  }
  assert.equal(await t.server.ctx.security.bans.banned('127.0.0.9'), null);
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true, localAddress: '127.0.0.9' });
  assert.match(await c.login(), /^\+OK/);
  await c.cmd('QUIT');
});

test('bans: three failed logins from one address ban it; its next connection gets a -ERR greeting, on POP3 and IMAP alike', async () => {
  const addr = '127.0.0.7';
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true, localAddress: addr });
  for (let i = 0; i < 3; i++) assert.equal(await c.login('alice@example.test', `wrong${i}`), '-ERR [AUTH] Authentication failed');
  // the connection opened before the ban gets no more guesses
  assert.equal(await c.login(), '-ERR [AUTH] Too many failed logins from your address; try again later');
  await c.waitClosed();
  const d = await Pop3TestClient.connect(t.pop3sPort, { tls: true, localAddress: addr });
  assert.equal(d.greeting, '-ERR [SYS/TEMP] Too many failed logins from your address; try again later');
  await d.waitClosed();
  const ban = await t.server.ctx.security.bans.banned(addr);
  assert.ok(ban);
  await t.server.ctx.security.bans.unban(addr);
});

test('LOGIN-DELAY: CAPA advertises it, and a second login within the delay gets -ERR [LOGIN-DELAY]', async () => {
  const u = await startPop3TestServer({ pop3: { login_delay: '60s' } });
  try {
    const c = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    assert.ok((await c.multi('CAPA')).lines.includes('LOGIN-DELAY 60'));
    assert.match(await c.login(), /^\+OK/);
    await c.cmd('QUIT');
    const d = await Pop3TestClient.connect(u.pop3sPort, { tls: true });
    assert.equal(await d.login(), '-ERR [LOGIN-DELAY] Logins are allowed every 60 seconds');
    assert.match(await d.login('bob@example.test'), /^\+OK/);
    await d.cmd('QUIT');
  } finally {
    await u.stop();
  }
});
