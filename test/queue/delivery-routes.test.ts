import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startTestServer, inbox, blobText, type TestServer } from '../helpers/server.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { SmtpSink } from '../helpers/smtp-sink.ts';
import { until } from '../helpers/until.ts';

/**
 * Delivery routes and their TLS/AUTH policies: opportunistic STARTTLS, domains that
 * require it, a smarthost (queue.relayhost) with SASL credentials, an LMTP
 * transport; plus the delay warning and the per-attempt mail log line.
 */


async function send(t: TestServer, to: string[], subject: string): Promise<string> {
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  const r = await c.sendMail({ from: 'alice@example.test', to, message: `From: alice@example.test\r\nSubject: ${subject}\r\n\r\nbody of ${subject}\r\n` });
  assert.equal(r.data?.code, 250, r.data?.text);
  await c.quit();
  return /queued as (\w+)/.exec(r.data!.text)![1]!;
}

async function deferral(t: TestServer, id: string) {
  return until('the deferral', async () => {
    const r = await t.server.ctx.data.listQueue(id);
    return r.length && r.every((x) => x.attempts >= 1 && x.status === 'active') ? r : null;
  });
}

async function withServer(overrides: Partial<ConfigInput>, fn: (t: TestServer) => Promise<void>): Promise<void> {
  const t = await startTestServer({ ...overrides, queue: { connection_idle: '100ms', ...overrides.queue } });
  try {
    await fn(t);
  } finally {
    await t.stop();
  }
}

test('STARTTLS is used whenever the remote offers it (opportunistic, RFC 3207/7435)', async () => {
  const sink = new SmtpSink({ tls: true });
  await sink.listen();
  try {
    await withServer({ transport: [{ domain: 'tls.test', relay: `127.0.0.1:${sink.port}` }] }, async (t) => {
      await send(t, ['x@tls.test'], 'over tls');
      await sink.waitFor(1);
      assert.equal(sink.transactions[0]!.secure, true, 'the self-signed certificate does not stop opportunistic TLS');
    });
  } finally {
    await sink.close();
  }
});

test('a domain in queue.tls_required_domains is deferred, never sent in cleartext, when the remote lacks STARTTLS', async () => {
  const sink = new SmtpSink();
  await sink.listen();
  try {
    await withServer({ queue: { tls_required_domains: ['secret.test'] }, transport: [{ domain: 'secret.test', relay: `127.0.0.1:${sink.port}` }] }, async (t) => {
      const id = await send(t, ['x@secret.test'], 'must be encrypted');
      const rows = await deferral(t, id);
      assert.match(rows[0]!.lastError ?? '', /STARTTLS/i);
      assert.equal(sink.transactions.length, 0);
    });
  } finally {
    await sink.close();
  }
});

test('queue.relayhost: all remote mail goes to the smarthost, logged in with the password file over STARTTLS; a wrong password defers', async () => {
  const sink = new SmtpSink({ tls: true, auth: { user: 'me@provider.test', pass: 'relay-secret' } });
  await sink.listen();
  try {
    const dir = fs.mkdtempSync(path.join((await import('node:os')).tmpdir(), 'postern-relay-'));
    const good = path.join(dir, 'good.secret');
    const bad = path.join(dir, 'bad.secret');
    fs.writeFileSync(good, 'relay-secret\n', { mode: 0o600 });
    fs.writeFileSync(bad, 'wrong\n', { mode: 0o600 });
    await withServer({ queue: { relayhost: `127.0.0.1:${sink.port}`, relay_username: 'me@provider.test', relay_password_file: good } }, async (t) => {
      await send(t, ['anyone@far-away.test', 'other@elsewhere.test'], 'via smarthost');
      await sink.waitFor(2);
      for (const x of sink.transactions) {
        assert.equal(x.user, 'me@provider.test');
        assert.equal(x.secure, true);
      }
    });
    await withServer({ queue: { relayhost: `127.0.0.1:${sink.port}`, relay_username: 'me@provider.test', relay_password_file: bad } }, async (t) => {
      const id = await send(t, ['anyone@far-away.test'], 'wrong password');
      const rows = await deferral(t, id);
      assert.match(rows[0]!.lastError ?? '', /authentication failed/i);
      assert.equal(sink.transactions.length, 2, 'nothing more arrived');
    });
    fs.rmSync(dir, { recursive: true, force: true });
  } finally {
    await sink.close();
  }
});

test('an LMTP transport (lmtp = true) delivers to another server over LMTP, with per-recipient replies', async () => {
  const b = await startTestServer({ hostname: 'mx.remote.test', domains: ['remote.test'] }, { users: ['carol@remote.test'] });
  try {
    await withServer({ transport: [{ domain: 'remote.test', relay: `127.0.0.1:${b.lmtpPort}`, lmtp: true }] }, async (t) => {
      await send(t, ['carol@remote.test', 'nobody@remote.test'], 'over lmtp');
      await until('carol to get it', async () => (await inbox(b, 'carol@remote.test')).length === 1);
      const dsn = await until('the bounce for nobody', async () => {
        for (const m of await inbox(t, 'alice@example.test')) {
          const text = await blobText(t, m.blobHash);
          if (/Final-Recipient: rfc822; nobody@remote\.test/.test(text)) return text;
        }
        return null;
      });
      assert.match(dsn, /Status: 5\.1\.1/);
    });
  } finally {
    await b.stop();
  }
});

test('queue.delay_warning: one "delayed" DSN once a recipient waited that long, then retries go on', async () => {
  const sink = new SmtpSink({ rcpt: () => '451 4.3.0 not now' });
  await sink.listen();
  try {
    await withServer({ queue: { delay_warning: '4h' }, transport: [{ domain: 'slow.test', relay: `127.0.0.1:${sink.port}` }] }, async (t) => {
      const id = await send(t, ['x@slow.test'], 'slow one');
      await deferral(t, id);
      const delayed = async () => {
        const out: string[] = [];
        for (const m of await inbox(t, 'alice@example.test')) {
          const text = await blobText(t, m.blobHash);
          if (/Action: delayed/.test(text)) out.push(text);
        }
        return out;
      };
      assert.equal((await delayed()).length, 0, 'not before 4 hours');
      const real = t.server.ctx.now;
      t.server.ctx.now = () => Date.now() + 5 * 3_600_000;
      try {
        await t.server.ctx.data.steerQueue(id, 'flush');
        const [dsn] = await until('the delay notice', async () => ((await delayed()).length ? delayed() : null));
        assert.match(dsn!, /Subject: Delayed Mail \(still being retried\)/);
        assert.match(dsn!, /Will-Retry-Until: /);
        assert.match(dsn!, /451 4\.3\.0 not now/);
        await until('the second deferral', async () => (await t.server.ctx.data.listQueue(id))[0]?.attempts === 2 && (await t.server.ctx.data.listQueue(id))[0]?.status === 'active');
        await t.server.ctx.data.steerQueue(id, 'flush');
        await until('the third deferral', async () => (await t.server.ctx.data.listQueue(id))[0]?.attempts === 3 && (await t.server.ctx.data.listQueue(id))[0]?.status === 'active');
        assert.equal((await delayed()).length, 1, 'warned once only');
      } finally {
        t.server.ctx.now = real;
      }
    });
  } finally {
    await sink.close();
  }
});

test('each attempt writes a mail log line: to, relay, delay, dsn, status (like Postfix)', async () => {
  const sink = new SmtpSink({ rcpt: (a) => (a.startsWith('no@') ? '550 5.1.1 unknown' : undefined) });
  await sink.listen();
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  try {
    await withServer({ transport: [{ domain: 'log.test', relay: `127.0.0.1:${sink.port}` }] }, async (t) => {
      t.server.ctx.log = pino({ level: 'info' }, stream);
      const id = await send(t, ['yes@log.test', 'no@log.test'], 'logged');
      await until('both outcomes logged', async () => lines.filter((l) => l.msg === 'delivery' && l.queue === id).length === 2);
      const sent = lines.find((l) => l.msg === 'delivery' && l.to === 'yes@log.test')!;
      assert.equal(sent.status, 'sent');
      assert.equal(sent.dsn, '2.0.0');
      assert.equal(sent.relay, `127.0.0.1[127.0.0.1]:${sink.port}`);
      assert.equal(typeof sent.delay, 'number');
      assert.equal(sent.from, 'alice@example.test');
      const bounced = lines.find((l) => l.msg === 'delivery' && l.to === 'no@log.test')!;
      assert.equal(bounced.status, 'bounced');
      assert.equal(bounced.dsn, '5.1.1');
      assert.match(String(bounced.reply), /550 5\.1\.1 unknown/);
    });
  } finally {
    await sink.close();
  }
});
