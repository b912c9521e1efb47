import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { dkimVerify } from 'mailauth';
import { DkimSigner, DkimKeyError, generateDkimKey, listDkimKeys, type DkimKeyInfo } from '../../src/queue/dkim.ts';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-dkim-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const silent = pino({ level: 'silent' });

/** A DNS resolver for mailauth that serves only the given TXT records. */
function resolver(records: Array<Pick<DkimKeyInfo, 'txtName' | 'txtValue'>>) {
  return async (name: string, rrtype: string): Promise<string[][]> => {
    const found = records.filter((r) => rrtype === 'TXT' && r.txtName.toLowerCase() === name.toLowerCase());
    if (!found.length) throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    // Like a real answer: the value split in strings of at most 255 characters.
    return found.map((r) => r.txtValue.match(/.{1,255}/g)!);
  };
}

async function verify(signed: Buffer | string, records: Array<Pick<DkimKeyInfo, 'txtName' | 'txtValue'>>) {
  const r = await dkimVerify(Buffer.from(signed), { resolver: resolver(records) });
  return r.results.map((x) => ({
    result: x.status.result,
    comment: x.status.comment,
    algorithm: (x.status as { header?: { a?: string } }).header?.a,
    selector: x.selector,
    domain: x.signingDomain,
  }));
}

const message = (from = '"Alice Example" <alice@example.org>') =>
  Buffer.from(
    `From: ${from}\r\n` +
      'To: Bob <bob@remote.test>,\r\n  Carol <carol@remote.test>\r\n' +
      'Subject: Hello there,\r\n\tfolded subject\r\n' +
      'Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n' +
      'Message-ID: <m1@example.org>\r\n' +
      'MIME-Version: 1.0\r\n' +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      'X-Unsigned: whatever\r\n' +
      '\r\n' +
      'Hello Bob,  \r\n\r\nthe body   with spaces.\r\n\r\n\r\n',
  );

let rsa: DkimKeyInfo;
let ed: DkimKeyInfo;

test('generate creates RSA and Ed25519 keys with mode 0600 and the TXT records', async () => {
  rsa = await generateDkimKey(dir, 'Example.ORG', { selector: 'r1' });
  assert.equal(rsa.domain, 'example.org');
  assert.equal(rsa.algorithm, 'rsa-2048');
  assert.equal(rsa.file, path.join(dir, 'example.org', 'r1.rsa.key'));
  assert.equal(rsa.txtName, 'r1._domainkey.example.org');
  assert.match(rsa.txtValue, /^v=DKIM1; k=rsa; p=MII[A-Za-z0-9+/=]+$/);
  ed = await generateDkimKey(dir, 'example.org', { selector: 'e1', algorithm: 'ed25519' });
  assert.equal(ed.algorithm, 'ed25519');
  const p = /p=(.+)$/.exec(ed.txtValue)![1]!;
  assert.equal(Buffer.from(p, 'base64').length, 32, 'RFC 8463: the raw 32-byte public key');
  assert.match(ed.txtValue, /^v=DKIM1; k=ed25519; p=/);
  for (const f of [rsa.file, ed.file]) assert.equal(fs.statSync(f).mode & 0o777, 0o600);
  assert.equal(fs.statSync(path.join(dir, 'example.org')).mode & 0o777, 0o700);
  assert.match(fs.readFileSync(rsa.file, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'example.org')).sort(), ['e1.ed25519.key', 'r1.rsa.key'], 'no temporary files left');
});

test('the default selector is postern + yyyymm', async () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-dkim-sel-'));
  try {
    const now = new Date();
    const ym = `${now.getUTCFullYear()}${String(now.getUTCMonth() + 1).padStart(2, '0')}`;
    const a = await generateDkimKey(d, 'example.net', {});
    assert.equal(a.selector, `postern${ym}`);
    const b = await generateDkimKey(d, 'example.net', { algorithm: 'ed25519' });
    assert.notEqual(b.selector, a.selector, 'rsa and ed25519 defaults do not collide');
    assert.match(b.selector, new RegExp(`^postern${ym}`));
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
});

test('generate refuses to overwrite a selector and rejects bad names', async () => {
  const before = fs.readFileSync(rsa.file, 'utf8');
  await assert.rejects(generateDkimKey(dir, 'example.org', { selector: 'r1' }), (e: Error) => e instanceof DkimKeyError && e.message.includes(rsa.file));
  await assert.rejects(generateDkimKey(dir, 'example.org', { selector: 'r1', algorithm: 'ed25519' }), /r1\.rsa\.key exists already/);
  assert.equal(fs.readFileSync(rsa.file, 'utf8'), before);
  await assert.rejects(generateDkimKey(dir, 'not a domain', {}), /not a domain name/);
  await assert.rejects(generateDkimKey(dir, '../etc', {}), /not a domain name/);
  await assert.rejects(generateDkimKey(dir, 'example.org', { selector: '../x' }), /not a valid selector/);
});

test('listDkimKeys returns every key with its TXT record', async () => {
  const keys = await listDkimKeys(dir);
  const byFile = new Map(keys.map((k) => [k.file, k]));
  assert.deepEqual(byFile.get(rsa.file), rsa);
  assert.deepEqual(byFile.get(ed.file), ed);
  assert.deepEqual(await listDkimKeys(path.join(dir, 'nothing-here')), []);
});

test('a message from the domain is signed with RSA and Ed25519, and both verify', async () => {
  const signer = new DkimSigner(dir, silent);
  const msg = message();
  const sig = await signer.sign(msg);
  assert.match(sig, /\r\n$/);
  assert.equal(sig.match(/^DKIM-Signature:/gm)?.length, 2);
  assert.match(sig, /a=rsa-sha256/);
  assert.match(sig, /a=ed25519-sha256/);
  assert.match(sig, /c=relaxed\/relaxed/);
  assert.ok(sig.split('\r\n').every((l) => l.length <= 78), 'folded');
  const h = /h=([^;]+);/.exec(sig.replace(/\r\n\s+/g, ''))![1]!.split(':');
  assert.equal(h.filter((x) => x === 'from').length, 2, 'From is oversigned');
  assert.ok(!h.includes('x-unsigned'));
  const results = await verify(Buffer.concat([Buffer.from(sig), msg]), [rsa, ed]);
  assert.deepEqual(results.map((r) => [r.result, r.algorithm, r.selector, r.domain]).sort(), [
    ['pass', 'ed25519-sha256', 'e1', 'example.org'],
    ['pass', 'rsa-sha256', 'r1', 'example.org'],
  ]);
});

test('a changed body, a changed header or an added From fails verification', async () => {
  const signer = new DkimSigner(dir, silent);
  const msg = message();
  const sig = await signer.sign(msg);
  const signed = sig + msg.toString('latin1');
  const body = await verify(signed.replace('the body', 'THE body'), [rsa, ed]);
  assert.equal(body.length, 2);
  // mailauth reports a body hash mismatch as "neutral (body hash did not verify)", RFC 6376 §6.3 as PERMFAIL.
  for (const r of body) assert.ok(r.result !== 'pass' && /body hash/.test(r.comment ?? ''), JSON.stringify(r));
  const header = await verify(signed.replace('Subject: Hello', 'Subject: Goodbye'), [rsa, ed]);
  assert.equal(header.length, 2);
  for (const r of header) assert.equal(r.result, 'fail');
  const addedFrom = Buffer.from('From: mallory@evil.test\r\n' + sig + msg.toString('latin1'));
  for (const r of await verify(addedFrom, [rsa, ed])) assert.notEqual(r.result, 'pass');
});

test('relaxed canonicalization survives whitespace changes in headers and body', async () => {
  const signer = new DkimSigner(dir, silent);
  const msg = message();
  const sig = await signer.sign(msg);
  const changed = msg
    .toString('latin1')
    .replace('Subject: Hello there,\r\n\tfolded subject', 'subject:   Hello there, folded    subject  ')
    .replace('To: Bob <bob@remote.test>,\r\n  Carol', 'To: Bob <bob@remote.test>, Carol')
    .replace('the body   with spaces.', 'the body with spaces.')
    .replace(/\r\n\r\n\r\n$/, '\r\n');
  assert.notEqual(changed, msg.toString('latin1'));
  const results = await verify(sig + changed, [rsa, ed]);
  assert.equal(results.length, 2);
  for (const r of results) assert.equal(r.result, 'pass');
});

test('From of another domain, no From, or signing disabled: no signature', async () => {
  const signer = new DkimSigner(dir, silent);
  assert.equal(await signer.sign(message('someone@other.test')), '');
  assert.equal(await signer.sign(Buffer.from('Subject: no from\r\n\r\nbody\r\n')), '');
  assert.equal(await new DkimSigner(dir, silent, { enabled: false }).sign(message()), '');
  assert.equal(await new DkimSigner(path.join(dir, 'missing'), silent).sign(message()), '');
});

test('the From domain is found behind display names, folding, groups and case', async () => {
  const signer = new DkimSigner(dir, silent);
  const froms = ['"Doe, Jane" <jane@Example.Org>', 'Jane Doe\r\n <jane@EXAMPLE.org>', 'jane@example.org (Jane)', '=?utf-8?q?J=C3=A4ne?= <jane@example.org>, other@other.test'];
  for (const f of froms) {
    const msg = message(f);
    const sig = await signer.sign(msg);
    assert.match(sig, /d=example\.org/, f);
    for (const r of await verify(sig + msg.toString('latin1'), [rsa, ed])) assert.equal(r.result, 'pass', f);
  }
});

test('messages with LF line ends, an empty body or no body are signed too', async () => {
  const signer = new DkimSigner(dir, silent);
  const lf = Buffer.from('From: a@example.org\nSubject: lf\n folded\n\nline one  \nline two\n\n');
  const lfSig = await signer.sign(lf);
  for (const r of await verify(lfSig.replace(/\r\n/g, '\n') + lf.toString(), [rsa, ed])) assert.equal(r.result, 'pass');
  const msg = Buffer.from('From: a@example.org\r\nSubject: empty\r\n\r\n');
  const sig = await signer.sign(msg);
  for (const r of await verify(sig + msg.toString(), [rsa, ed])) assert.equal(r.result, 'pass');
  const headersOnly = Buffer.from('From: a@example.org\r\nSubject: none\r\n');
  assert.notEqual(await signer.sign(headersOnly), '');
});

test('a key generated while the signer runs is used within a second (directory mtime), the newest selector first', async () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-dkim-reload-'));
  try {
    const signer = new DkimSigner(d, silent);
    assert.equal(await signer.sign(message()), '', 'no key yet');
    const first = await generateDkimKey(d, 'example.org', { selector: 'old', algorithm: 'ed25519' });
    // The signer looks at a domain's keys at most once a second (one stat per second, not per message).
    await new Promise((r) => setTimeout(r, 1050));
    const s1 = await signer.sign(message());
    assert.match(s1, /s=old;/);
    // A newer key of the same algorithm replaces it within a second, without a new signer.
    const second = await generateDkimKey(d, 'example.org', { selector: 'new', algorithm: 'ed25519' });
    assert.match(await signer.sign(message()), /s=old;/, 'not looked at again within the second');
    await new Promise((r) => setTimeout(r, 1050));
    const s2 = await signer.sign(message());
    assert.match(s2, /s=new;/);
    assert.doesNotMatch(s2, /s=old;/);
    for (const r of await verify(s2 + message().toString(), [first, second])) assert.equal(r.result, 'pass');
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
});

test('an unreadable key is logged and skipped, never thrown', async () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-dkim-bad-'));
  try {
    fs.mkdirSync(path.join(d, 'example.org'));
    fs.writeFileSync(path.join(d, 'example.org', 'broken.rsa.key'), 'not a key');
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
    assert.equal(await new DkimSigner(d, log).sign(message()), '');
    assert.ok(lines.some((l) => l.includes('broken.rsa.key')));
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
});
