import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { run, missing } from '../helpers/cli.ts';
import { startTestServer, inbox, type TestServer } from '../helpers/server.ts';

const skip = missing('python3');
let t: TestServer;
before(async () => {
  if (!skip) t = await startTestServer();
});
after(async () => t?.stop());

test("python3 smtplib: send_message, STARTTLS, refused recipients", { skip }, async () => {
  const script = `
import smtplib, ssl, sys
from email.message import EmailMessage
port = int(sys.argv[1])
m = EmailMessage()
m['From'] = 'py@remote.test'; m['To'] = 'alice@example.test'; m['Subject'] = 'smtplib-1'
m.set_content('hello from python, ünïcode')
with smtplib.SMTP('127.0.0.1', port) as s:
    s.ehlo('py.test')
    assert s.has_extn('pipelining') and s.has_extn('8bitmime') and s.has_extn('smtputf8'), s.esmtp_features
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    s.starttls(context=ctx); s.ehlo('py.test')
    s.send_message(m)
    try:
        s.sendmail('py@remote.test', ['nobody@example.test'], 'Subject: x\\r\\n\\r\\nx\\r\\n')
        print('UNEXPECTED'); sys.exit(1)
    except smtplib.SMTPRecipientsRefused as e:
        code, msg = e.recipients['nobody@example.test']
        print('refused', code, msg.decode())
`;
  const r = await run('python3', ['-c', script, String(t.smtpPort)]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /refused 550 5\.1\.1/);
  assert.ok((await inbox(t, 'alice@example.test')).some((m) => m.subject === 'smtplib-1'));
});
