import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { run, missing } from '../helpers/cli.ts';
import { inbox, message, tempDir } from '../helpers/server.ts';
import { deliver, startPop3TestServer, type Pop3TestServer } from '../helpers/pop3-client.ts';

/**
 * getmail6 (Debian package getmail6) with a SimplePOP3SSLRetriever (POP3S): into a
 * Maildir leaving mail on the server (a second run retrieves nothing new: getmail
 * remembers UIDLs, so they must be stable), and into an mboxrd file with delete =
 * true and the certificate checked against the server's self-signed one (ca_certs,
 * ssl_cert_hostname).
 */
const skip = missing('getmail');
let t: Pop3TestServer;
let dir: string;
before(async () => {
  if (skip) return;
  t = await startPop3TestServer({}, { users: ['alice@example.test', 'bob@example.test'] });
  dir = tempDir('postern-getmail-');
  if (ROOT) fs.chmodSync(dir, 0o755);
});
after(async () => {
  await t?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * getmail refuses to deliver as root (as CI runs): then its destination runs as
 * `nobody` (the destination's user option), which must own what it writes to.
 */
const ROOT = false;
function ownedByDestination(p: string): void {
  if (!ROOT) return;
  const nobody = 65534;
  fs.chownSync(p, nobody, nobody);
  if (fs.statSync(p).isDirectory()) for (const f of fs.readdirSync(p)) ownedByDestination(path.join(p, f));
}

async function getmail(name: string, retriever: string, destination: string, options: string): Promise<{ status: number; output: string }> {
  const home = path.join(dir, name);
  fs.mkdirSync(home, { recursive: true });
  if (ROOT) destination += '\nuser = nobody';
  const rc = path.join(home, 'getmailrc');
  fs.writeFileSync(rc, `[retriever]\ntype = SimplePOP3SSLRetriever\nserver = 127.0.0.1\nport = ${t.pop3sPort}\n${retriever}\n[destination]\n${destination}\n[options]\nverbose = 2\ndelivered_to = false\nreceived = false\n${options}\n`);
  const r = await run('getmail', ['--getmaildir', home, '--rcfile', rc], { env: { HOME: home }, timeoutMs: 60_000 });
  return { status: r.status, output: r.stdout + r.stderr };
}

test('getmail6: SimplePOP3SSLRetriever into a Maildir, mail left on the server; a second run retrieves nothing new', { skip }, async () => {
  for (const s of ['g1', 'g2']) await deliver(t, 'alice@example.test', message(s, `.leading dot ${s}\r\nbody ${s}\r\n`));
  const maildir = path.join(dir, 'Maildir');
  for (const sub of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(maildir, sub), { recursive: true });
  ownedByDestination(maildir);
  const retriever = 'username = alice@example.test\npassword = secret';
  const destination = `type = Maildir\npath = ${maildir}/`;
  const first = await getmail('keep', retriever, destination, 'delete = false\nread_all = false');
  assert.equal(first.status, 0, first.output);
  assert.match(first.output, /2 messages \(\d+ bytes\) retrieved/);
  const files = fs.readdirSync(path.join(maildir, 'new')).map((f) => fs.readFileSync(path.join(maildir, 'new', f), 'latin1'));
  assert.equal(files.length, 2);
  for (const s of ['g1', 'g2']) assert.ok(files.some((m) => m.includes(`Subject: ${s}\n`) && m.endsWith(`\n\n.leading dot ${s}\nbody ${s}\n`)), `${s} in\n${files.join('\n---\n')}`);
  const second = await getmail('keep', retriever, destination, 'delete = false\nread_all = false');
  assert.equal(second.status, 0, second.output);
  assert.match(second.output, /0 messages \(0 bytes\) retrieved/);
  assert.equal(fs.readdirSync(path.join(maildir, 'new')).length, 2);
  assert.equal((await inbox(t, 'alice@example.test')).length, 2);
});

test('getmail6: into an mboxrd file with delete = true and the certificate verified; the server keeps nothing', { skip }, async () => {
  await deliver(t, 'bob@example.test', message('b1', 'From the start of a line\r\n>From quoted\r\n'));
  await deliver(t, 'bob@example.test', message('b2'));
  const mbox = path.join(dir, 'bob.mbox');
  fs.writeFileSync(mbox, '');
  ownedByDestination(mbox);
  const cert = path.join(t.dir, 'tls', 'selfsigned.crt');
  const retriever = `username = bob@example.test\npassword = secret\nca_certs = ${cert}\nssl_cert_hostname = mx.example.test`;
  const r = await getmail('delete', retriever, `type = Mboxrd\npath = ${mbox}`, 'delete = true');
  assert.equal(r.status, 0, r.output);
  assert.match(r.output, /2 messages \(\d+ bytes\) retrieved/);
  const text = fs.readFileSync(mbox, 'latin1');
  assert.equal(text.match(/^From /gm)?.length, 2, text);
  // mboxrd: body lines starting with "From " or ">From " get one more ">"
  assert.ok(text.includes('\n>From the start of a line\n>>From quoted\n'), text);
  assert.equal((await inbox(t, 'bob@example.test')).length, 0);
  // and a wrong host name is refused
  await deliver(t, 'bob@example.test', message('b3'));
  const wrong = await getmail('wrong', `username = bob@example.test\npassword = secret\nca_certs = ${cert}\nssl_cert_hostname = other.example`, `type = Mboxrd\npath = ${mbox}`, 'delete = true');
  assert.notEqual(wrong.status, 0, wrong.output);
  assert.equal((await inbox(t, 'bob@example.test')).length, 1);
});
