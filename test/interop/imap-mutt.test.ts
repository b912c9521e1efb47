import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { run, missing } from '../helpers/cli.ts';
import { startTestServer, inbox, blobText, message, tempDir, type TestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';

/**
 * mutt (Debian package mutt, 2.2.x, GnuTLS) against the IMAP server.
 *
 * mutt's index is a curses screen: with TERM=dumb ncurses cannot address the cursor
 * and mutt never draws the index, and keys given with -e 'push …' run before the first
 * redraw, so nothing shows what mutt read. So mutt runs in a pseudo-terminal (a small
 * python3 pty driver, "expect" style) with TERM=vt100 (in ncurses-base, always there):
 * the driver waits until the index shows the subjects, then types default key bindings
 * all at once as typeahead (l limit, C copy, F flag, d delete, $ sync, q quit). Waiting
 * for text between keys is not reliable: curses redraws only the changed part of a line
 * ("Copying…" over "Copy to…" comes out as "ing to…"). Each step has a timeout and the
 * whole run a hard kill, so a hang fails the test instead of blocking the suite.
 * (delete=yes: otherwise "Purge 1 deleted message?" would swallow the q.)
 * Batch mode (mutt -s, no terminal) is tested too: it sends through submissions and
 * saves the Fcc copy into Sent over IMAP (APPEND).
 *
 * The certificate is self-signed: the server's certificate is put in certificate_file
 * (GnuTLS mutt trusts a stored certificate without asking) and ssl_verify_host=no
 * (it is issued to mx.example.test, we connect to 127.0.0.1).
 */
const skip = missing('mutt') || missing('python3');
let t: TestServer;
let dir: string;
before(async () => {
  if (skip) return;
  t = await startTestServer({ auth: { failure_delay: '10ms' } });
  dir = tempDir('postern-mutt-');
  const der = await new Promise<Buffer>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: t.imapsPort, rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().raw);
      s.destroy();
    });
    s.once('error', reject);
  });
  fs.writeFileSync(path.join(dir, 'certs'), `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`);
  fs.writeFileSync(path.join(dir, 'muttrc-imaps'), muttrc(`imaps://127.0.0.1:${t.imapsPort}/`));
  fs.writeFileSync(path.join(dir, 'muttrc-starttls'), muttrc(`imap://127.0.0.1:${t.imapPort}/`));
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  for (let i = 1; i <= 3; i++) {
    const r = await c.sendMail({ from: 'bob@example.test', to: ['alice@example.test'], message: message(`mutt ${i}`, `body ${i}\r\n`) });
    assert.equal(r.data?.code, 250);
  }
  await c.quit();
});
after(async () => {
  await t?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function muttrc(folder: string): string {
  return `set imap_user = "alice@example.test"
set imap_pass = "secret"
set folder = "${folder}"
set spoolfile = "+INBOX"
set ssl_force_tls = yes
set ssl_starttls = yes
set ssl_verify_host = no
set certificate_file = "${path.join(dir, 'certs')}"
set header_cache = ""
set message_cachedir = ""
set record = ""
set postponed = "+Drafts"
set move = no
set mark_old = no
set quit = yes
set delete = yes
set confirmappend = no
set sort = date-sent
set mail_check = 3600
set imap_keepalive = 3600
set sleep_time = 0
set wait_key = no
set from = "alice@example.test"
set realname = "Alice"
set use_from = yes
set smtp_url = "smtps://alice%40example.test@127.0.0.1:${t.submissionsPort}/"
set smtp_pass = "secret"
`;
}

/**
 * Runs argv in a pty; for each step waits until the screen output (since the previous
 * step) matches `expect`, then types `send`. Prints the whole output; exit 3 on a timeout.
 */
const DRIVER = String.raw`
import os, pty, sys, time, select, json, re
steps = json.loads(sys.argv[1]); argv = sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
out = b''
def pump(t):
    global out
    r, _, _ = select.select([fd], [], [], t)
    if r:
        try: d = os.read(fd, 65536)
        except OSError: d = b''
        if not d: return False
        out += d
    return True
def done(code, why=''):
    sys.stdout.buffer.write(out); sys.stdout.flush()
    if why: sys.stderr.write(why + '\n')
    sys.exit(code)
mark = 0
for st in steps:
    end = time.time() + st.get('timeout', 15)
    while not re.search(st['expect'].encode(), out[mark:], re.S):
        if time.time() > end or not pump(0.1):
            os.kill(pid, 9); done(3, 'TIMEOUT waiting for %r' % st['expect'])
    mark = len(out)
    time.sleep(0.2)
    os.write(fd, st['send'].encode())
end = time.time() + 15
while time.time() < end:
    pump(0.1)
    p, status = os.waitpid(pid, os.WNOHANG)
    if p:
        while pump(0.05) and time.time() < end: pass
        done(0 if os.waitstatus_to_exitcode(status) == 0 else 4, 'mutt exit %d' % os.waitstatus_to_exitcode(status))
os.kill(pid, 9); done(3, 'TIMEOUT waiting for mutt to exit')
`;

interface Step {
  expect: string;
  send: string;
  timeout?: number;
}

async function mutt(config: string, steps: Step[]) {
  const r = await run('python3', ['-c', DRIVER, JSON.stringify(steps), 'mutt', '-n', '-F', path.join(dir, config)], {
    env: { HOME: dir, TERM: 'vt100', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', MAIL: '', COLUMNS: '100', LINES: '30' },
    timeoutMs: 60_000,
  });
  // The screen without escape sequences, for assertion messages and matching.
  const screen = r.stdout.replace(/\x1b\[[0-9;?]*[a-zA-Z]|\x1b[()][0-9A-B]|\x1b[=>]/g, '\n').replace(/\r/g, '\n');
  assert.equal(r.status, 0, `${r.stderr}\n${screen}`);
  return screen;
}

const INDEX = 'mutt 1.*mutt 2.*mutt 3.*Msgs:3';

test('mutt over IMAPS: logs in with the configured password, shows the INBOX index, copies a message to Archive and flags it', { skip }, async () => {
  const screen = await mutt('muttrc-imaps', [
    // limit the index to "mutt 2" (l), copy it (C) to =Archive (^U clears the suggested name), flag it (F), sync ($), quit (q)
    { expect: INDEX, send: 'l~s "mutt 2"\rC\x15=Archive\rF$q' },
  ]);
  assert.match(screen, /Authenticating \((SCRAM-SHA-256|PLAIN|LOGIN)\)/);
  for (const s of ['mutt 1', 'mutt 2', 'mutt 3']) assert.ok(screen.includes(s), `index shows "${s}":\n${screen}`);
  const archive = await inbox(t, 'alice@example.test', 'Archive');
  assert.deepEqual(archive.map((m) => m.subject), ['mutt 2'], 'COPY (server-side, UID COPY) into Archive');
  const src = (await inbox(t, 'alice@example.test')).find((m) => m.subject === 'mutt 2')!;
  assert.equal(await blobText(t, archive[0]!.blobHash), await blobText(t, src.blobHash));
  assert.ok(src.flags.includes('\\Flagged'), `flags ${src.flags.join(' ')}`);
  for (const m of await inbox(t, 'alice@example.test')) if (m.subject !== 'mutt 2') assert.deepEqual(m.flags, [], m.subject);
});

test('mutt over STARTTLS (imap:// with ssl_starttls): deletes a message and expunges it on sync', { skip }, async () => {
  const screen = await mutt('muttrc-starttls', [{ expect: INDEX, send: 'l~s "mutt 3"\rd$q' }]);
  assert.match(screen, /SSL\/TLS connection using TLS/);
  const subjects = (await inbox(t, 'alice@example.test')).map((m) => m.subject);
  assert.deepEqual(subjects.sort(), ['mutt 1', 'mutt 2'], `the server's INBOX after mutt's sync:\n${screen}`);
});

test('mutt in batch mode (-s, no terminal): sends through submissions and saves the Fcc copy into Sent over IMAP', { skip }, async () => {
  const cfg = path.join(dir, 'muttrc-batch');
  fs.writeFileSync(cfg, fs.readFileSync(path.join(dir, 'muttrc-imaps'), 'utf8').replace('set record = ""', 'set record = "+Sent"\nset copy = yes'));
  const r = await run('mutt', ['-n', '-F', cfg, '-s', 'mutt batch', 'bob@example.test'], {
    input: 'Sent by mutt in batch mode.\n',
    env: { HOME: dir, TERM: 'dumb', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' },
    timeoutMs: 30_000,
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const sent = await inbox(t, 'alice@example.test', 'Sent');
  assert.deepEqual(sent.map((m) => m.subject), ['mutt batch'], 'APPENDed to Sent');
  assert.ok(sent[0]!.flags.includes('\\Seen'), sent[0]!.flags.join(' '));
  const copy = await blobText(t, sent[0]!.blobHash);
  assert.match(copy, /^Subject: mutt batch\r$/m);
  assert.match(copy, /\r\n\r\nSent by mutt in batch mode\.\r\n$/);
  const got = (await inbox(t, 'bob@example.test')).filter((m) => m.subject === 'mutt batch');
  assert.equal(got.length, 1, 'delivered to bob through submissions');
});
