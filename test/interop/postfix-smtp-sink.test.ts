import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { closedPort } from '../helpers/smtp-sink.ts';
import { startTestServer, inbox, blobText, type TestServer } from '../helpers/server.ts';
import { until } from '../helpers/until.ts';

/**
 * Outbound delivery against Postfix's own test server, smtp-sink(1) (Debian package
 * `postfix`): a message for a remote domain leaves the queue and is captured by it;
 * a 5xx (to RCPT, or to the end of the data) bounces back to the sender as a DSN; a
 * 4xx (to RCPT, or to the end of the data) leaves the recipient deferred.
 *
 * smtp-sink answers every recipient alike (its -f / -r options refuse a command,
 * whatever its argument), so each case has its own smtp-sink and its own remote
 * domain routed to it with [[transport]]. Per-recipient answers within one
 * transaction (one recipient accepted, the next refused) cannot be expressed with
 * smtp-sink and are not tested here.
 */

const SMTP_SINK = '/usr/sbin/smtp-sink';
// Like missing() in helpers/cli.ts: never skip in CI (.ci/run installs postfix), fail instead.
const skip = process.env.CI || fs.existsSync(SMTP_SINK) ? false : `smtp-sink is not installed (apt-get install postfix, ${SMTP_SINK}); CI installs it`;

const HARD = '550 5.1.1 Error: no such user here (smtp-sink)';
const SOFT = '451 4.3.2 Error: try again later (smtp-sink)';

interface Sink {
  domain: string;
  port: number;
  proc: ChildProcess;
  output: () => string;
}

/** The cases: each domain's smtp-sink and how it answers. */
const CASES: Record<string, string[]> = {
  // Accepts everything, dumps every transaction to a file in `dump`.
  'remote.test': [],
  // Hard-rejects every RCPT / the end of the data, with our 5xx text.
  'rcpt-hard.test': ['-f', 'RCPT', '-B', HARD],
  'data-hard.test': ['-f', '.', '-B', HARD],
  // Soft-rejects every RCPT / the end of the data, with our 4xx text.
  'rcpt-soft.test': ['-r', 'RCPT', '-b', SOFT],
  'data-soft.test': ['-r', '.', '-b', SOFT],
};

let t: TestServer;
let dump: string;
const sinks = new Map<string, Sink>();

async function listening(port: number, proc: ChildProcess, output: () => string): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`smtp-sink exited with ${proc.exitCode}: ${output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`smtp-sink is not listening on ${port}: ${output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startSink(domain: string, args: string[]): Promise<Sink> {
  const port = await closedPort();
  // As root smtp-sink insists on dropping privileges (-u); the dump directory is world-writable for that user.
  const user = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const capture = domain === 'remote.test' ? ['-d', `${dump}/%Y%m%d%H%M%S.`] : [];
  const proc = spawn(SMTP_SINK, [...user, ...capture, ...args, `127.0.0.1:${port}`, '100'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const output = () => out;
  await listening(port, proc, output);
  return { domain, port, proc, output };
}

before(async () => {
  if (skip) return;
  dump = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-smtp-sink-'));
  fs.chmodSync(dump, 0o777);
  for (const [domain, args] of Object.entries(CASES)) sinks.set(domain, await startSink(domain, args));
  t = await startTestServer({
    transport: [...sinks.values()].map((s) => ({ domain: s.domain, relay: `127.0.0.1:${s.port}`, tls: 'none' as const })),
    queue: { connection_idle: '200ms' },
  });
});

after(async () => {
  await t?.stop();
  for (const s of sinks.values()) {
    if (s.proc.exitCode === null) {
      const gone = new Promise((r) => s.proc.once('exit', r));
      s.proc.kill('SIGTERM');
      await gone;
    }
  }
  if (dump) fs.rmSync(dump, { recursive: true, force: true });
});

/** Queues a message from alice@example.test through the local socket. */
async function submit(to: string, subject: string): Promise<void> {
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  try {
    await c.command('EHLO client.test');
    const body = `From: Alice <alice@example.test>\r\nTo: ${to}\r\nSubject: ${subject}\r\nDate: Sat, 28 Nov 2026 05:00:00 +0000\r\nMessage-ID: <${subject}@example.test>\r\n\r\nHello from Postern to smtp-sink.\r\n`;
    const r = await c.sendMail({ from: 'alice@example.test', to: [to], message: body });
    assert.equal(r.data?.code, 250, JSON.stringify(r));
  } finally {
    await c.quit().catch(() => c.destroy());
  }
}


/** The queued entries for one recipient. */
async function queued(rcpt: string) {
  return (await t.server.ctx.data.listQueue()).filter((q) => q.recipient === rcpt);
}

/** Waits until a recipient was tried and is waiting for a retry (not being sent). */
function deferred(rcpt: string) {
  return until(`${rcpt} deferred`, async () => {
    const rows = await queued(rcpt);
    return rows.length === 1 && rows[0]!.status === 'active' && rows[0]!.attempts > 0 ? rows[0]! : null;
  });
}

/** Waits until a recipient has left the queue. */
function gone(rcpt: string) {
  return until(`${rcpt} out of the queue`, async () => (await queued(rcpt)).length === 0);
}

/** The DSN in alice's INBOX about `rcpt`. */
async function dsnFor(rcpt: string) {
  return until(`a DSN about ${rcpt} in alice's INBOX`, async () => {
    for (const m of await inbox(t, 'alice@example.test')) {
      const text = await blobText(t, m.blobHash);
      if (text.includes(`Final-Recipient: rfc822; ${rcpt}`)) return { m, text };
    }
    return null;
  });
}

function dumped(subject: string): string | null {
  for (const f of fs.readdirSync(dump)) {
    const text = fs.readFileSync(path.join(dump, f), 'latin1');
    if (text.includes(`Subject: ${subject}`)) return text;
  }
  return null;
}

test('a message for a remote domain is delivered to smtp-sink and leaves the queue', { skip }, async () => {
  await submit('bob@remote.test', 'to-smtp-sink-1');
  await until('the queue to be empty', async () => (await t.server.ctx.data.countQueued()) === 0);
  // smtp-sink writes the capture file as the transaction goes; it is complete once the queue entry is gone.
  const text = await until('the message in the smtp-sink dump', async () => {
    const d = dumped('to-smtp-sink-1');
    return d && d.includes('Hello from Postern to smtp-sink.') ? d : null;
  });
  assert.match(text, /^X-Client-Proto: ESMTP$/m);
  assert.match(text, /^X-Helo-Args: mx\.example\.test$/m);
  assert.match(text, /^X-Mail-Args: <alice@example\.test>/m);
  assert.match(text, /^X-Rcpt-Args: <bob@remote\.test>$/m);
  assert.match(text, /^From: Alice <alice@example\.test>$/m);
  // Our Return-Path is for final delivery only (RFC 5321 §4.4): a relay never passes it on.
  assert.doesNotMatch(text, /^Return-Path:/im);
  assert.equal(text.match(/^X-Rcpt-Args:/gm)?.length, 1, 'one recipient');
  // No DSN for a delivered message.
  for (const m of await inbox(t, 'alice@example.test')) assert.doesNotMatch(await blobText(t, m.blobHash), /Final-Recipient: rfc822; bob@remote\.test/);
});

for (const [domain, stage] of [
  ['rcpt-hard.test', 'RCPT'],
  ['data-hard.test', 'the end of the data'],
] as const) {
  test(`a 5xx from smtp-sink to ${stage} bounces: the recipient leaves the queue and the sender gets a DSN`, { skip }, async () => {
    const rcpt = `bob@${domain}`;
    await submit(rcpt, `hard-${domain.split('.')[0]}`);
    await gone(rcpt);
    const { m, text } = await dsnFor(rcpt);
    assert.equal(m.subject, 'Undelivered Mail Returned to Sender');
    assert.match(text, /^Content-Type: multipart\/report; report-type=delivery-status;/m);
    assert.match(text, /^Action: failed\r$/m);
    assert.match(text, /^Status: 5\.1\.1\r$/m);
    // The remote's own reply is the diagnostic.
    assert.match(text, /^Diagnostic-Code: smtp; 550 5\.1\.1 Error: no such user here \(smtp-sink\)/m);
    assert.match(text, /Subject: hard-/, 'the original header is returned');
  });
}

for (const [domain, stage] of [
  ['rcpt-soft.test', 'RCPT'],
  ['data-soft.test', 'the end of the data'],
] as const) {
  test(`a 4xx from smtp-sink to ${stage} leaves the recipient deferred in the queue, without a DSN`, { skip }, async () => {
    const rcpt = `bob@${domain}`;
    await submit(rcpt, `soft-${domain.split('.')[0]}`);
    const row = await deferred(rcpt);
    assert.equal(row.attempts, 1);
    assert.equal(row.sender, 'alice@example.test');
    assert.match(row.lastError ?? '', /^451 4\.3\.2 Error: try again later \(smtp-sink\)/);
    // The next attempt is queue.first_retry (5 minutes by default) away.
    assert.ok(row.nextAttempt > Date.now() + 60_000, `next attempt later (${new Date(row.nextAttempt).toISOString()})`);
    for (const m of await inbox(t, 'alice@example.test')) assert.doesNotMatch(await blobText(t, m.blobHash), new RegExp(`Final-Recipient: rfc822; ${rcpt.replace(/\./g, '\\.')}`));
  });
}
