import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { postern, writeConfig } from '../helpers/cli.ts';
import { startChildServer, type ChildServer } from '../helpers/child-server.ts';
import { startTestServer, tempDir, type TestServer } from '../helpers/server.ts';
import { SmtpSink, type SinkTransaction } from '../helpers/smtp-sink.ts';
import { dropTestStore, storeToml, testStore, TEST_PG } from '../helpers/backend.ts';

/**
 * The delivery agent's promise (src/queue/agent.ts): every transaction's outcome is
 * committed before the next command goes out on that connection, and a restarted
 * node takes back the recipients it was delivering. So after `kill -9` in the middle
 * of delivery and a restart, every recipient reaches the remote at least once, and
 * a message arrives twice only when the remote's 250 for it was the last thing on
 * its connection (the agent may have died before committing it). A message whose
 * 250 was followed by any other command (MAIL of the next transaction, RSET, QUIT)
 * on the same connection must never be sent again.
 */

const TOTAL = 200;
const KILL_AT = Math.round(TOTAL / 3);

/** One transaction as the sink answered it, and what the client did after the 250. */
interface Answered {
  tx: SinkTransaction;
  messageId: string;
  /** A command came after the 250 on the same connection: the agent had committed it. */
  followed: boolean;
  /** The first command after the 250 (diagnostics), or null if the connection just ended. */
  next: string | null;
}

/** An SmtpSink that remembers, per connection, whether anything came after each 250 to DATA. */
class RecordingSink {
  readonly answered: Answered[] = [];
  /** Per connection: the last 250-answered transaction not yet followed by a command. */
  private readonly open = new Map<number, Answered>();
  readonly sink: SmtpSink;
  private gate: Promise<void>;
  private openGate!: () => void;

  constructor() {
    this.gate = new Promise((r) => (this.openGate = r));
    this.sink = new SmtpSink({
      // Slow final replies (20–50 ms), so delivery of 200 messages over 4 connections
      // takes a few seconds; and nothing is answered before every message is queued.
      data: async (tx) => {
        await this.gate;
        await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 31)));
        // The sink accepts (undefined) and records the transaction just before its 250 goes out.
        const a: Answered = { tx, messageId: messageIdOf(tx.data), followed: false, next: null };
        this.answered.push(a);
        this.open.set(tx.connection, a);
        return undefined;
      },
      command: (conn, line) => {
        const a = this.open.get(conn);
        if (!a) return;
        a.followed = true;
        a.next = line.split(' ')[0]!.toUpperCase();
        this.open.delete(conn);
      },
      closed: (conn) => this.open.delete(conn),
    });
  }

  release(): void {
    this.openGate();
  }

  /** Distinct messages received. */
  distinct(): Set<string> {
    return new Set(this.answered.map((a) => a.messageId));
  }

  async waitFor(pred: () => boolean, what: string, ms: number): Promise<void> {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${this.answered.length} transactions, ${this.distinct().size} distinct messages`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

function messageIdOf(data: Buffer): string {
  const m = /^Message-ID:\s*(<[^>]+>)/im.exec(data.toString('latin1'));
  return m ? m[1]! : '(none)';
}

function config(dir: string, sinkPort: number, store: string): string {
  return writeConfig(
    dir,
    `hostname = "mx.example.test"
data_dir = "${dir}/data"
domains = ["example.test"]
${store}[listen]
local = "${dir}/postern.sock"
[log]
level = "warn"
[queue]
destination_concurrency = 4
connection_idle = "300ms"
[[transport]]
domain = "remote.test"
relay = "127.0.0.1:${sinkPort}"
tls = "none"
`,
  );
}

async function stopChild(srv: ChildServer, signal: NodeJS.Signals): Promise<void> {
  if (srv.child.exitCode !== null || srv.child.signalCode !== null) return;
  const gone = new Promise((r) => srv.child.once('exit', r));
  srv.child.kill(signal);
  await gone;
}

test(`kill -9 during delivery${TEST_PG ? ' (PostgreSQL)' : ''}: after a restart every recipient is delivered, none twice once the remote's 250 was followed by another command`, { timeout: 180_000 }, async (t) => {
  const dir = tempDir('postern-queue-kill-');
  const pg = testStore();
  const recorder = new RecordingSink();
  const sinkPort = await recorder.sink.listen();
  const cfg = config(dir, sinkPort, storeToml(pg));
  let srv: ChildServer | null = null;
  try {
    srv = await startChildServer(cfg);
    const sock = srv.endpoints.local ?? path.join(dir, 'postern.sock');

    // 1. Queue TOTAL messages, one recipient each, through the local socket.
    const ids: string[] = [];
    const c = await SmtpTestClient.connect({ path: sock, timeoutMs: 10_000 });
    assert.equal(c.greeting.code, 220);
    assert.equal((await c.command('EHLO client.test')).code, 250);
    for (let i = 0; i < TOTAL; i++) {
      const id = `<qk-${i}@example.test>`;
      const body = `From: sender@example.test\r\nTo: rcpt${i}@remote.test\r\nSubject: queue-kill ${i}\r\nMessage-ID: ${id}\r\nDate: Sat, 28 Nov 2026 05:00:00 +0000\r\n\r\nmessage number ${i}\r\n`;
      const r = await c.sendMail({ from: 'sender@example.test', to: [`rcpt${i}@remote.test`], message: body });
      assert.equal(r.data?.code, 250, `message ${i} queued: ${r.data?.text ?? JSON.stringify(r)}`);
      ids.push(id);
    }
    await c.quit();

    // 2. Let the remote answer; kill -9 the server once a third has arrived.
    recorder.release();
    await recorder.waitFor(() => recorder.distinct().size >= KILL_AT, `${KILL_AT} messages at the sink`, 60_000);
    await stopChild(srv, 'SIGKILL');
    const atKill = recorder.answered.length;
    const lastConnBeforeKill = recorder.sink.connections;
    assert.ok(atKill < TOTAL, `the kill came before delivery finished (${atKill} of ${TOTAL})`);
    // Let the sink notice the dropped connections.
    await new Promise((r) => setTimeout(r, 300));

    // 3. Restart on the same data: the node takes back its leases and delivers the rest.
    srv = await startChildServer(cfg);
    await recorder.waitFor(() => recorder.distinct().size >= TOTAL, `all ${TOTAL} messages at the sink`, 120_000);
    // A graceful stop: whatever the agent is doing is committed before it exits.
    await stopChild(srv, 'SIGTERM');
    srv = null;

    // Every message arrived at least once.
    const seen = recorder.distinct();
    for (const id of ids) assert.ok(seen.has(id), `${id} delivered`);
    assert.equal(seen.size, TOTAL, 'nothing but the queued messages arrived');
    for (const a of recorder.answered) {
      assert.equal(a.tx.rcpts.length, 1);
      const n = /^<qk-(\d+)@/.exec(a.messageId)![1];
      assert.equal(a.tx.rcpts[0]!.address, `rcpt${n}@remote.test`, 'each message went to its own recipient');
    }

    // A message arrives again only if its earlier 250 was the last thing on that connection.
    const byId = new Map<string, Answered[]>();
    for (const a of recorder.answered) byId.set(a.messageId, [...(byId.get(a.messageId) ?? []), a]);
    const twice: string[] = [];
    for (const [id, list] of byId) {
      if (list.length < 2) continue;
      twice.push(id);
      for (const a of list.slice(0, -1)) {
        assert.equal(a.followed, false, `${id} was sent again although its 250 on connection ${a.tx.connection} was followed by ${a.next} (the agent had committed it)`);
      }
    }
    // At most one unconfirmed 250 per connection open at the kill: destination_concurrency.
    assert.ok(twice.length <= 4, `at most 4 messages twice (one per connection), got ${twice.length}: ${twice.join(' ')}`);
    t.diagnostic(`${atKill} transactions before the kill, ${recorder.answered.length} in all, sent twice: ${twice.join(' ') || 'none'}`);
    // Those sent twice: the first time over a connection that died right after the 250 (the kill).
    for (const id of twice) assert.ok(byId.get(id)![0]!.tx.connection <= lastConnBeforeKill, `${id}: its first delivery was before the kill`);
    // Sanity: the test did exercise connection reuse (MAIL after a 250) before the kill.
    assert.ok(recorder.answered.slice(0, atKill).some((a) => a.next === 'MAIL'), 'connections carried several messages');

    // The queue is empty.
    const list = await postern(['queue', 'list', '--config', cfg]);
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, /queue is empty/, list.stdout);
  } finally {
    if (srv) await stopChild(srv, 'SIGKILL');
    await recorder.sink.close();
    await dropTestStore(pg);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * The same promise checked without a kill, deterministically: when the remote is
 * given the data of a transaction, every recipient it had answered 250 for earlier
 * on that connection must already have left the queue (committed), since the next
 * command (MAIL) went out after that 250.
 */
async function committedBeforeNext(send: (t: TestServer) => Promise<void>, expected: number): Promise<{ problems: string[]; connections: number; transactions: number }> {
  let t: TestServer | null = null;
  const acked = new Map<number, string[]>();
  const problems: string[] = [];
  const sink = new SmtpSink({
    data: async (tx) => {
      const before = acked.get(tx.connection) ?? [];
      for (const r of await t!.server.ctx.data.listQueue()) {
        if (before.includes(r.recipient)) problems.push(`${r.recipient} was answered 250 earlier on connection ${tx.connection} but is still queued (${r.status}) while ${tx.rcpts.map((x) => x.address).join(', ')} is being sent`);
      }
      acked.set(tx.connection, [...before, ...tx.rcpts.map((r) => r.address)]);
      return undefined;
    },
  });
  const port = await sink.listen();
  try {
    t = await startTestServer({ transport: [{ domain: 'remote.test', relay: `127.0.0.1:${port}`, tls: 'none' }], queue: { destination_concurrency: 1, connection_idle: '2s' } });
    await send(t);
    await sink.waitFor(expected);
    return { problems, connections: sink.connections, transactions: sink.transactions.length };
  } finally {
    await t?.stop();
    await sink.close();
  }
}

async function submitRaw(t: TestServer, rcpts: Array<[string, string]>, subject: string): Promise<void> {
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  assert.equal((await c.command('EHLO client.test')).code, 250);
  assert.equal((await c.command('MAIL FROM:<alice@example.test>')).code, 250);
  for (const [rcpt, params] of rcpts) assert.equal((await c.command(`RCPT TO:<${rcpt}>${params}`)).code, 250);
  assert.equal((await c.command('DATA')).code, 354);
  assert.equal((await c.command(`From: alice@example.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.test>\r\n\r\nbody\r\n.`)).code, 250);
  await c.quit();
}

test('each message\'s outcome is committed before the next transaction on a reused connection', { timeout: 60_000 }, async () => {
  const r = await committedBeforeNext(async (t) => {
    for (let i = 0; i < 5; i++) await submitRaw(t, [[`r${i}@remote.test`, '']], `reuse-${i}`);
  }, 5);
  assert.equal(r.connections, 1, 'one connection carried every message');
  assert.deepEqual(r.problems, []);
});

// src/queue/agent.ts deliver(): recipients of ONE message whose NOTIFY/ORCPT differ go
// in separate transactions on the same connection, but finish() (the commit) runs only
// after the last of them — the second MAIL goes out while the first 250 is uncommitted,
// so a crash then sends the first recipient twice. ORCPT is per recipient, so any
// message relayed with ORCPT (Postfix always adds it) is affected.
test('a message whose recipients need separate transactions (different ORCPT): each transaction committed before the next', { timeout: 60_000 }, async () => {
  const r = await committedBeforeNext(async (t) => {
    await submitRaw(t, [['a@remote.test', ' ORCPT=rfc822;a@remote.test'], ['b@remote.test', ' ORCPT=rfc822;b@remote.test']], 'orcpt-split');
  }, 2);
  assert.equal(r.transactions, 2, 'one transaction per ORCPT');
  assert.deepEqual(r.problems, []);
});
