import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, inbox, blobText, type TestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { fakeResolver } from '../helpers/dns.ts';
import { SmtpSink, closedPort } from '../helpers/smtp-sink.ts';
import { postern, writeConfig } from '../helpers/cli.ts';
import { storeToml } from '../helpers/backend.ts';
import { dkimVerify } from 'mailauth';
import { generateDkimKey } from '../../src/queue/dkim.ts';
import { until } from '../helpers/until.ts';

/**
 * The delivery agent end to end: a Postern (A, example.test) delivers to remote
 * servers found through a fake DNS: a second Postern (B, remote.test), and
 * recording sinks for the cases a real server is asked to misbehave in.
 */

const dns = fakeResolver({});
let a: TestServer;
let b: TestServer;
const sink = new SmtpSink({
  rcpt: (addr) => (addr.startsWith('nobody@') ? '550 5.1.1 no such user here' : addr.startsWith('later@') ? '451 4.2.0 mailbox busy, try later' : undefined),
});
let downPort = 0;


async function send(from: string, to: string[], subject: string, extra = '', params?: { mail?: string; rcpt?: Record<string, string> }): Promise<string> {
  const c = await SmtpTestClient.connect({ path: a.socketPath });
  await c.command('EHLO client.test');
  let r = await c.command(`MAIL FROM:<${from}>${params?.mail ? ` ${params.mail}` : ''}`);
  assert.equal(r.code, 250, r.text);
  for (const t of to) {
    r = await c.command(`RCPT TO:<${t}>${params?.rcpt?.[t] ? ` ${params.rcpt[t]}` : ''}`);
    assert.equal(r.code, 250, r.text);
  }
  r = await c.command('DATA');
  assert.equal(r.code, 354);
  r = await c.command(`From: <${from}>\r\nTo: ${to.join(', ')}\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.test>\r\n${extra}\r\nbody of ${subject}\r\n.`);
  assert.equal(r.code, 250, r.text);
  await c.quit();
  return /queued as (\w+)/.exec(r.text)![1]!;
}

async function queued(queueId?: string) {
  return a.server.ctx.data.listQueue(queueId);
}

async function dsnsFor(email: string, subject: string): Promise<string[]> {
  const msgs = await inbox(a, email);
  const out: string[] = [];
  for (const m of msgs) {
    const text = await blobText(a, m.blobHash);
    if (/multipart\/report/.test(text) && text.includes(`Subject: ${subject}`)) out.push(text);
  }
  return out;
}

before(async () => {
  b = await startTestServer({ hostname: 'mx.remote.test', domains: ['remote.test'] }, { users: ['carol@remote.test'] });
  await sink.listen();
  downPort = await closedPort();
  dns.zone.mx = {
    'remote.test': [[10, 'mx.remote.test']],
    'sink.test': [[10, 'mx.sink.test']],
    'nullmx.test': [[0, '.']],
    'flaky.test': [[10, 'mx.flaky.test']],
  };
  dns.zone.a = { 'mx.remote.test': ['127.0.0.1'], 'mx.sink.test': ['127.0.0.1'], 'mx.flaky.test': ['127.0.0.1'] };
  dns.zone.servfail = ['flaky.test'];
  a = await startTestServer(
    {
      queue: { mx_port: b.smtpPort, connection_idle: '300ms' },
      // The sink and the "down" host are reached by transport; remote.test by MX.
      transport: [
        { domain: 'sink.test', relay: `127.0.0.1:${sink.port}` },
        { domain: 'down.test', relay: `127.0.0.1:${downPort}` },
      ],
    },
    { resolver: dns },
  );
});

after(async () => {
  await a?.stop();
  await b?.stop();
  await sink.close();
});

test('mail for another server is delivered through its MX (a second Postern) and leaves the queue', async () => {
  await send('alice@example.test', ['carol@remote.test'], 'hello carol');
  const got = await until('carol to receive it', async () => (await inbox(b, 'carol@remote.test')).find(() => true));
  const text = await blobText(b, got.blobHash);
  assert.match(text, /Subject: hello carol/);
  // Our Return-Path is not passed on: B writes its own, with the same sender.
  assert.equal((text.match(/^Return-Path:/gim) ?? []).length, 1);
  assert.match(text, /^Return-Path: <alice@example\.test>/);
  assert.match(text, /by mx\.example\.test \(Postern\)/, 'our Received header travels with it');
  await until('the queue to empty', async () => (await queued()).length === 0);
});

test('MX fallback: a first host that refuses connections is skipped for the next preference', async () => {
  // B listens on 127.0.0.1 only: 127.0.0.3 at the same port refuses.
  dns.zone.a!['dead.remote.test'] = ['127.0.0.3'];
  dns.zone.mx!['remote.test'] = [[5, 'dead.remote.test'], [10, 'mx.remote.test']];
  const had = (await inbox(b, 'carol@remote.test')).length;
  try {
    await send('alice@example.test', ['carol@remote.test'], 'via fallback');
    await until('carol to receive it via the second MX', async () => (await inbox(b, 'carol@remote.test')).length === had + 1);
    await until('the queue to empty', async () => (await queued()).length === 0);
  } finally {
    dns.zone.mx!['remote.test'] = [[10, 'mx.remote.test']];
  }
});

test('remote 550 → a DSN (multipart/report) in the sender\'s INBOX with the remote reply and the original headers', async () => {
  const id = await send('alice@example.test', ['nobody@sink.test'], 'to nobody');
  const [dsn] = await until('the bounce', async () => {
    const d = await dsnsFor('alice@example.test', 'to nobody');
    return d.length ? d : null;
  });
  assert.match(dsn!, /^Return-Path: <>/m);
  assert.match(dsn!, /Subject: Undelivered Mail Returned to Sender/);
  assert.match(dsn!, /Content-Type: multipart\/report; report-type=delivery-status/);
  assert.match(dsn!, /Final-Recipient: rfc822; nobody@sink\.test/);
  assert.match(dsn!, /Action: failed/);
  assert.match(dsn!, /Status: 5\.1\.1/);
  assert.match(dsn!, /Diagnostic-Code: smtp; 550 5\.1\.1 no such user here/);
  assert.match(dsn!, /Content-Type: text\/rfc822-headers/, 'RET absent: headers only');
  assert.ok(!dsn!.includes('body of to nobody'));
  // The DSN is stored before the failed recipient leaves the queue: wait for the row to go.
  await until('the queue row to go', async () => (await queued(id)).length === 0);
});

test('mixed replies in one transaction: 250 delivered, 550 bounced, 451 stays deferred', async () => {
  const n = sink.transactions.length;
  const id = await send('alice@example.test', ['ok1@sink.test', 'nobody@sink.test', 'later@sink.test'], 'mixed bag');
  await until('the accepted copy', async () => sink.transactions.length > n);
  const t = sink.transactions.at(-1)!;
  assert.deepEqual(t.rcpts.map((r) => r.address), ['ok1@sink.test']);
  const rows = await until('the deferred recipient to be recorded', async () => {
    const r = await queued(id);
    return r.length === 1 && r[0]!.attempts === 1 && r[0]!.status === 'active' ? r : null;
  });
  assert.equal(rows[0]!.recipient, 'later@sink.test');
  assert.match(rows[0]!.lastError ?? '', /451 4\.2\.0 mailbox busy/);
  assert.ok(rows[0]!.nextAttempt - Date.now() > 4 * 60_000, 'first retry after about 5 minutes');
  const [dsn] = await until('the bounce for nobody only', async () => {
    const d = await dsnsFor('alice@example.test', 'mixed bag');
    return d.length ? d : null;
  });
  assert.match(dsn!, /nobody@sink\.test/);
  assert.ok(!/Final-Recipient: rfc822; later@sink\.test/.test(dsn!), 'a deferred recipient is not reported as failed');
  await a.server.ctx.data.deleteQueued(id);
});

test('4xx until the queue lifetime is over → bounced with 5.4.7 (fake clock)', async () => {
  const id = await send('alice@example.test', ['later@sink.test'], 'never accepted', '', { mail: 'RET=FULL ENVID=env-42' });
  await until('the first deferral', async () => (await queued(id))[0]?.attempts === 1 && (await queued(id))[0]?.status === 'active');
  const real = a.server.ctx.now;
  a.server.ctx.now = () => Date.now() + 6 * 86_400_000;
  try {
    const [dsn] = await until('the expiry bounce', async () => {
      const d = await dsnsFor('alice@example.test', 'never accepted');
      return d.length ? d : null;
    });
    assert.match(dsn!, /Status: 5\.4\.7/);
    assert.match(dsn!, /451 4\.2\.0 mailbox busy/);
    assert.match(dsn!, /Original-Envelope-Id: env-42/);
    assert.match(dsn!, /Content-Type: message\/rfc822/, 'RET=FULL returns the whole message');
    assert.match(dsn!, /body of never accepted/);
    // The DSN is stored before the failed recipient leaves the queue: wait for the row to go.
  await until('the queue row to go', async () => (await queued(id)).length === 0);
  } finally {
    a.server.ctx.now = real;
  }
});

test('remote down → deferred; after it comes up, queue flush delivers', async () => {
  const id = await send('alice@example.test', ['bob@down.test'], 'while down');
  const rows = await until('the deferral', async () => {
    const r = await queued(id);
    return r[0]?.attempts === 1 && r[0].status === 'active' ? r : null;
  });
  assert.match(rows[0]!.lastError ?? '', /connect/i);
  const up = new SmtpSink({ port: downPort });
  await up.listen();
  try {
    await a.server.ctx.data.steerQueue(id, 'flush');
    await up.waitFor(1);
    assert.match(up.transactions[0]!.data.toString(), /Subject: while down/);
    await until('the queue to empty', async () => (await queued(id)).length === 0);
  } finally {
    await up.close();
  }
});

test('null MX (RFC 7505) bounces at once; a DNS temporary failure only defers', async () => {
  await send('alice@example.test', ['x@nullmx.test'], 'to null mx');
  const [dsn] = await until('the null MX bounce', async () => {
    const d = await dsnsFor('alice@example.test', 'to null mx');
    return d.length ? d : null;
  });
  assert.match(dsn!, /Status: 5\.1\.10/);
  const id = await send('alice@example.test', ['x@flaky.test'], 'dns trouble');
  const rows = await until('the deferral', async () => {
    const r = await queued(id);
    return r[0]?.attempts === 1 && r[0].status === 'active' ? r : null;
  });
  assert.match(rows[0]!.lastError ?? '', /4\.4\.3/);
  assert.deepEqual(await dsnsFor('alice@example.test', 'dns trouble'), []);
  await a.server.ctx.data.deleteQueued(id);
});

test('a bounce that cannot be delivered (null sender) produces nothing', async () => {
  const before = (await inbox(a, 'alice@example.test')).length;
  const id = await send('', ['nobody@sink.test'], 'bounce of a bounce');
  await until('the queue to drop it', async () => (await queued(id)).length === 0);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await inbox(a, 'alice@example.test')).length, before);
  assert.equal((await inbox(a, 'postmaster@example.test').catch(() => [])).length, 0);
});

test('RFC 3461: NOTIFY and ORCPT per recipient, RET and ENVID are passed on; NOTIFY=NEVER suppresses the bounce', async () => {
  const n = sink.transactions.length;
  await send('alice@example.test', ['dsn1@sink.test', 'nobody@sink.test'], 'dsn params', '', {
    mail: 'RET=HDRS ENVID=abc+2Bdef',
    rcpt: { 'dsn1@sink.test': 'NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig@example.test', 'nobody@sink.test': 'NOTIFY=NEVER' },
  });
  await until('the copy', async () => sink.transactions.length > n);
  const t = sink.transactions.at(-1)!;
  assert.equal(t.fromArgs.RET, 'HDRS');
  assert.equal(t.fromArgs.ENVID, 'abc+def', 'xtext decoded by us, encoded again on the wire (RFC 3461 §4)');
  assert.equal(t.rcpts[0]!.args.NOTIFY, 'SUCCESS,FAILURE');
  assert.equal(t.rcpts[0]!.args.ORCPT, 'rfc822;orig@example.test');
  await until('the queue to empty', async () => (await queued()).length === 0);
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(await dsnsFor('alice@example.test', 'dsn params'), [], 'NOTIFY=NEVER: no bounce; the sink speaks DSN, so no "relayed" notice');
});

test('one connection carries several messages (reuse), at most destination_concurrency at once', async () => {
  a.server.ctx.config.queue.destination_concurrency = 1;
  try {
    const conns = sink.connections;
    const n = sink.transactions.length;
    const c = await SmtpTestClient.connect({ path: a.socketPath });
    for (let i = 0; i < 8; i++) {
      const r = await c.sendMail({ from: 'alice@example.test', to: [`reuse${i}@sink.test`], message: `From: alice@example.test\r\nSubject: reuse ${i}\r\n\r\nx\r\n` });
      assert.equal(r.data?.code, 250);
    }
    await c.quit();
    await sink.waitFor(n + 8);
    assert.ok(sink.connections - conns <= 3, `8 messages over ${sink.connections - conns} connection(s)`);
  } finally {
    a.server.ctx.config.queue.destination_concurrency = 20;
  }
});

test('postern queue bounce returns a waiting message to its sender at once', async () => {
  const id = await send('alice@example.test', ['later@sink.test'], 'give up on it');
  await until('the first deferral', async () => (await queued(id))[0]?.attempts === 1 && (await queued(id))[0]?.status === 'active');
  const cfg = writeConfig(a.dir, `hostname = "mx.example.test"\ndata_dir = "${a.dir}"\n[listen]\nlocal = "${a.socketPath}"\n${storeToml(a.store)}`);
  const r = await postern(['queue', 'bounce', id, '--config', cfg]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /1 recipient\(s\) of \w+ will be returned/);
  const [dsn] = await until('the bounce', async () => {
    const d = await dsnsFor('alice@example.test', 'give up on it');
    return d.length ? d : null;
  });
  assert.match(dsn!, /returned by the administrator/);
  assert.match(dsn!, /451 4\.2\.0 mailbox busy/, 'the last error is reported');
  // The DSN is stored before the failed recipient leaves the queue: wait for the row to go.
  await until('the queue row to go', async () => (await queued(id)).length === 0);
  assert.equal((await postern(['queue', 'bounce', id, '--config', cfg])).status, 1, 'nothing left to bounce');
});

test('outgoing mail from a domain with a DKIM key is signed; the remote verifies it with the published record', async () => {
  const key = await generateDkimKey(a.server.ctx.config.dkim.directory, 'example.test', { selector: 'sel1' });
  await new Promise((r) => setTimeout(r, 1100)); // the signer looks at a domain's keys once a second
  const n = sink.transactions.length;
  await send('alice@example.test', ['signed@sink.test'], 'signed mail');
  await until('the copy', async () => sink.transactions.length > n);
  const data = sink.transactions.at(-1)!.data;
  assert.match(data.toString(), /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.test;\s+s=sel1;/);
  const txt = async (name: string, rrtype: string) => {
    if (rrtype === 'TXT' && name === key.txtName) return [key.txtValue.match(/.{1,255}/g)!];
    throw Object.assign(new Error(`ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  };
  const r = await dkimVerify(data, { resolver: txt });
  assert.equal(r.results[0]?.status.result, 'pass');
  // Mail from a domain without a key goes out unsigned.
  await send('someone@elsewhere.test', ['signed@sink.test'], 'unsigned mail');
  await until('the second copy', async () => sink.transactions.length > n + 1);
  assert.doesNotMatch(sink.transactions.at(-1)!.data.toString(), /DKIM-Signature/);
});

test('NOTIFY=SUCCESS for a local recipient: the sender gets a "delivered" notice (RFC 3461 §5.2.2)', async () => {
  await send('alice@example.test', ['bob@example.test'], 'tell me when', '', { rcpt: { 'bob@example.test': 'NOTIFY=SUCCESS ORCPT=rfc822;bob@example.test' } });
  const [dsn] = await until('the delivered notice', async () => {
    const d = await dsnsFor('alice@example.test', 'tell me when');
    return d.length ? d : null;
  });
  assert.match(dsn!, /Subject: Successful Mail Delivery Report/);
  assert.match(dsn!, /Action: delivered/);
  assert.match(dsn!, /Status: 2\.0\.0/);
  assert.match(dsn!, /Original-Recipient: rfc822;bob@example\.test/);
  // Without NOTIFY=SUCCESS nothing comes back.
  await send('alice@example.test', ['bob@example.test'], 'no notice please');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await dsnsFor('alice@example.test', 'no notice please'), []);
});

test('a queued message with more than 50 Received headers is bounced as a loop (5.4.6), not sent', async () => {
  const n = sink.transactions.length;
  const received = Array.from({ length: 51 }, (_, i) => `Received: from hop${i}.test by hop${i + 1}.test; Tue, 1 Dec 2026 05:00:00 +0000\r\n`).join('');
  const message = Buffer.from(`Return-Path: <alice@example.test>\r\n${received}From: alice@example.test\r\nSubject: looping\r\n\r\nround and round\r\n`);
  await a.server.ctx.ingest.ingestBuffer(message, { deliveries: [], queue: { queueId: 'LOOPTEST0001', sender: 'alice@example.test', recipients: ['loop@sink.test'] }, internalDate: Date.now() });
  const [dsn] = await until('the loop bounce', async () => {
    const d = await dsnsFor('alice@example.test', 'looping');
    return d.length ? d : null;
  });
  assert.match(dsn!, /Status: 5\.4\.6/);
  assert.match(dsn!, /mail forwarding loop/);
  assert.equal(sink.transactions.length, n, 'nothing was sent');
});
