/**
 * Outbound queue benchmark (not a test): how fast Postern's delivery agent drains a queue of
 * --messages messages into Postfix's smtp-sink on loopback, and what the queue costs in memory.
 *
 *   Phase A (enqueue): Postern in this process with the delivery agent off
 *     (startServer(…, { delivery: false })); --connections concurrent sessions over the local
 *     unix socket (listen.local, trusted: may relay) queue --messages messages of ~--size body
 *     bytes for userK@sink.test. Timed: first connect → last 250, then countQueued() must be N.
 *   Phase B (drain): that server stopped, a new one started over the same data dir with the
 *     agent on and [[transport]] sink.test → 127.0.0.1:SINKPORT (queue.destination_concurrency
 *     --concurrency). Timed: from the startServer() call until countQueued() = 0. The sink
 *     (`smtp-sink -c`) counts the messages it received and the SMTP sessions (a session is
 *     counted when it ends, so after the server is stopped).
 *
 * --peer (root, Postfix installed): the same drain with a private Postfix into its own smtp-sink
 * (bench/queue-postfix.sh), after Postern, never at the same time; prints the ratio.
 * --rounds N repeats everything and prints medians. See bench/README.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import inspector from 'node:inspector/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { helpAndNumbers } from './options.ts';
import { SmtpTestClient } from '../test/helpers/smtp-client.ts';
import { unreachableDns } from '../test/helpers/dns.ts';
import { parseConfig } from '../src/config/load.ts';
import { startServer, type RunningServer } from '../src/server.ts';

const HELP = `usage: npm run bench:queue -- [options]
  --messages N        messages queued and relayed (default 5000)
  --connections N     concurrent sessions filling the queue over the local socket (default 20)
  --size BYTES        body bytes per message, ~4 KB (default 4096)
  --users N           recipients user1..userN@sink.test (default 50)
  --concurrency N     queue.destination_concurrency: connections to the sink (default 20)
  --per-connection N  queue.messages_per_connection (default 100, Postern's default)
  --peer              also run the Postfix side (bench/queue-postfix.sh; root, postfix installed)
                      and print the ratio Postern/Postfix
  --rounds N          repeat (Postern, then Postfix with --peer) N times; medians at the end (default 1)
  --profile FILE      write a CPU profile (.cpuprofile) of phase B (the drain) to FILE
  --keep              keep the temp dir (data dir, sink output)
  --help`;

const { values: o } = parseArgs({
  options: {
    messages: { type: 'string', default: '5000' },
    connections: { type: 'string', default: '20' },
    size: { type: 'string', default: '4096' },
    users: { type: 'string', default: '50' },
    concurrency: { type: 'string', default: '20' },
    'per-connection': { type: 'string', default: '100' },
    peer: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '1' },
    profile: { type: 'string' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
const { int } = helpAndNumbers(HELP, o.help);
const N = int('messages', o.messages, 1);
const CONNS = int('connections', o.connections, 1);
const SIZE = int('size', o.size, 0);
const USERS = int('users', o.users, 1);
const CONC = int('concurrency', o.concurrency, 1);
const PER_CONN = int('per-connection', o['per-connection'], 1);
const ROUNDS = int('rounds', o.rounds, 1);

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SINK_BIN = ['/usr/sbin/smtp-sink', '/usr/bin/smtp-sink'].find((p) => fs.existsSync(p));
const IS_ROOT = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MB = (b: number) => b / 1024 / 1024;

if (!SINK_BIN) {
  console.error('bench:queue needs Postfix\'s smtp-sink (/usr/sbin/smtp-sink): apt-get install postfix');
  process.exit(1);
}
if (o.peer && !IS_ROOT) {
  console.error('--peer needs root (it starts a private Postfix master); run without --peer for Postern alone');
  process.exit(1);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** Busy and total jiffies of the whole machine (/proc/stat), for "machine CPU busy %" (same measure as the Postfix script). */
function machineCpu(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq] = f as [number, number, number, number, number, number, number];
  return { busy: user + nice + system + irq + softirq, total: user + nice + system + idle + iowait + irq + softirq };
}

// ---- the sink -----------------------------------------------------------------------------------

/** Postfix's smtp-sink with running counters (-c): sessions ended, QUITs, messages received. */
class Sink {
  sess = 0;
  mesg = 0;
  private proc: ChildProcess;
  private buf = '';
  private watchers: Array<{ n: number; resolve: () => void }> = [];

  constructor(readonly port: number) {
    // -u nobody: required when running as root (it drops privileges after binding); 1000: listen backlog.
    const args = ['-c', ...(IS_ROOT ? ['-u', 'nobody'] : []), `127.0.0.1:${port}`, '1000'];
    this.proc = spawn(SINK_BIN!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d: Buffer) => this.onData(d.toString('latin1')));
    this.proc.stderr!.on('data', (d: Buffer) => process.stderr.write(`smtp-sink: ${d}`));
  }

  private onData(s: string): void {
    // "sess=S quit=Q mesg=M\r" after every session end, QUIT and "."
    this.buf = (this.buf + s).slice(-200);
    const all = [...this.buf.matchAll(/sess=(\d+) quit=(\d+) mesg=(\d+)/g)];
    const m = all[all.length - 1];
    if (!m) return;
    this.sess = Number(m[1]);
    this.mesg = Number(m[3]);
    this.watchers = this.watchers.filter((w) => (this.mesg >= w.n ? (w.resolve(), false) : true));
  }

  /** Resolves once the sink has received n messages. */
  reached(n: number): Promise<void> {
    if (this.mesg >= n) return Promise.resolve();
    return new Promise((resolve) => this.watchers.push({ n, resolve }));
  }

  async ready(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(this.port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      });
      if (ok) {
        // that probe is a session too
        for (let j = 0; j < 50 && this.sess < 1; j++) await sleep(10);
        return;
      }
      await sleep(50);
    }
    throw new Error(`smtp-sink not listening on 127.0.0.1:${this.port}`);
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const gone = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    await gone;
  }
}

// ---- one round ----------------------------------------------------------------------------------

interface PosternResult {
  enqueuePerS: number;
  drainPerS: number;
  drainS: number;
  startupMs: number;
  sinkMessages: number;
  sinkConnections: number;
  cpuMsPerMsg: number;
  machineBusyPct: number;
  rssBefore: number;
  rssPeak: number;
  rssAfter: number;
  heapBefore: number;
  heapPeak: number;
  heapAfter: number;
  status: string;
}

/** Body of exactly SIZE bytes: 76 letters + CRLF per line; no line starts with '.'. */
function makeBody(): string {
  const line = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 the quick fox.\r\n';
  let b = line.repeat(Math.ceil(SIZE / line.length) + 1).slice(0, SIZE);
  if (SIZE >= 2) b = b.slice(0, SIZE - 2) + '\r\n';
  return b;
}

async function runPostern(round: number): Promise<PosternResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-qbench-'));
  const dataDir = path.join(dir, 'data');
  const socketPath = path.join(dir, 'postern.sock');
  const sink = new Sink(await freePort());
  let server: RunningServer | null = null;
  try {
    await sink.ready();
    const sessionsBefore = sink.sess;
    const config = () =>
      parseConfig(
        {
          hostname: 'mx.queue-bench.test',
          data_dir: dataDir,
          domains: ['queue-bench.test'],
          listen: { local: socketPath },
          log: { level: 'silent' },
          // The per-sender send rate (default 500 recipients/hour, counted for local submissions
          // too) would refuse the fill after 500 messages: off for the benchmark.
          submission: { rate_limit: 0 },
          queue: { destination_concurrency: CONC, messages_per_connection: PER_CONN },
          // smtp-sink offers no STARTTLS; "none" is also what the private Postfix does (no smtp_tls_security_level).
          transport: [{ domain: 'sink.test', relay: `127.0.0.1:${sink.port}`, tls: 'none' }],
        },
        'bench:queue',
      );
    const log = pino({ level: 'silent' });

    // ---- phase A: fill the queue, agent off ----
    server = await startServer(config(), log, { resolver: unreachableDns, delivery: false });
    const body = makeBody();
    const date = new Date().toUTCString().replace('GMT', '+0000');
    const runId = `${Date.now().toString(36)}.${process.pid}.${round}`;
    let next = 0;
    let failed = 0;
    const errors: string[] = [];
    const tA0 = performance.now();
    await Promise.all(
      Array.from({ length: CONNS }, async (_, lane) => {
        const c = await SmtpTestClient.connect({ path: socketPath, timeoutMs: 30_000 });
        if (c.greeting.code !== 220) throw new Error(`greeting ${c.greeting.code} ${c.greeting.text}`);
        const e = await c.command('EHLO bench-client.test');
        if (e.code !== 250) throw new Error(`EHLO ${e.code} ${e.text}`);
        for (let i = next++; i < N; i = next++) {
          const rcpt = `user${(i % USERS) + 1}@sink.test`;
          const r = await c.sendMail({
            from: 'bench@queue-bench.test',
            to: [rcpt],
            message:
              `From: Bench <bench@queue-bench.test>\r\nTo: <${rcpt}>\r\nSubject: queue bench ${lane}-${i}\r\nDate: ${date}\r\n` +
              `Message-ID: <qbench.${runId}.${i}@queue-bench.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n` +
              body,
          });
          if (r.data?.code !== 250) {
            failed++;
            if (errors.length < 5) errors.push(`message ${i}: MAIL ${r.mail.code} RCPT ${r.rcpts.map((x) => x.code).join(',')} DATA ${r.data?.code ?? '-'} ${r.data?.text ?? r.rcpts[0]?.text ?? r.mail.text}`);
          }
        }
        await c.quit();
      }),
    );
    const tA1 = performance.now();
    const queued = await server.ctx.data.countQueued();
    const enqueuePerS = (N - failed) / ((tA1 - tA0) / 1000);
    console.log(`postern fill:  ${N - failed}/${N} messages queued in ${((tA1 - tA0) / 1000).toFixed(2)} s = ${enqueuePerS.toFixed(1)} msgs/s (${CONNS} sessions over the local socket); queue holds ${queued}`);
    for (const e of errors) console.log(`  error: ${e}`);
    if (failed || queued !== N) throw new Error(`expected ${N} queued recipients, have ${queued} (${failed} failed)`);
    if (sink.mesg !== 0) throw new Error('the sink received mail while the agent was off');
    await server.stop();
    server = null;

    // ---- phase B: drain, agent on ----
    const mem = () => {
      const m = process.memoryUsage();
      return { rss: MB(m.rss), heap: MB(m.heapUsed) };
    };
    const before = mem();
    let peak = { ...before };
    const sampler = setInterval(() => {
      const m = mem();
      peak = { rss: Math.max(peak.rss, m.rss), heap: Math.max(peak.heap, m.heap) };
    }, 100);
    let profiler: inspector.Session | null = null;
    if (o.profile) {
      profiler = new inspector.Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.start');
    }
    const cpu0 = process.cpuUsage();
    const mc0 = machineCpu();
    const tB0 = performance.now();
    server = await startServer(config(), log, { resolver: unreachableDns, delivery: true });
    const startupMs = performance.now() - tB0;
    let status = 'ok';
    let left = N;
    let lastLeft = N;
    let lastChange = performance.now();
    for (;;) {
      left = await server.ctx.data.countQueued();
      const now = performance.now();
      if (left === 0) break;
      if (left !== lastLeft) {
        lastLeft = left;
        lastChange = now;
      }
      if (now - lastChange > 30_000) {
        status = 'stalled';
        break;
      }
      await sleep(50);
    }
    const tB1 = performance.now();
    const cpu = process.cpuUsage(cpu0);
    const mc1 = machineCpu();
    clearInterval(sampler);
    const after = mem();
    if (profiler) {
      const { profile } = await profiler.post('Profiler.stop');
      fs.writeFileSync(o.profile!, JSON.stringify(profile));
      profiler.disconnect();
      console.log(`profile of phase B written to ${o.profile}`);
    }
    // Sessions are counted by the sink when they end: stop the server (QUIT on cached connections).
    await server.stop();
    server = null;
    for (let i = 0; i < 100 && sink.mesg < N; i++) await sleep(20);
    await sleep(200);
    const drainS = (tB1 - tB0) / 1000;
    const r: PosternResult = {
      enqueuePerS,
      drainPerS: (N - left) / drainS,
      drainS,
      startupMs,
      sinkMessages: sink.mesg,
      sinkConnections: sink.sess - sessionsBefore,
      cpuMsPerMsg: (cpu.user + cpu.system) / 1000 / N,
      machineBusyPct: (100 * (mc1.busy - mc0.busy)) / Math.max(1, mc1.total - mc0.total),
      rssBefore: before.rss,
      rssPeak: peak.rss,
      rssAfter: after.rss,
      heapBefore: before.heap,
      heapPeak: peak.heap,
      heapAfter: after.heap,
      status: status === 'ok' && sink.mesg !== N ? `sink_got_${sink.mesg}` : status,
    };
    console.log(
      `postern drain: ${N - left} messages in ${drainS.toFixed(2)} s = ${r.drainPerS.toFixed(1)} msgs/s (${r.status}; from the startServer() call, ` +
        `start-up ${startupMs.toFixed(0)} ms); sink received ${r.sinkMessages} messages over ${r.sinkConnections} connections; ` +
        `${r.cpuMsPerMsg.toFixed(2)} ms CPU per message in this process; machine CPU busy ${r.machineBusyPct.toFixed(0)} %`,
    );
    console.log(
      `postern mem:   RSS ${before.rss.toFixed(0)} MB before the drain, peak ${peak.rss.toFixed(0)} MB, ${after.rss.toFixed(0)} MB after; ` +
        `heap used ${before.heap.toFixed(0)} → peak ${peak.heap.toFixed(0)} → ${after.heap.toFixed(0)} MB`,
    );
    return r;
  } finally {
    await server?.stop().catch(() => undefined);
    await sink.stop();
    if (o.keep) console.log(`kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface PeerResult {
  perS: number;
  fields: Record<string, string>;
}

function runPeer(): Promise<PeerResult> {
  return new Promise((resolve, reject) => {
    const args = ['--messages', String(N), '--concurrency', String(CONC), '--size', String(SIZE), '--sessions', String(CONNS), ...(o.keep ? ['--keep'] : [])];
    const p = spawn(path.join(ROOT, 'bench/queue-postfix.sh'), args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      process.stdout.write(d.toString().split('\n').filter((l) => l && !l.startsWith('RESULT')).map((l) => `${l}\n`).join(''));
    });
    p.on('error', reject);
    p.on('close', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (!line) return reject(new Error(`bench/queue-postfix.sh exited ${code} without a RESULT line`));
      const fields = Object.fromEntries(line.slice(7).split(' ').map((kv) => kv.split('=') as [string, string]));
      if (code !== 0) return reject(new Error(`bench/queue-postfix.sh exited ${code}: ${line}`));
      resolve({ perS: Number(fields.postfix_msgs_per_s), fields });
    });
  });
}

// ---- main ---------------------------------------------------------------------------------------

const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'NA');
const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : 'NA');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'NA');

function resultLine(r: PosternResult, peer: PeerResult | null, label = 'RESULT'): string {
  const ratio = peer ? r.drainPerS / peer.perS : NaN;
  return (
    `${label} postern_msgs_per_s=${f1(r.drainPerS)} postern_drain_s=${f2(r.drainS)} enqueue_per_s=${f1(r.enqueuePerS)} ` +
    `sink_messages=${r.sinkMessages} sink_connections=${r.sinkConnections} cpu_ms_per_msg=${f2(r.cpuMsPerMsg)} machine_cpu_busy_pct=${f0(r.machineBusyPct)} ` +
    `rss_mb=${f0(r.rssBefore)},${f0(r.rssPeak)},${f0(r.rssAfter)} heap_mb=${f0(r.heapBefore)},${f0(r.heapPeak)},${f0(r.heapAfter)} ` +
    (peer ? `postfix_msgs_per_s=${f1(peer.perS)} postfix_sink_connections=${peer.fields.sink_connections} ratio=${f2(ratio)} ` : '') +
    `messages=${N} concurrency=${CONC} per_connection=${PER_CONN} size=${SIZE} status=${r.status}`
  );
}

const results: Array<{ p: PosternResult; peer: PeerResult | null }> = [];
try {
  console.log(
    `load: ${N} messages, body ${SIZE} B, to user1..user${USERS}@sink.test; fill over ${CONNS} local sessions; ` +
      `drain to smtp-sink with destination_concurrency ${CONC}, ${PER_CONN} messages per connection${o.peer ? '; then Postfix' : ''}`,
  );
  for (let round = 1; round <= ROUNDS; round++) {
    if (ROUNDS > 1) console.log(`\n--- round ${round}/${ROUNDS}`);
    console.log(`machine:       ${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} (other work on the machine skews both sides)`);
    const p = await runPostern(round);
    const peer = o.peer ? await runPeer() : null;
    if (peer) console.log(`ratio:         Postern/Postfix drain = ${f2(p.drainPerS / peer.perS)}×`);
    console.log(resultLine(p, peer, ROUNDS > 1 ? `ROUND ${round}` : 'RESULT'));
    results.push({ p, peer });
    if (p.status !== 'ok') process.exitCode = 1;
  }
  if (ROUNDS > 1) {
    const m = (k: keyof PosternResult) => median(results.map((r) => r.p[k] as number));
    const med: PosternResult = {
      enqueuePerS: m('enqueuePerS'), drainPerS: m('drainPerS'), drainS: m('drainS'), startupMs: m('startupMs'),
      sinkMessages: m('sinkMessages'), sinkConnections: m('sinkConnections'), cpuMsPerMsg: m('cpuMsPerMsg'), machineBusyPct: m('machineBusyPct'),
      rssBefore: m('rssBefore'), rssPeak: m('rssPeak'), rssAfter: m('rssAfter'), heapBefore: m('heapBefore'), heapPeak: m('heapPeak'), heapAfter: m('heapAfter'),
      status: results.every((r) => r.p.status === 'ok') ? 'ok' : 'some_failed',
    };
    const peerMed: PeerResult | null = o.peer
      ? { perS: median(results.map((r) => r.peer!.perS)), fields: { sink_connections: f0(median(results.map((r) => Number(r.peer!.fields.sink_connections)))) } }
      : null;
    console.log(`\nmedians of ${ROUNDS} rounds (the ratio is of the medians; per round: ${results.map((r) => (r.peer ? f2(r.p.drainPerS / r.peer.perS) : 'NA')).join(', ')})`);
    console.log(resultLine(med, peerMed));
  }
} catch (e) {
  console.error(`bench: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
}
