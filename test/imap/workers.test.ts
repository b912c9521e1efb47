import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, message, type TestServer } from '../helpers/server.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { until } from '../helpers/until.ts';

/**
 * IMAP sessions served by worker processes (`[imap] processes`, src/imap/workers.ts): the main
 * process admits each connection and hands it to the least loaded worker; changes committed in
 * any process reach IDLE sessions in every other.
 */

let t: TestServer;
before(async () => {
  t = await startTestServer({ imap: { processes: 2 } });
});
after(() => t.stop());

const workers = () => t.server.imapWorkers!;

async function login(opts: { starttls?: boolean } = {}): Promise<ImapTestClient> {
  const c = opts.starttls ? await ImapTestClient.connect(t.imapPort) : await ImapTestClient.connect(t.imapsPort, { tls: true });
  if (opts.starttls) await c.startTls();
  const r = await c.login();
  assert.equal(r.status, 'OK', r.text);
  return c;
}

async function idle(c: ImapTestClient): Promise<string> {
  const tag = c.nextTag();
  c.write(`${tag} IDLE\r\n`);
  assert.equal(await c.line(), '+ idling');
  return tag;
}

async function closeAll(cs: ImapTestClient[]): Promise<void> {
  for (const c of cs) c.close();
  await until('every worker released its connections', async () => workers().connections().every((n) => n === 0), 5000);
}

test('two worker processes serve the sessions, spread by load, over IMAPS and STARTTLS', async () => {
  const pids = workers().pids();
  assert.equal(pids.length, 2);
  assert.ok(pids.every((p) => p > 0 && p !== process.pid), `worker pids ${pids}`);
  const cs = [await login(), await login({ starttls: true }), await login(), await login({ starttls: true })];
  try {
    assert.deepEqual(workers().connections(), [2, 2]);
    for (const c of cs) assert.equal((await c.command('SELECT INBOX')).status, 'OK');
  } finally {
    await closeAll(cs);
  }
});

test('a message delivered over SMTP (main process) wakes IDLE in a worker within 1 s', async () => {
  const c = await login();
  try {
    const sel = await c.command('SELECT INBOX');
    const n = Number(/^\* (\d+) EXISTS$/.exec(sel.lines.find((l) => / EXISTS$/.test(l))!)![1]);
    const tag = await idle(c);
    const smtp = await SmtpTestClient.connect({ path: t.socketPath });
    const r = await smtp.sendMail({ from: 'bob@example.test', to: ['alice@example.test'], message: message('To a worker') });
    assert.equal(r.data?.code, 250);
    const sent = Date.now();
    const got = await c.waitFor(/^\* \d+ EXISTS$/);
    assert.equal(got.line, `* ${n + 1} EXISTS`);
    assert.ok(Date.now() - sent < 1000, `EXISTS after ${Date.now() - sent} ms`);
    await smtp.quit();
    c.write('DONE\r\n');
    assert.equal((await c.read(tag)).status, 'OK');
  } finally {
    await closeAll([c]);
  }
});

test('STORE, APPEND and EXPUNGE in one worker reach an IDLE session in the other', async () => {
  const smtp = await SmtpTestClient.connect({ path: t.socketPath });
  for (const s of ['one', 'two']) assert.equal((await smtp.sendMail({ from: 'bob@example.test', to: ['alice@example.test'], message: message(s) })).data?.code, 250);
  await smtp.quit();
  const a = await login();
  const b = await login();
  try {
    // One session per worker (least loaded first).
    assert.deepEqual(workers().connections(), [1, 1]);
    const sel = await b.command('SELECT INBOX');
    const n = Number(/^\* (\d+) EXISTS$/.exec(sel.lines.find((l) => / EXISTS$/.test(l))!)![1]);
    assert.equal((await a.command('SELECT INBOX')).status, 'OK');
    const tag = await idle(b);
    assert.equal((await a.command('STORE 1 +FLAGS (\\Flagged)')).status, 'OK');
    const f = await b.waitFor(/FETCH/);
    assert.match(f.line, /^\* 1 FETCH \(.*FLAGS \(.*\\Flagged/);
    assert.ok(f.ms < 1000, `FETCH after ${f.ms} ms`);
    const msg = message('Appended in the other worker');
    a.write(`${a.nextTag()} APPEND INBOX {${Buffer.byteLength(msg)}+}\r\n${msg}\r\n`);
    assert.equal((await b.waitFor(/EXISTS$/)).line, `* ${n + 1} EXISTS`);
    assert.equal((await a.waitFor(/^A\d+ OK/)).line.split(' ')[1], 'OK');
    assert.equal((await a.command(`STORE ${n + 1} +FLAGS (\\Deleted)`)).status, 'OK');
    assert.equal((await a.command('EXPUNGE')).status, 'OK');
    assert.equal((await b.waitFor(/EXPUNGE$/)).line, `* ${n + 1} EXPUNGE`);
    b.write('DONE\r\n');
    assert.equal((await b.read(tag)).status, 'OK');
  } finally {
    await closeAll([a, b]);
  }
});

test('a worker that dies takes only its sessions; it is started again and serves new ones', async () => {
  const a = await login();
  const b = await login();
  try {
    assert.deepEqual(workers().connections(), [1, 1]);
    const [victim] = workers().pids();
    process.kill(victim!, 'SIGKILL');
    // a was on worker 0: its connection ends; b's session goes on.
    await until('the killed worker’s session closed', async () => a.closed, 5000);
    assert.equal((await b.command('NOOP')).status, 'OK');
    await until('the worker was started again', async () => workers().pids()[0]! > 0 && workers().pids()[0] !== victim, 15_000);
    assert.deepEqual(workers().connections(), [0, 1]);
    const c = await login();
    assert.deepEqual(workers().connections(), [1, 1]);
    assert.equal((await c.command('SELECT INBOX')).status, 'OK');
    c.close();
  } finally {
    await closeAll([a, b]);
  }
});

test('with workers, bans and per-address limits are still kept by the main process', async () => {
  const s = await startTestServer({
    imap: { processes: 2 },
    smtp: { max_connections_per_ip: 2 },
    bans: { trusted_networks: [] },
    auth: { failure_delay: '10ms', failure_delay_max: '10ms' },
  });
  try {
    // Per-address limit counted across the workers; a closed session frees its slot.
    const c1 = await ImapTestClient.connect(s.imapsPort, { tls: true, localAddress: '127.0.0.31' });
    const c2 = await ImapTestClient.connect(s.imapPort, { localAddress: '127.0.0.31' });
    assert.match(c1.greeting, /^\* OK/);
    assert.match(c2.greeting, /^\* OK/);
    const c3 = await ImapTestClient.connect(s.imapPort, { localAddress: '127.0.0.31' });
    assert.match(c3.greeting, /^\* BYE Too many connections/);
    const c4 = await ImapTestClient.connect(s.imapsPort, { tls: true, localAddress: '127.0.0.31' });
    assert.match(c4.greeting, /^\* BYE Too many connections/);
    c3.close();
    c4.close();
    c1.close();
    await until('the slot was released', async () => s.server.imapWorkers!.connections().reduce((x, y) => x + y, 0) === 1, 5000);
    const c5 = await ImapTestClient.connect(s.imapPort, { localAddress: '127.0.0.31' });
    assert.match(c5.greeting, /^\* OK/);
    c5.close();
    c2.close();
    // Failed logins in a worker reach the shared ban table: the next connection is refused at once.
    const d = await ImapTestClient.connect(s.imapsPort, { tls: true, localAddress: '127.0.0.32' });
    for (let i = 0; i < 3; i++) assert.equal((await d.login('alice@example.test', `wrong${i}`)).status, 'NO');
    d.close();
    const e = await ImapTestClient.connect(s.imapsPort, { tls: true, localAddress: '127.0.0.32' });
    assert.match(e.greeting, /^\* BYE .*failed logins/);
    e.close();
  } finally {
    await s.stop();
  }
});
