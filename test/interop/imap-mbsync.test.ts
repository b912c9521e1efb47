import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { run, missing } from '../helpers/cli.ts';
import { startTestServer, inbox, blobText, message, tempDir, type TestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';

/**
 * mbsync (Debian package isync, 1.4.x) syncs INBOX and a second folder both ways
 * between the server (the "Far" IMAP store) and a local Maildir (the "Near" store):
 * the first run pulls everything, a new local message is APPENDed, a flag set by
 * renaming a maildir file is STOREd, a message expunged on the server is deleted
 * locally (and a local deletion is expunged on the server), and a run with nothing
 * to do sends no APPEND, STORE, EXPUNGE nor body FETCH. IMAPS and STARTTLS.
 *
 * isync 1.4 has no "TLSVerify no": the server's self-signed certificate, fetched
 * from the server, is the CertificateFile (an exact match is trusted as is).
 * Maildir files have LF line ends (mbsync converts CRLF on the way in and out), and
 * mbsync 1.4 inserts its own "X-TUID:" header (its fallback to find a copied message's
 * new UID) into every message it copies, in either direction: comparisons drop it.
 */
const skip = missing('mbsync');
let t: TestServer;
let dir: string;
let maildir: string;
before(async () => {
  if (skip) return;
  t = await startTestServer({ auth: { failure_delay: '10ms' } });
  dir = tempDir('postern-mbsync-');
  maildir = path.join(dir, 'Mail');
  fs.mkdirSync(path.join(dir, 'home'));
  fs.mkdirSync(maildir); // mbsync creates the folders, not the store's root
  // The certificate the server presents, as PEM: mbsync trusts exactly it.
  const der = await new Promise<Buffer>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: t.imapsPort, rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().raw);
      s.destroy();
    });
    s.once('error', reject);
  });
  fs.writeFileSync(path.join(dir, 'cert.pem'), `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`);
  writeConfig('mbsyncrc', 'IMAPS', t.imapsPort);
  writeConfig('mbsyncrc-starttls', 'STARTTLS', t.imapPort);

  const c = await SmtpTestClient.connect({ path: t.socketPath });
  for (let i = 1; i <= 3; i++) {
    const r = await c.sendMail({ from: 'bob@example.test', to: ['alice@example.test'], message: message(`mbsync ${i}`, `body ${i}\r\nline two, with trailing spaces  \r\n`) });
    assert.equal(r.data?.code, 250);
  }
  await c.quit();
  const imap = await login();
  try {
    assert.equal((await imap.command('CREATE Work')).status, 'OK');
    const m = message('work item', 'In the Work folder.\r\n');
    const r = await imap.command(`APPEND Work (\\Flagged) {${Buffer.byteLength(m)}+}\r\n${m}`);
    assert.equal(r.status, 'OK', r.text);
  } finally {
    imap.close();
  }
});
after(async () => {
  await t?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, sslType: 'IMAPS' | 'STARTTLS', port: number): void {
  fs.writeFileSync(
    path.join(dir, name),
    `IMAPAccount postern
Host 127.0.0.1
Port ${port}
User alice@example.test
Pass secret
SSLType ${sslType}
SystemCertificates no
CertificateFile ${path.join(dir, 'cert.pem')}

IMAPStore postern-far
Account postern

MaildirStore local-near
Path ${maildir}/
Inbox ${maildir}/INBOX
SubFolders Verbatim

Channel postern
Far :postern-far:
Near :local-near:
Patterns INBOX Work
Create Near
Expunge Both
SyncState *
Sync All
`,
  );
}

async function login(): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  assert.equal((await c.login()).status, 'OK');
  return c;
}

/** Runs mbsync over every channel; -Dn prints the IMAP conversation (">>> tag command") on stdout. */
async function mbsync(config = 'mbsyncrc') {
  const r = await run('mbsync', ['-c', path.join(dir, config), '-a', '-V', '-Dn'], { env: { HOME: path.join(dir, 'home') }, timeoutMs: 60_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const sent = r.stdout.split(/\r?\n/).filter((l) => l.startsWith('>>> ')).map((l) => l.replace(/^>>> \d+ /, ''));
  return { ...r, sent };
}

interface Local {
  file: string;
  flags: string;
  bytes: string;
}

/** The local messages of a folder keyed by the server's UID, via mbsync's sync state ("farUid nearUid flags"). */
function local(box: string): Map<number, Local> {
  const base = path.join(maildir, box);
  const byNear = new Map<number, string>();
  for (const sub of ['cur', 'new']) {
    for (const f of fs.readdirSync(path.join(base, sub))) {
      const m = /,U=(\d+)/.exec(f);
      assert.ok(m, `maildir file without a UID: ${sub}/${f}`);
      byNear.set(Number(m[1]), path.join(base, sub, f));
    }
  }
  const out = new Map<number, Local>();
  const [, pairs = ''] = fs.readFileSync(path.join(base, '.mbsyncstate'), 'latin1').split('\n\n');
  for (const line of pairs.split('\n').filter(Boolean)) {
    const [far, near] = line.split(' ').map(Number) as [number, number];
    if (!far || !near) continue; // one side only (not yet propagated)
    const file = byNear.get(near);
    assert.ok(file, `state names near UID ${near}, no such file`);
    byNear.delete(near);
    out.set(far, { file, flags: /:2,([A-Z]*)$/.exec(file)?.[1] ?? '', bytes: fs.readFileSync(file, 'latin1') });
  }
  assert.deepEqual([...byNear.values()], [], 'every local file is paired with a server message');
  return out;
}

const noTuid = (s: string) => s.replace(/^X-TUID: [^\r\n]*\r?\n/m, '');
const lf = (s: string) => s.replace(/\r\n/g, '\n');
const crlf = (s: string) => s.replace(/\r?\n/g, '\r\n');

test('mbsync: the first run over IMAPS creates the local folders and pulls every message byte for byte, with flags', { skip }, async () => {
  const r = await mbsync();
  assert.match(r.stdout, /Connection is now encrypted/);
  assert.ok(r.sent.some((c) => /^UID FETCH \S+ \(.*BODY\.PEEK\[\]/.test(c)), r.sent.join('\n'));
  for (const box of ['INBOX', 'Work']) {
    const rows = await inbox(t, 'alice@example.test', box);
    const have = local(box);
    assert.deepEqual([...have.keys()].sort(), rows.map((m) => m.uid).sort(), box);
    for (const row of rows) {
      const l = have.get(row.uid)!;
      assert.equal(noTuid(l.bytes), lf(await blobText(t, row.blobHash)), `${box} UID ${row.uid}`);
      assert.equal(l.flags, row.flags.includes('\\Flagged') ? 'F' : '', `${box} UID ${row.uid} flags`);
    }
  }
  assert.equal(local('INBOX').size, 3);
  assert.match(local('Work').get(1)!.bytes, /^Subject: work item$/m);
});

test('mbsync: a new local message in each folder is APPENDed to the server', { skip }, async () => {
  const body = (s: string) => `From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: ${s}\nDate: Sat, 28 Nov 2026 06:00:00 +0000\nMessage-ID: <${s.replace(/\W/g, '')}@example.test>\n\nWritten locally.\n`;
  fs.writeFileSync(path.join(maildir, 'INBOX', 'new', `${Date.now()}.P1Q1.localhost`), body('local draft'));
  fs.writeFileSync(path.join(maildir, 'Work', 'cur', `${Date.now()}.P1Q2.localhost:2,S`), body('local work'));
  const r = await mbsync();
  assert.equal(r.sent.filter((c) => c.startsWith('APPEND ')).length, 2, r.sent.join('\n'));
  const row = (await inbox(t, 'alice@example.test')).find((m) => m.subject === 'local draft');
  assert.ok(row, 'pushed to INBOX');
  assert.equal(noTuid(await blobText(t, row.blobHash)), crlf(body('local draft')));
  assert.deepEqual(row.flags, []);
  const work = (await inbox(t, 'alice@example.test', 'Work')).find((m) => m.subject === 'local work');
  assert.ok(work, 'pushed to Work');
  assert.deepEqual(work.flags, ['\\Seen']);
  assert.equal(noTuid(local('INBOX').get(row.uid)?.bytes ?? ''), body('local draft'), 'the local file is paired with the new server UID');
});

test('mbsync: flags set locally by renaming the maildir file (F, S) are STOREd on the server', { skip }, async () => {
  const l = local('INBOX').get(1)!;
  fs.renameSync(l.file, `${l.file.replace(/:2,[A-Z]*$/, '')}:2,FS`);
  const r = await mbsync();
  assert.ok(r.sent.some((c) => /^UID STORE 1 \+FLAGS\.SILENT \((\\Flagged \\Seen|\\Seen \\Flagged)\)$/.test(c)), r.sent.join('\n'));
  const row = (await inbox(t, 'alice@example.test')).find((m) => m.uid === 1)!;
  assert.deepEqual([...row.flags].sort(), ['\\Flagged', '\\Seen']);
  assert.equal(local('INBOX').get(1)!.flags, 'FS');
});

test('mbsync: a message expunged on the server is deleted locally; a locally trashed one is expunged on the server', { skip }, async () => {
  const imap = await login();
  try {
    await imap.command('SELECT INBOX');
    assert.equal((await imap.command('UID STORE 2 +FLAGS.SILENT (\\Deleted)')).status, 'OK');
    assert.equal((await imap.command('UID EXPUNGE 2')).status, 'OK');
  } finally {
    imap.close();
  }
  const gone = local('INBOX').get(2)!;
  const trash = local('INBOX').get(3)!;
  fs.renameSync(trash.file, `${trash.file.replace(/:2,[A-Z]*$/, '')}:2,T`);
  const r = await mbsync();
  assert.ok(!fs.existsSync(gone.file), 'UID 2 deleted locally');
  assert.ok(r.sent.some((c) => /^UID STORE 3 \+FLAGS\.SILENT \(\\Deleted\)$/.test(c)), r.sent.join('\n'));
  const uids = (await inbox(t, 'alice@example.test')).map((m) => m.uid);
  assert.ok(!uids.includes(2) && !uids.includes(3), `server INBOX UIDs ${uids.join(',')}`);
  assert.deepEqual([...local('INBOX').keys()].sort(), uids.sort());
});

test('mbsync: a second run (over STARTTLS) with no changes transfers nothing and exits 0', { skip }, async () => {
  const snapshot = () => ['INBOX', 'Work'].map((b) => [...local(b)].map(([uid, l]) => `${b} ${uid} ${path.basename(l.file)}`)).flat().sort();
  const before = snapshot();
  const server = async () => JSON.stringify([await inbox(t, 'alice@example.test'), await inbox(t, 'alice@example.test', 'Work')]);
  const serverBefore = await server();
  const r = await mbsync('mbsyncrc-starttls');
  assert.ok(r.sent.includes('STARTTLS'), r.sent.join('\n'));
  assert.match(r.stdout, /Connection is now encrypted/);
  const writes = r.sent.filter((c) => /^(APPEND|UID STORE|STORE|EXPUNGE|UID EXPUNGE|CREATE|DELETE)\b/.test(c) || /BODY(\.PEEK)?\[/.test(c));
  assert.deepEqual(writes, [], 'no message or flag transferred');
  assert.deepEqual(snapshot(), before);
  assert.equal(await server(), serverBefore);
});
