import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { run, missing } from '../helpers/cli.ts';
import { startTestServer, inbox, blobText, message, type TestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';

/**
 * Python's imaplib (Debian python3, 3.11: no IDLE method before 3.14, so IDLE goes
 * over imaplib's own connection with send()/readline()): IMAPS and STARTTLS logins,
 * SELECT, SEARCH, FETCH, STORE, COPY, UID EXPUNGE (UIDPLUS), APPEND and IDLE.
 * Certificates are not verified (self-signed): check_hostname False, CERT_NONE.
 */
const skip = missing('python3');
let t: TestServer;
before(async () => {
  if (skip) return;
  t = await startTestServer({ auth: { failure_delay: '10ms' } });
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  const from = ['bob@example.test', 'carol@remote.test', 'bob@example.test'];
  for (let i = 1; i <= 3; i++) {
    const m = message(`imaplib ${i}`, `body ${i}\r\n`).replace('From: Sender <sender@remote.test>', `From: <${from[i - 1]}>`);
    const r = await c.sendMail({ from: from[i - 1]!, to: ['alice@example.test'], message: m });
    assert.equal(r.data?.code, 250);
  }
  await c.quit();
});
after(async () => t?.stop());

const PRELUDE = `
import imaplib, ssl, sys, json, base64, re
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
imaps_port, imap_port = int(sys.argv[1]), int(sys.argv[2])
out = {}
def ok(r):
    typ, data = r
    assert typ == 'OK', r
    return data
def b64(b): return base64.b64encode(b).decode()
`;

async function python(body: string) {
  const r = await run('python3', ['-c', PRELUDE + body, String(t.imapsPort), String(t.imapPort)], { timeoutMs: 30_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, any>;
}

test('imaplib over IMAPS: login, select, search ALL / UNSEEN / FROM, fetch RFC822, BODY.PEEK[HEADER], FLAGS', { skip }, async () => {
  const o = await python(`
m = imaplib.IMAP4_SSL('127.0.0.1', imaps_port, ssl_context=ctx)
out['caps'] = list(m.capabilities)
ok(m.login('alice@example.test', 'secret'))
out['exists'] = int(ok(m.select('INBOX'))[0])
out['all'] = ok(m.search(None, 'ALL'))[0].decode()
out['unseen'] = ok(m.search(None, 'UNSEEN'))[0].decode()
out['from'] = ok(m.search(None, 'FROM', '"carol@remote.test"'))[0].decode()
data = ok(m.fetch('1', '(BODY.PEEK[HEADER] FLAGS)'))
out['header_item'] = data[0][0].decode(); out['header'] = b64(data[0][1]); out['header_tail'] = data[1].decode() if isinstance(data[1], bytes) else data[1][0].decode()
out['flags1_before'] = ok(m.fetch('1', '(FLAGS)'))[0].decode()
data = ok(m.fetch('1', '(RFC822)'))
out['rfc822'] = b64(data[0][1])
out['after_rfc822'] = [x.decode() if isinstance(x, bytes) else x[0].decode() for x in data]
out['flags1_after'] = ok(m.fetch('1', '(FLAGS)'))[0].decode()
out['unseen_after'] = ok(m.search(None, 'UNSEEN'))[0].decode()
out['uids'] = ok(m.uid('SEARCH', None, 'ALL'))[0].decode()
ok(m.close()); m.logout()
print(json.dumps(out))
`);
  assert.ok(o.caps.includes('IMAP4REV1') && o.caps.includes('IDLE') && o.caps.includes('UIDPLUS') && o.caps.includes('AUTH=PLAIN'), o.caps.join(' '));
  assert.equal(o.exists, 3);
  assert.equal(o.all, '1 2 3');
  assert.equal(o.unseen, '1 2 3');
  assert.equal(o.from, '2');
  const rows = await inbox(t, 'alice@example.test');
  const stored = await blobText(t, rows[0]!.blobHash);
  const header = stored.slice(0, stored.indexOf('\r\n\r\n') + 4);
  assert.equal(Buffer.from(o.header, 'base64').toString('latin1'), header);
  assert.equal(o.header_item, `1 (BODY[HEADER] {${Buffer.byteLength(header)}}`);
  assert.equal(o.header_tail, ' FLAGS (\\Recent))');
  // \Recent: imaplib is an IMAP4rev1 client, and this is the first session to see the messages
  assert.equal(o.flags1_before, '1 (FLAGS (\\Recent))', 'BODY.PEEK does not set \\Seen');
  assert.equal(Buffer.from(o.rfc822, 'base64').toString('latin1'), stored);
  assert.match(o.flags1_after, /^1 \(FLAGS \((\\Seen \\Recent|\\Recent \\Seen)\)\)$/, 'RFC822 sets \\Seen (RFC 3501 §6.4.5)');
  assert.equal(o.unseen_after, '2 3');
  assert.equal(o.uids, rows.map((r) => r.uid).join(' '));
});

test('imaplib over STARTTLS: LOGIN refused in cleartext (LOGINDISABLED), works after IMAP4.starttls()', { skip }, async () => {
  const o = await python(`
m = imaplib.IMAP4('127.0.0.1', imap_port)
out['caps_plain'] = list(m.capabilities)
try:
    m.login('alice@example.test', 'secret'); out['cleartext_login'] = 'accepted'
except imaplib.IMAP4.error as e:
    out['cleartext_login'] = str(e)
ok(m.starttls(ssl_context=ctx))
out['caps_tls'] = list(m.capabilities)
out['login'] = ok(m.login('alice@example.test', 'secret'))[0].decode()
out['exists'] = int(ok(m.select('INBOX', readonly=True))[0])
out['noop'] = m.noop()[0]
out['logout'] = m.logout()[0]
print(json.dumps(out))
`);
  assert.ok(o.caps_plain.includes('STARTTLS') && o.caps_plain.includes('LOGINDISABLED'), o.caps_plain.join(' '));
  assert.notEqual(o.cleartext_login, 'accepted');
  assert.match(o.cleartext_login, /PRIVACYREQUIRED|LOGINDISABLED/);
  assert.ok(!o.caps_tls.includes('STARTTLS') && o.caps_tls.includes('AUTH=PLAIN'), o.caps_tls.join(' '));
  assert.match(o.login, /Logged in/);
  assert.equal(o.exists, 3);
  assert.equal(o.noop, 'OK');
  assert.equal(o.logout, 'BYE');
});

test('imaplib: store +FLAGS \\Seen, copy to Archive, uid expunge, append with flags and date', { skip }, async () => {
  const o = await python(`
m = imaplib.IMAP4_SSL('127.0.0.1', imaps_port, ssl_context=ctx)
ok(m.login('alice@example.test', 'secret'))
ok(m.select('INBOX'))
out['store'] = ok(m.store('2', '+FLAGS', '(\\\\Seen \\\\Flagged)'))[0].decode()
typ, data = m.copy('2:3', 'Archive')
out['copy'] = [typ, data[0].decode()]
typ, data = m.uid('STORE', '3', '+FLAGS.SILENT', '(\\\\Deleted)'); assert typ == 'OK'
ok(m.uid('EXPUNGE', '3'))
out['uid_expunge'] = [x.decode() for x in m.response('EXPUNGE')[1]]
out['after'] = ok(m.search(None, 'ALL'))[0].decode()
msg = b'From: alice@example.test\\r\\nTo: bob@example.test\\r\\nSubject: appended by imaplib\\r\\n\\r\\nHello from Python.\\r\\n'
typ, data = m.append('Drafts', '(\\\\Draft \\\\Seen)', imaplib.Time2Internaldate(1700000000), msg)
out['append'] = [typ, data[0].decode()]
out['msg'] = b64(msg)
m.logout()
print(json.dumps(out))
`);
  assert.match(o.store, /^2 \(FLAGS \((\\Seen \\Flagged|\\Flagged \\Seen)\)\)$/);
  assert.equal(o.copy[0], 'OK');
  assert.match(o.copy[1], /^\[COPYUID \d+ 2:3 1:2\] /);
  const inb = await inbox(t, 'alice@example.test');
  assert.deepEqual(inb.map((r) => r.uid), [1, 2]);
  assert.deepEqual([...inb[1]!.flags].sort(), ['\\Flagged', '\\Seen']);
  const archive = await inbox(t, 'alice@example.test', 'Archive');
  assert.deepEqual(archive.map((r) => r.subject), ['imaplib 2', 'imaplib 3']);
  assert.deepEqual([...archive[0]!.flags].sort(), ['\\Flagged', '\\Seen'], 'COPY keeps the flags (RFC 9051 §6.4.7)');
  assert.deepEqual(o.uid_expunge, ['3'], 'UID EXPUNGE 3 expunges message 3 only');
  assert.equal(o.after, '1 2');
  assert.equal(o.append[0], 'OK');
  assert.match(o.append[1], /^\[APPENDUID \d+ \d+\]/);
  const drafts = await inbox(t, 'alice@example.test', 'Drafts');
  assert.equal(drafts.length, 1);
  assert.equal(await blobText(t, drafts[0]!.blobHash), Buffer.from(o.msg, 'base64').toString('latin1'));
  assert.deepEqual([...drafts[0]!.flags].sort(), ['\\Draft', '\\Seen']);
  assert.equal(drafts[0]!.internalDate, 1700000000_000);
});

test('imaplib: IDLE over its connection; a message delivered over SMTP arrives as "* n EXISTS"; DONE ends it', { skip }, async () => {
  const script = `${PRELUDE}
m = imaplib.IMAP4_SSL('127.0.0.1', imaps_port, ssl_context=ctx)
ok(m.login('alice@example.test', 'secret'))
n = int(ok(m.select('INBOX'))[0])
tag = m._new_tag()
m.send(tag + b' IDLE\\r\\n')
cont = m.readline()
assert cont.startswith(b'+'), cont
print('IDLING', n, flush=True)
seen = []
while True:
    line = m.readline().rstrip(b'\\r\\n').decode()
    seen.append(line)
    if re.match(r'^\\* \\d+ EXISTS$', line): break
m.send(b'DONE\\r\\n')
while True:
    line = m.readline().rstrip(b'\\r\\n').decode()
    seen.append(line)
    if line.startswith(tag.decode() + ' '): break
out['seen'] = seen; out['n'] = n
out['noop'] = m.noop()[0]
out['subject'] = ok(m.fetch(str(n + 1), '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])'))[0][1].decode().strip()
m.logout()
print(json.dumps(out))
`;
  const child = spawn('python3', ['-c', script, String(t.imapsPort), String(t.imapPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (/^IDLING \d+$/m.test(stdout)) resolve();
    });
    void exited.then(() => reject(new Error(`python3 ended before IDLE: ${stdout}${stderr}`)));
  });
  const smtp = await SmtpTestClient.connect({ path: t.socketPath });
  const r = await smtp.sendMail({ from: 'bob@example.test', to: ['alice@example.test'], message: message('idle wake-up') });
  assert.equal(r.data?.code, 250);
  await smtp.quit();
  const code = await exited;
  clearTimeout(killer);
  assert.equal(code, 0, stdout + stderr);
  const o = JSON.parse(stdout.trim().split('\n').pop()!) as { seen: string[]; n: number; noop: string; subject: string };
  assert.ok(o.seen.includes(`* ${o.n + 1} EXISTS`), o.seen.join('\n'));
  assert.match(o.seen.at(-1)!, /^\S+ OK/);
  assert.equal(o.noop, 'OK');
  assert.equal(o.subject, 'Subject: idle wake-up');
});
