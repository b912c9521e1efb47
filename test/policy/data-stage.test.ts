import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { pino } from 'pino';
import path from 'node:path';
import { dkimSign } from 'mailauth';
import { startTestServer, inbox, blobText, type TestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';
import { until } from '../helpers/until.ts';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.ts';
import { systemResolver } from '../../src/net/dns.ts';
import { postern, writeConfig } from '../helpers/cli.ts';
import { storeToml } from '../helpers/backend.ts';
import { stripForgedFields, tagSubject } from '../../src/policy/content/header-edit.ts';
import { HeldMessage, removeStaleHeldFiles } from '../../src/policy/content/held-message.ts';

/**
 * The DATA stage of the MX port (issue #9): SPF, DKIM, DMARC through a real DNS server on a
 * loopback UDP port, the Authentication-Results header, DMARC policies, the content score's
 * headers, [SPAM] tagging and Junk delivery, and big messages held in a file.
 */

const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

let dns: TestDnsServer;
let t: TestServer;
const keys = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 });
const pub = keys.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
const privateKey = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
// mailauth reads signatureData at run time; its type declarations want the flat fields too.
const SIGN = { signingDomain: 'good.test', selector: 'sel', privateKey, signatureData: [{ signingDomain: 'good.test', selector: 'sel', privateKey }] };

before(async () => {
  dns = await startDnsServer({
    // good.test: SPF allows 127.0.0.1, DKIM key published, DMARC p=reject.
    'good.test': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
    'sel._domainkey.good.test': { TXT: [`v=DKIM1; k=rsa; p=${pub}`] },
    '_dmarc.good.test': { TXT: ['v=DMARC1; p=reject'] },
    // strict.test: nobody may send (SPF -all), p=reject: forgeries are refused.
    'strict.test': { TXT: ['v=spf1 -all'] },
    '_dmarc.strict.test': { TXT: ['v=DMARC1; p=reject'] },
    // careful.test: p=quarantine: failures go to Junk.
    'careful.test': { TXT: ['v=spf1 -all'] },
    '_dmarc.careful.test': { TXT: ['v=DMARC1; p=quarantine'] },
    // plain.test: SPF only.
    'plain.test': { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
    // Domain blocklists: spammy.test listed in both; refused.test only with "query refused".
    'spammy.test.dbl.test': { A: ['127.0.1.2'] },
    'spammy.test.uri.test': { A: ['127.0.0.2'] },
    'refused.test.dbl.test': { A: ['127.255.255.254'] },
  });
  t = await startTestServer(
    { policy: { spam: { reject: 2000, max_size: 64 * 1024 }, dnsbl: { domain_zones: ['dbl.test', { zone: 'uri.test', score: 1.5 }], timeout: '1s' } } },
    { resolver: systemResolver([dns.address], 1000) },
  );
});
after(async () => {
  await t.stop();
  await dns.close();
});

function msg(from: string, subject: string, body = 'Hello.\r\n', extra = ''): string {
  return `From: <${from}>\r\nTo: alice@example.test\r\nSubject: ${subject}\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <${crypto.randomUUID()}@remote.test>\r\n${extra}\r\n${body}`;
}

async function send(from: string, data: string | Buffer, to = ['alice@example.test']) {
  const c = await SmtpTestClient.connect({ port: t.smtpPort });
  try {
    return await c.sendMail({ from, to, message: data, ehlo: 'mail.remote.test' });
  } finally {
    await c.quit().catch(() => undefined);
  }
}

/** The stored text of the newest message with this subject in a mailbox, or null. */
async function stored(subject: string, mailbox = 'INBOX', user = 'alice@example.test'): Promise<string | null> {
  const rows = await inbox(t, user, mailbox);
  const row = rows.reverse().find((r) => (r.subject ?? '').includes(subject));
  return row ? blobText(t, row.blobHash) : null;
}

function headerOf(text: string): string {
  return text.slice(0, text.indexOf('\r\n\r\n') + 2);
}

test('SPF, DKIM and DMARC pass: Authentication-Results and Received-SPF above the message, X-Spam-Status: No, INBOX', async () => {
  const text = msg('news@good.test', 'signed two');
  const sig = await dkimSign(text, SIGN);
  const r = await send('news@good.test', sig.signatures + text);
  assert.equal(r.data?.code, 250, r.data?.text);
  const m = await stored('signed two');
  assert.ok(m, 'delivered to INBOX');
  const h = headerOf(m);
  assert.match(h, /^Return-Path: <news@good\.test>\r\nReceived: from mail\.remote\.test/);
  assert.match(h, /Authentication-Results: mx\.example\.test;/);
  assert.match(h, /spf=pass/);
  assert.match(h, /dkim=pass header\.i=@good\.test header\.s=sel/);
  assert.match(h, /dmarc=pass/);
  assert.match(h, /Received-SPF: pass/);
  assert.match(h, /X-Spam-Status: No, score=-?\d/);
  assert.doesNotMatch(h, /X-Spam-Flag/);
  // The message itself follows, byte for byte.
  assert.ok(m.endsWith(sig.signatures + text), 'the original message follows our fields unchanged');
});

test('DMARC p=reject failure is refused at DATA with 550 5.7.1 and not stored', async () => {
  const r = await send('ceo@strict.test', msg('ceo@strict.test', 'forged ceo'));
  assert.equal(r.data?.code, 550);
  assert.equal(r.data?.enhanced, '5.7.1');
  assert.match(r.data?.text ?? '', /strict\.test publishes a DMARC policy of reject/);
  assert.equal(await stored('forged ceo'), null);
  assert.equal(await stored('forged ceo', 'Junk'), null);
});

test('DMARC p=quarantine failure is delivered to Junk', async () => {
  const r = await send('billing@careful.test', msg('billing@careful.test', 'quarantined invoice'));
  assert.equal(r.data?.code, 250, r.data?.text);
  assert.equal(await stored('quarantined invoice'), null);
  const m = await stored('quarantined invoice', 'Junk');
  assert.ok(m, 'in Junk');
  assert.match(headerOf(m), /dmarc=fail/);
});

test('forged Authentication-Results with our name and X-Spam-* from outside are removed; others kept', async () => {
  const forged = 'Authentication-Results: mx.example.test; dkim=pass header.d=bank.test\r\nAuthentication-Results: other.test; spf=pass\r\nX-Spam-Status: No, score=-100\r\nX-Spam-Flag: NO\r\n';
  const r = await send('someone@plain.test', msg('someone@plain.test', 'forged results', 'Hi.\r\n', forged));
  assert.equal(r.data?.code, 250, r.data?.text);
  const h = headerOf((await stored('forged results'))!);
  assert.doesNotMatch(h, /dkim=pass header\.d=bank\.test/);
  assert.doesNotMatch(h, /score=-100/);
  assert.doesNotMatch(h, /X-Spam-Flag: NO/);
  assert.match(h, /Authentication-Results: other\.test; spf=pass/);
  assert.equal((h.match(/^Authentication-Results: mx\.example\.test;/gm) ?? []).length, 1, 'exactly ours');
});

test('GTUBE is tagged [SPAM], flagged and delivered to Junk (below policy.spam.reject)', async () => {
  const r = await send('someone@plain.test', msg('someone@plain.test', 'cheap watches', `${GTUBE}\r\n`));
  assert.equal(r.data?.code, 250, r.data?.text);
  assert.equal(await stored('cheap watches'), null, 'not in INBOX');
  const m = await stored('cheap watches', 'Junk');
  assert.ok(m, 'in Junk');
  const h = headerOf(m);
  assert.match(h, /^Subject: \[SPAM\] cheap watches\r$/m);
  assert.match(h, /X-Spam-Flag: YES/);
  assert.match(h, /X-Spam-Status: Yes, score=\d+/);
  assert.match(h, /X-Spam-Report:\r\n \*.*GTUBE/);
});

test('a message above policy.spam.max_size is held in a file: DKIM still verified, not scored, delivered byte for byte', async () => {
  const body = Array.from({ length: 3000 }, (_, i) => `line ${i} ${'x'.repeat(60)}`).join('\r\n') + '\r\n';
  const text = msg('news@good.test', 'big signed', body);
  const sig = await dkimSign(text, SIGN);
  const r = await send('news@good.test', sig.signatures + text);
  assert.equal(r.data?.code, 250, r.data?.text);
  const m = await stored('big signed');
  assert.ok(m);
  assert.match(headerOf(m), /dkim=pass/);
  assert.doesNotMatch(headerOf(m), /X-Spam-Status/);
  assert.ok(m.endsWith(sig.signatures + text));
  // The spill file is gone.
  assert.deepEqual(fs.readdirSync(path.join(t.dir, 'tmp')).filter((f) => f.startsWith('held.')), []);
});

test('header edits: Subject tagged once, added when missing; folded fields and 8-bit bytes kept', () => {
  const h = Buffer.from('Subject: hello\r\n world\r\nX-Other: caf\xe9\r\n', 'latin1');
  assert.equal(tagSubject(h, '[SPAM]').toString('latin1'), 'Subject: [SPAM] hello\r\n world\r\nX-Other: caf\xe9\r\n');
  assert.equal(tagSubject(tagSubject(h, '[SPAM]'), '[SPAM]').toString('latin1'), 'Subject: [SPAM] hello\r\n world\r\nX-Other: caf\xe9\r\n');
  assert.equal(tagSubject(Buffer.from('From: a@b\r\n'), '[SPAM]').toString(), 'From: a@b\r\nSubject: [SPAM]\r\n');
  const s = stripForgedFields(Buffer.from('Authentication-Results: (comment) MX.example.test;\r\n spf=pass\r\nX-Spam-Score: 1\r\nFrom: a@b\r\n'), 'mx.example.test');
  assert.equal(s.toString(), 'From: a@b\r\n');
});

test('postern policy test --message: the DATA stage\'s evidence, headers and decision', async () => {
  const cfg = writeConfig(t.dir, `hostname = "mx.example.test"\ndata_dir = "${t.dir}"\ndomains = ["example.test"]\n${storeToml(t.store)}\n[dns]\nservers = ["${dns.address}"]\ntimeout = "1s"\n[policy.spam]\nreject = 2000\n`);
  const file = path.join(t.dir, 'forged.eml');
  // A file on disk with LF line ends, as users have them.
  fs.writeFileSync(file, msg('ceo@strict.test', 'forged ceo', `${GTUBE}\r\n`).replace(/\r\n/g, '\n'));
  let r = await postern(['policy', 'test', '--ip', '127.0.0.1', '--helo', 'mail.remote.test', '--from', 'ceo@strict.test', '--to', 'alice@example.test', '--message', file, '--config', cfg]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /content\s+spf=fail dkim=none dmarc=fail \(p=reject\)/);
  assert.match(r.stdout, /Authentication-Results: mx\.example\.test;/);
  assert.match(r.stdout, /decision: reject \(550 5\.7\.1 Message rejected: strict\.test publishes a DMARC policy of reject/);
  fs.writeFileSync(file, msg('someone@plain.test', 'cheap', `${GTUBE}\r\n`).replace(/\r\n/g, '\n'));
  r = await postern(['policy', 'test', '--ip', '127.0.0.1', '--helo', 'mail.remote.test', '--from', 'someone@plain.test', '--to', 'alice@example.test', '--message', file, '--config', cfg]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /content\s+score \d+ \(builtin: .*GTUBE=1000/);
  assert.match(r.stdout, /X-Spam-Flag: YES/);
  assert.match(r.stdout, /subject tagged with "\[SPAM\]"/);
  assert.match(r.stdout, /decision: accept, to Junk/);
});

test('domain blocklists: a listed link host adds its points to the score; "query refused" answers and unlisted hosts do not', async () => {
  let r = await send('someone@plain.test', msg('someone@plain.test', 'listed link', 'See https://www.spammy.test/offer?id=1 now.\r\n'));
  assert.equal(r.data?.code, 250, r.data?.text);
  let h = headerOf((await stored('listed link'))!);
  assert.match(h, /URIBL_DBL .*spammy\.test listed in dbl\.test/);
  assert.match(h, /\s1\.5 URIBL_URI /);
  r = await send('someone@plain.test', msg('someone@plain.test', 'refused link', 'See https://refused.test/ and https://clean.test/.\r\n'));
  assert.equal(r.data?.code, 250, r.data?.text);
  h = headerOf((await stored('refused link'))!);
  assert.doesNotMatch(h, /URIBL_/);
});

test('a user moving a message into Junk over IMAP teaches the server\'s Bayes filter (the running trainer)', async () => {
  const r = await send('promo@plain.test', msg('promo@plain.test', 'limited offer', 'Buy cheap replica watches today, best prices guaranteed.\r\n'));
  assert.equal(r.data?.code, 250, r.data?.text);
  const before = (await t.server.ctx.data.bayesTotals(['bob@example.test', 'alice@example.test'])).get('alice@example.test')?.spam ?? 0;
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    assert.equal((await c.login()).status, 'OK');
    assert.equal((await c.command('SELECT INBOX')).status, 'OK');
    const found = await c.command('UID SEARCH SUBJECT "limited offer"');
    const uid = /\* SEARCH (\d+)/.exec(found.lines.join('\n'))?.[1];
    assert.ok(uid, found.lines.join('\n'));
    assert.equal((await c.command(`UID MOVE ${uid} Junk`)).status, 'OK');
  } finally {
    c.close();
  }
  // The server's trainer looks every 5 s.
  await until('learned as spam for alice', async () => ((await t.server.ctx.data.bayesTotals(['alice@example.test'])).get('alice@example.test')?.spam ?? 0) === before + 1, 15_000);
});

test('held messages: a spill creates data_dir/tmp when missing (blobs in PostgreSQL); files a crash left are removed at start', async () => {
  const dir = path.join(t.dir, 'held-test', 'tmp');
  const held = new HeldMessage(dir, 10);
  await held.write(Buffer.from('0123456789abcdef'));
  await held.end();
  assert.equal(held.buffer(), null, 'spilled');
  const read: Buffer[] = [];
  for await (const c of held.stream(4)) read.push(c as Buffer);
  assert.equal(Buffer.concat(read).toString(), '456789abcdef');
  fs.writeFileSync(path.join(dir, 'other'), 'x');
  removeStaleHeldFiles(dir);
  assert.deepEqual(fs.readdirSync(dir), ['other']);
  await held.discard();
  removeStaleHeldFiles(path.join(t.dir, 'no-such-dir'));
});

test('bad input through the DATA stage: garbage, no header, a header that never ends, NULs, broken MIME and DKIM headers — a clear answer each time, the server keeps serving', async () => {
  const rnd = crypto.randomBytes(20_000);
  const cases: Array<[string, Buffer]> = [
    ['random bytes', Buffer.from(rnd.toString('latin1').replace(/\r|\n|\./g, 'x') + '\r\n', 'latin1')],
    ['body only', Buffer.from('\r\njust a body, no header at all\r\n')],
    ['endless header', Buffer.from(Array.from({ length: 12_000 }, (_, i) => `X-H${i}: ${'v'.repeat(30)}`).join('\r\n') + '\r\n')],
    ['NUL bytes', Buffer.from('From: <a@plain.test>\r\nSubject: nul\0s\r\n\r\nbody\0body\r\n', 'latin1')],
    ['broken MIME', Buffer.from('From: <a@plain.test>\r\nSubject: mime\r\nContent-Type: multipart/mixed; boundary="\r\n\r\n--\r\nContent-Type: text/html; charset=x-unknown\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n')],
    ['broken DKIM', Buffer.from('DKIM-Signature: v=1; a=rsa-sha256; d=good.test; s=sel; b=@@@; bh=\r\nDKIM-Signature: garbage\r\nFrom: <news@good.test>\r\nSubject: dkim\r\n\r\nx\r\n')],
    ['8-bit header', Buffer.from('From: =?utf-8?q?=ZZ?= <a@plain.test>\r\nSubject: caf\xe9 \xff\xfe\r\n\r\nbody\r\n', 'latin1')],
  ];
  for (const [name, data] of cases) {
    const r = await send('someone@plain.test', data);
    assert.ok(r.data && [250, 550].includes(r.data.code), `${name}: ${r.data?.code} ${r.data?.text}`);
  }
  const ok = await send('someone@plain.test', msg('someone@plain.test', 'still serving'));
  assert.equal(ok.data?.code, 250);
});

test('a message over smtp.max_message_size is refused with 552 and not written out past the limit (the rest is read and dropped)', async () => {
  const small = await startTestServer({ smtp: { max_message_size: 512 * 1024 }, policy: { spam: { max_size: 64 * 1024 } } });
  try {
    const tmp = path.join(small.dir, 'tmp');
    let largest = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        for (const f of fs.existsSync(tmp) ? fs.readdirSync(tmp) : []) {
          try {
            largest = Math.max(largest, fs.statSync(path.join(tmp, f)).size);
          } catch {
            /* removed meanwhile */
          }
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const line = 'y'.repeat(998) + '\r\n';
    const big = msg('someone@plain.test', 'too big', line.repeat(8 * 1024)); // ~8 MB
    const c = await SmtpTestClient.connect({ port: small.smtpPort });
    try {
      const r = await c.sendMail({ from: 'someone@plain.test', to: ['alice@example.test'], message: big });
      assert.equal(r.data?.code, 552, r.data?.text);
    } finally {
      await c.quit().catch(() => undefined);
    }
    polling = false;
    await poll;
    assert.ok(largest < 1024 * 1024, `a temporary file grew to ${largest} bytes`);
  } finally {
    await small.stop();
  }
});

test('a filter that cannot be reached neither refuses nor delays mail: delivered unscored, and the log says why', async () => {
  const closed = await new Promise<number>((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
  const down = await startTestServer({ policy: { spam: { filter: 'spamd', spamd: `127.0.0.1:${closed}`, timeout: '5s' } } }, { log });
  try {
    const c = await SmtpTestClient.connect({ port: down.smtpPort });
    try {
      const started = Date.now();
      const r = await c.sendMail({ from: 'someone@remote.test', to: ['alice@example.test'], message: msg('someone@remote.test', 'unscored') });
      assert.equal(r.data?.code, 250, r.data?.text);
      assert.ok(Date.now() - started < 4000, 'not held up to the timeout');
    } finally {
      await c.quit().catch(() => undefined);
    }
    const rows = await inbox(down, 'alice@example.test');
    assert.equal(rows.length, 1);
    assert.doesNotMatch(headerOf(await blobText(down, rows[0]!.blobHash)), /X-Spam-/);
    assert.ok(lines.some((l) => /spam filter did not answer/.test(l) && /policy\.spam\.spamd/.test(l)), lines.join('\n'));
  } finally {
    await down.stop();
  }
});
