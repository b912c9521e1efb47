import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, missing } from '../helpers/cli.ts';
import { startTestServer, inbox, blobText, type TestServer } from '../helpers/server.ts';

/** Python's smtplib as a submission client: STARTTLS + login, SMTP_SSL (implicit TLS), failures. */

const skip = missing('python3');
const FAILURE_DELAY_MS = 300;
let t: TestServer;
before(async () => {
  if (!skip) t = await startTestServer({ auth: { failure_delay: `${FAILURE_DELAY_MS}ms` } });
});
after(async () => t?.stop());

/** Python prelude: ports from argv, a context that accepts the self-signed certificate. */
const PRELUDE = `
import smtplib, ssl, sys, time
from email.message import EmailMessage
sub, subs = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
`;

const py = (script: string) => run('python3', ['-c', PRELUDE + script, String(t.submissionPort), String(t.submissionsPort)], { timeoutMs: 60_000 });

test('smtplib: SMTP + starttls + login + sendmail on the submission port', { skip }, async () => {
  const r = await py(`
with smtplib.SMTP('127.0.0.1', sub, timeout=20) as s:
    s.ehlo('py.test')
    assert s.has_extn('starttls') and not s.has_extn('auth'), s.esmtp_features
    s.starttls(context=ctx)
    s.ehlo('py.test')
    print('auth', s.esmtp_features.get('auth'))
    print('login', *s.login('alice@example.test', 'secret'))
    msg = 'From: Alice <alice@example.test>\\r\\nTo: bob@example.test\\r\\nSubject: smtplib-587\\r\\n\\r\\nvia starttls\\r\\n'
    print('refused', s.sendmail('alice@example.test', ['bob@example.test'], msg))
    print('tls', s.sock.version())
`);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /auth .*PLAIN.*LOGIN/);
  assert.match(r.stdout, /login 235 b'2\.7\.0/);
  assert.match(r.stdout, /refused \{\}/);
  assert.match(r.stdout, /tls TLSv1\.[23]/);
  const m = (await inbox(t, 'bob@example.test')).find((x) => x.subject === 'smtplib-587');
  assert.ok(m, 'delivered to bob');
  const text = await blobText(t, m.blobHash);
  assert.match(text, /with ESMTPSA id /);
  assert.match(text, /\r\n\r\nvia starttls\r\n$/);
});

test('smtplib: SMTP_SSL on the submissions port + login + send_message', { skip }, async () => {
  const r = await py(`
m = EmailMessage()
m['From'] = 'alice@example.test'; m['To'] = 'bob@example.test, carol@remote.test'; m['Subject'] = 'smtplib-465'
m.set_content('über implicit TLS')
with smtplib.SMTP_SSL('127.0.0.1', subs, context=ctx, timeout=20) as s:
    s.ehlo('py.test')
    assert not s.has_extn('starttls'), s.esmtp_features
    print('login', *s.login('alice@example.test', 'secret'))
    print('refused', s.send_message(m))
`);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /refused \{\}/);
  const m = (await inbox(t, 'bob@example.test')).find((x) => x.subject === 'smtplib-465');
  assert.ok(m, 'delivered to bob');
  const raw = await t.server.ctx.blobs.readAll(m.blobHash);
  assert.match(raw.toString('latin1'), /with ESMTPSA id /);
  assert.ok(raw.includes(Buffer.from('über implicit TLS', 'utf8')) || /Content-Transfer-Encoding: (base64|quoted-printable)/i.test(raw.toString('latin1')));
});

test('smtplib: a wrong password raises SMTPAuthenticationError 535 after the failure delay; the session stays usable', { skip }, async () => {
  const r = await py(`
with smtplib.SMTP('127.0.0.1', sub, timeout=30) as s:
    s.starttls(context=ctx)
    t0 = time.monotonic()
    try:
        s.login('alice@example.test', 'wrong')
        print('UNEXPECTED'); sys.exit(1)
    except smtplib.SMTPAuthenticationError as e:
        print('autherr', e.smtp_code, e.smtp_error.decode(), 'ms', int((time.monotonic() - t0) * 1000))
    print('login', *s.login('alice@example.test', 'secret'))
`);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const m = /autherr 535 5\.7\.8 .* ms (\d+)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[1]) >= FAILURE_DELAY_MS * 0.9, `answered after ${m[1]} ms, failure_delay is ${FAILURE_DELAY_MS} ms`);
  assert.match(r.stdout, /login 235/);
});

test('smtplib: login before starttls raises SMTPNotSupportedError (AUTH not advertised in cleartext)', { skip }, async () => {
  const r = await py(`
with smtplib.SMTP('127.0.0.1', sub, timeout=20) as s:
    s.ehlo('py.test')
    try:
        s.login('alice@example.test', 'secret')
        print('UNEXPECTED'); sys.exit(1)
    except smtplib.SMTPNotSupportedError as e:
        print('notsupported', e)
    code, msg = s.docmd('AUTH', 'PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=')
    print('forced', code, msg.decode())
    code, msg = s.docmd('MAIL', 'FROM:<alice@example.test>')
    print('mail', code, msg.decode())
`);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /notsupported /);
  assert.match(r.stdout, /forced 530 5\.7\.0/, 'AUTH sent anyway is refused in cleartext');
  assert.match(r.stdout, /mail 530 5\.7\.0/, 'not logged in');
});
