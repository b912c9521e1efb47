import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, missing } from '../helpers/cli.ts';
import { inbox, blobText, message } from '../helpers/server.ts';
import { deliver, startPop3TestServer, type Pop3TestServer } from '../helpers/pop3-client.ts';

/**
 * Python's poplib (Debian python3): POP3_SSL (RFC 8314) and POP3 with stls()
 * (RFC 2595); capa, user/pass_, stat, list, uidl, retr (dot-stuffing undone by
 * poplib must give the stored bytes back), top, dele, rset, noop, utf8, quit, and
 * the -ERR [AUTH] poplib raises as error_proto. Certificates are not verified
 * (self-signed): check_hostname False, CERT_NONE.
 */
const skip = missing('python3');
let t: Pop3TestServer;
const bodies = ['one\r\n', '.dot first\r\n..two dots\r\n.\r\nafter a lone dot\r\n', 'l1\r\nl2\r\nl3\r\n'];
before(async () => {
  if (skip) return;
  t = await startPop3TestServer({}, { users: ['alice@example.test', 'bob@example.test'] });
  for (let i = 0; i < bodies.length; i++) await deliver(t, 'alice@example.test', message(`poplib ${i + 1}`, bodies[i]));
});
after(async () => t?.stop());

const PRELUDE = `
import poplib, ssl, sys, json, base64
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
pop3s_port, pop3_port = int(sys.argv[1]), int(sys.argv[2])
out = {}
def s(b): return b.decode() if isinstance(b, bytes) else b
def msg(lines): return base64.b64encode(b''.join(l + b'\\r\\n' for l in lines)).decode()
`;

async function python(body: string): Promise<Record<string, any>> {
  const r = await run('python3', ['-c', PRELUDE + body, String(t.pop3sPort), String(t.pop3Port)], { timeoutMs: 30_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, any>;
}

test('poplib over POP3S: capa, stat, list, uidl, retr byte for byte (dot-stuffing undone), top, noop, quit', { skip }, async () => {
  const o = await python(`
p = poplib.POP3_SSL('127.0.0.1', pop3s_port, context=ctx)
out['welcome'] = s(p.getwelcome())
out['capa'] = {k: v for k, v in p.capa().items()}
out['user'] = s(p.user('alice@example.test'))
out['pass'] = s(p.pass_('secret'))
out['stat'] = list(p.stat())
out['list'] = [s(x) for x in p.list()[1]]
out['uidl'] = [s(x) for x in p.uidl()[1]]
out['retr'] = [msg(p.retr(i)[1]) for i in (1, 2, 3)]
out['top'] = msg(p.top(3, 2)[1])
out['noop'] = s(p.noop())
out['quit'] = s(p.quit())
print(json.dumps(out))
`);
  assert.equal(o.welcome, '+OK mx.example.test Postern POP3 ready');
  for (const k of ['TOP', 'UIDL', 'USER', 'SASL', 'RESP-CODES', 'PIPELINING', 'UTF8']) assert.ok(k in o.capa, `${k} in ${JSON.stringify(o.capa)}`);
  assert.deepEqual(o.capa.SASL, ['SCRAM-SHA-256', 'PLAIN', 'LOGIN']);
  assert.equal(o.user, '+OK Send your password');
  assert.match(o.pass, /^\+OK Logged in, 3 messages/);
  const rows = await inbox(t, 'alice@example.test');
  assert.deepEqual(o.stat, [3, rows.reduce((a, r) => a + r.size, 0)]);
  assert.deepEqual(o.list, rows.map((r, i) => `${i + 1} ${r.size}`));
  assert.equal(o.uidl.length, 3);
  for (let i = 0; i < 3; i++) assert.equal(Buffer.from(o.retr[i], 'base64').toString('latin1'), await blobText(t, rows[i]!.blobHash), `message ${i + 1}`);
  const stored3 = await blobText(t, rows[2]!.blobHash);
  assert.equal(Buffer.from(o.top, 'base64').toString('latin1'), `${stored3.slice(0, stored3.indexOf('\r\n\r\n') + 4)}l1\r\nl2\r\n`);
  assert.equal(o.noop, '+OK');
  assert.equal(o.quit, '+OK Logging out');
});

test('poplib with stls(): USER refused before it ([AUTH]), logged in after it; dele, rset, dele, quit deletes', { skip }, async () => {
  await deliver(t, 'bob@example.test', message('bob 1'));
  await deliver(t, 'bob@example.test', message('bob 2'));
  const o = await python(`
p = poplib.POP3('127.0.0.1', pop3_port)
out['capa_plain'] = sorted(p.capa().keys())
try:
    p.user('bob@example.test'); out['before'] = 'accepted'
except poplib.error_proto as e:
    out['before'] = s(e.args[0])
out['stls'] = s(p.stls(context=ctx))
out['capa_tls'] = sorted(p.capa().keys())
p.user('bob@example.test')
try:
    p.pass_('wrong'); out['wrong'] = 'accepted'
except poplib.error_proto as e:
    out['wrong'] = s(e.args[0])
p.user('bob@example.test'); p.pass_('secret')
out['dele1'] = s(p.dele(1))
out['rset'] = s(p.rset())
out['dele2'] = s(p.dele(2))
out['stat'] = list(p.stat())
out['quit'] = s(p.quit())
print(json.dumps(out))
`);
  assert.ok(o.capa_plain.includes('STLS') && !o.capa_plain.includes('USER'), o.capa_plain.join(' '));
  assert.equal(o.before, '-ERR [AUTH] Plaintext authentication disallowed on non-secure connections; use STLS or the POP3S port');
  assert.equal(o.stls, '+OK Begin TLS negotiation');
  assert.ok(!o.capa_tls.includes('STLS') && o.capa_tls.includes('USER'), o.capa_tls.join(' '));
  assert.equal(o.wrong, '-ERR [AUTH] Authentication failed');
  assert.equal(o.dele1, '+OK Message 1 deleted');
  assert.match(o.rset, /^\+OK Maildrop has 2 messages/);
  assert.equal(o.dele2, '+OK Message 2 deleted');
  assert.equal(o.stat[0], 1);
  assert.equal(o.quit, '+OK Logging out, 1 message deleted');
  assert.deepEqual((await inbox(t, 'bob@example.test')).map((m) => m.subject), ['bob 1']);
});

test('poplib utf8() (RFC 6856) and AUTH PLAIN through _shortcmd over POP3S', { skip }, async () => {
  const o = await python(`
p = poplib.POP3_SSL('127.0.0.1', pop3s_port, context=ctx)
out['utf8'] = s(p.utf8())
out['auth'] = s(p._shortcmd('AUTH PLAIN ' + base64.b64encode(b'\\0alice@example.test\\0secret').decode()))
out['stat'] = list(p.stat())
p.quit()
print(json.dumps(out))
`);
  assert.equal(o.utf8, '+OK UTF8 enabled');
  assert.match(o.auth, /^\+OK Logged in, 3 messages/);
  assert.equal(o.stat[0], 3);
});
