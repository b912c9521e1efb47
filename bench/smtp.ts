/**
 * SMTP receive benchmark (not a test). --sessions concurrent SMTP sessions over persistent
 * connections (EHLO once, then MAIL/RCPT/DATA per message; a fresh connection every --chunk
 * messages, like smtp-source chunks) send --messages messages of ~--size body bytes, each with a
 * unique Message-ID, to random users user1..userN (seeded PRNG). Reports accepted msgs/s (first
 * connect → last 250), end-to-end msgs/s (until the delivered count reaches the total),
 * per-message latency (DATA terminator sent → final reply) p50/p99, and the server's memory
 * (VmRSS/VmHWM from /proc every 200 ms, RSS at 25/50/75/100 % of the messages).
 *
 * Default: a fresh Postern in a temp dir (config, domain, users via the CLI, `serve` as a child).
 * --target HOST:PORT benchmarks a running server instead (needs --count-cmd). See bench/README.md.
 */
import { spawn, execSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import pg from 'pg';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { helpAndNumbers } from './options.ts';
import { SmtpTestClient } from '../test/helpers/smtp-client.ts';
import { startDnsServer, type TestDnsServer } from '../test/helpers/dns-server.ts';
import BetterSqlite3 from 'better-sqlite3';
import { openPostgresStores, openStores, type Stores } from '../src/store/open.ts';
import { hashPassword } from '../src/auth/password.ts';

const HELP = `usage: npm run bench:smtp -- [options]
  --sessions N      concurrent SMTP sessions (default 20)
  --messages N      messages in total (default 5000)
  --size BYTES      body bytes per message, ~4 KB (default 4096)
  --users N         recipients user1..userN@DOMAIN (default 50)
  --chunk N         messages per connection before reconnecting (default 25)
  --seed N          PRNG seed for the recipients (default 1)
  --domain D        recipient domain (default bench.test)
  --keep            keep the temp dir (config, data, server.log)
  --target H:P      benchmark an already running server instead of starting Postern
  --count-cmd CMD   with --target (required): shell command printing the delivered count
  --pid PID         with --target: sample this process's memory
  --store B         sqlite (default) or postgres: the backend of the Postern under test
  --pg-url URL      with --store postgres: the database (default $POSTERN_BENCH_PG or
                    $POSTERN_TEST_PG); the run uses a fresh schema and drops it after
  --nodes N         with --store postgres: N server processes on one database; the
                    sessions are spread over them (default 1)
  --prefill N       store N messages in user1's INBOX before the run (shows whether the
                    cost per message grows with mailbox size; use with --users 1)
  --help`;

const { values: o } = parseArgs({
  options: {
    sessions: { type: 'string', default: '20' },
    messages: { type: 'string', default: '5000' },
    size: { type: 'string', default: '4096' },
    users: { type: 'string', default: '50' },
    chunk: { type: 'string', default: '25' },
    seed: { type: 'string', default: '1' },
    domain: { type: 'string', default: 'bench.test' },
    keep: { type: 'boolean', default: false },
    target: { type: 'string' },
    'count-cmd': { type: 'string' },
    pid: { type: 'string' },
    store: { type: 'string', default: 'sqlite' },
    'pg-url': { type: 'string' },
    nodes: { type: 'string', default: '1' },
    prefill: { type: 'string', default: '0' },
    help: { type: 'boolean', default: false },
  },
});
const { int } = helpAndNumbers(HELP, o.help);
const SESSIONS = int('sessions', o.sessions, 1);
const N = int('messages', o.messages, 1);
const SIZE = int('size', o.size, 0);
const USERS = int('users', o.users, 1);
const CHUNK = int('chunk', o.chunk, 1);
const SEED = int('seed', o.seed, 0);
const DOMAIN = o.domain;
const NODES = int('nodes', o.nodes, 1);
const PREFILL = int('prefill', o.prefill, 0);
const STORE = o.store;
const PG_URL = o['pg-url'] ?? process.env.POSTERN_BENCH_PG ?? process.env.POSTERN_TEST_PG;
if (STORE !== 'sqlite' && STORE !== 'postgres') {
  console.error(`--store must be sqlite or postgres, got "${STORE}"`);
  process.exit(1);
}
if (STORE === 'postgres' && !PG_URL) {
  console.error('--store postgres needs a database: --pg-url postgres://… (or $POSTERN_BENCH_PG); .ci/start-postgres starts a throwaway one');
  process.exit(1);
}
if (NODES > 1 && STORE !== 'postgres') {
  console.error('--nodes > 1 needs --store postgres (nodes share one database)');
  process.exit(1);
}
const PG_SCHEMA = `bench_${crypto.randomBytes(5).toString('hex')}`;
if (o.target && !o['count-cmd']) {
  console.error(`--target needs --count-cmd "command printing the delivered count"\n\n${HELP}`);
  process.exit(1);
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(ROOT, 'src/cli/main.ts');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- child processes ----------------------------------------------------------------------------

function run(cmd: string, args: string[], input?: string, shell = false): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: ROOT, shell, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out, err }));
    p.stdin.end(input ?? '');
  });
}

const countCmdMs: number[] = [];
let countDb: BetterSqlite3.Database | null = null;
let countPg: pg.Pool | null = null;
async function deliveredCount(): Promise<number> {
  const t = performance.now();
  let out: string;
  if (o.target) {
    const r = await run(o['count-cmd']!, [], undefined, true);
    if (r.code !== 0) throw new Error(`--count-cmd failed (exit ${r.code}): ${r.err.trim()}`);
    out = r.out;
  } else if (STORE === 'postgres') {
    countPg ??= new pg.Pool({ connectionString: PG_URL, max: 1 });
    out = String((await countPg.query(`SELECT count(*) AS n FROM ${PG_SCHEMA}.messages`)).rows[0].n);
  } else {
    // What `postern mail count` prints, read directly: the CLI's ~1.5 s start-up
    // would otherwise be added to the end-to-end time.
    countDb ??= new BetterSqlite3(path.join(dir, 'data', 'postern.db'), { readonly: true, fileMustExist: true });
    out = String((countDb.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n);
  }
  countCmdMs.push(performance.now() - t);
  const n = Number(out.trim().split('\n').pop()?.replace(/[^0-9]/g, ''));
  if (!Number.isFinite(n) || out.trim() === '') throw new Error(`count command printed no number: ${JSON.stringify(out)}`);
  return n;
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

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// ---- memory -------------------------------------------------------------------------------------

function memOf(pid: number): { rss: number; hwm: number } | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0);
    return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
  } catch {
    return null;
  }
}

// ---- setup --------------------------------------------------------------------------------------

let dir = '';
let server: ChildProcess | null = null;
const servers: ChildProcess[] = [];
const ports: number[] = [];
const cfgFiles: string[] = [];
let host = '127.0.0.1';
let port = 0;
let serverPid: number | null = o.pid ? Number(o.pid) : null;

async function stopServer(): Promise<void> {
  await Promise.all(
    servers.map(async (s) => {
      if (s.exitCode !== null || s.signalCode !== null) return;
      const exited = new Promise((r) => s.once('exit', r));
      s.kill('SIGTERM');
      const t = setTimeout(() => s.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }),
  );
}

async function dropPgSchema(): Promise<void> {
  await countPg?.end();
  if (STORE !== 'postgres' || o.keep || o.target) return;
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS ${PG_SCHEMA} CASCADE`);
  await c.end();
}

function cleanup(): void {
  for (const s of servers) if (s.exitCode === null && s.signalCode === null) s.kill('SIGKILL');
  if (dir && !o.keep) fs.rmSync(dir, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

/**
 * The inbound checks (SPF, DMARC) make DNS lookups for every message: a local DNS server that
 * answers at once (NXDOMAIN for the bench's domains) keeps the figures about Postern, not about
 * the machine's resolver (one without internet may drop bursts of queries and stall ~1 s each).
 */
let benchDns: TestDnsServer | null = null;

async function setupPostern(): Promise<void> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-bench-'));
  benchDns = await startDnsServer({});
  const storeToml =
    STORE === 'postgres' ? `[store]\nbackend = "postgres"\nurl = "${PG_URL}"\nschema = "${PG_SCHEMA}"\n` : '';
  const t = performance.now();
  console.log(`setup: ${dir}, ${STORE}${STORE === 'postgres' ? ` (schema ${PG_SCHEMA}), ${NODES} node(s)` : ''}, domain ${DOMAIN} and ${USERS} users …`);
  // Domain and users in this process: one CLI call per user costs ~1.5 s of start-up each.
  // Same store code path as `postern domain add` / `postern user add`.
  const stores: Stores =
    STORE === 'postgres' ? await openPostgresStores({ url: PG_URL, schema: PG_SCHEMA, poolSize: 4 }) : await openStores(path.join(dir, 'data'));
  await stores.data.addDomain(DOMAIN);
  const hash = await hashPassword('bench-pass');
  for (let u = 1; u <= USERS; u++) await stores.data.addAccount(`user${u}@${DOMAIN}`, hash);
  if (PREFILL) await prefill(stores);
  await stores.close();
  for (let n = 0; n < NODES; n++) {
    const p = await freePort();
    ports.push(p);
    const cfg = path.join(dir, `node${n}.toml`);
    // Node 0 keeps the data dir the SQLite count reads; others get their own (certificate, socket).
    const dataDir = path.join(dir, n === 0 ? 'data' : `data${n}`);
    // BENCH_EXTRA_TOML: more configuration, e.g. "[policy.spam]\nenabled = false" (tables only: it comes last).
    fs.writeFileSync(cfg, `hostname = "bench.test"\ndata_dir = "${dataDir}"\n[listen]\nsmtp = "127.0.0.1:${p}"\n${storeToml}\n[dns]\nservers = ["${benchDns.address}"]\n${process.env.BENCH_EXTRA_TOML ?? ''}\n`);
    cfgFiles.push(cfg);
  }
  port = ports[0]!;
  console.log(`setup: done in ${((performance.now() - t) / 1000).toFixed(1)} s; starting ${NODES} server(s) on 127.0.0.1:${ports.join(', ')}`);
  // BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the server.
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  for (const [n, cfg] of cfgFiles.entries()) {
    const logFd = fs.openSync(path.join(dir, n === 0 ? 'server.log' : `server${n}.log`), 'a');
    servers.push(spawn(process.execPath, [...nodeArgs, '--import', 'tsx', MAIN, 'serve', '--config', cfg], { cwd: ROOT, stdio: ['ignore', logFd, logFd] }));
    fs.closeSync(logFd);
  }
  server = servers[0]!;
  serverPid = server.pid ?? null;
  const deadline = Date.now() + 60_000;
  for (const [n, s] of servers.entries()) {
    for (;;) {
      if (s.exitCode !== null || s.signalCode !== null) {
        throw new Error(`server ${n} exited (${s.exitCode ?? s.signalCode}) before listening:\n${tail(path.join(dir, n === 0 ? 'server.log' : `server${n}.log`))}`);
      }
      if (await canConnect(host, ports[n]!)) break;
      if (Date.now() > deadline) throw new Error(`server ${n} not listening on ${host}:${ports[n]} after 60 s`);
      await sleep(100);
    }
  }
}

/** PREFILL small messages into user1's INBOX, through the store's delivery path, in batches. */
async function prefill(stores: Stores): Promise<void> {
  const acct = (await stores.data.getAccount(`user1@${DOMAIN}`))!;
  const bytes = Buffer.from(`Subject: prefill\r\n\r\n${'x'.repeat(1000)}\r\n`);
  const hash = crypto.createHash('sha256').update(bytes).digest('hex');
  const t = performance.now();
  for (let done = 0; done < PREFILL; ) {
    const n = Math.min(500, PREFILL - done);
    const batch = Array.from({ length: n }, (_, i) => ({
      blobHash: hash, size: bytes.length, blobData: bytes, meta: '{}', searchText: '', internalDate: Date.now(),
      subject: 'prefill', from: 'p@x.test', date: null, messageId: `<prefill.${done + i}@x.test>`,
      deliveries: [{ accountId: acct.id }], queue: null,
    }));
    await stores.data.addMessages(batch);
    done += n;
    if (process.stderr.isTTY) process.stderr.write(`\rprefill: ${done}/${PREFILL}`);
  }
  if (process.stderr.isTTY) process.stderr.write('\n');
  console.log(`prefill: ${PREFILL} messages in user1's INBOX in ${((performance.now() - t) / 1000).toFixed(1)} s`);
}

/** CPU time (user + system) of processes, in ms, from /proc/PID/stat. */
const CLK_TCK = (() => {
  try {
    return Number(execSync('getconf CLK_TCK').toString().trim()) || 100;
  } catch {
    return 100;
  }
})();
function cpuMs(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      ticks += Number(rest[11]) + Number(rest[12]); // utime, stime (fields 14 and 15)
    } catch {
      // gone
    }
  }
  return (ticks * 1000) / CLK_TCK;
}
/** PostgreSQL's server processes on this machine (all clusters: run the bench on a quiet one). */
function postgresPids(): number[] {
  try {
    return execSync('pgrep -x postgres').toString().trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function tail(file: string, n = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '(no log)';
  }
}

// ---- workload -----------------------------------------------------------------------------------

/** mulberry32: small, fast, reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Per lane, the recipient of each of its messages (deterministic for a seed). */
function plan(): string[][] {
  const rand = prng(SEED);
  return Array.from({ length: SESSIONS }, (_, lane) => {
    const share = Math.floor(N / SESSIONS) + (lane < N % SESSIONS ? 1 : 0);
    return Array.from({ length: share }, () => `user${1 + Math.floor(rand() * USERS)}@${DOMAIN}`);
  });
}

/** Body of exactly SIZE bytes: 76 letters + CRLF per line; no line starts with '.', so no stuffing. */
function makeBody(): string {
  const line = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 the quick fox.\r\n';
  let b = line.repeat(Math.ceil(SIZE / line.length) + 1).slice(0, SIZE);
  if (SIZE >= 2) b = b.slice(0, SIZE - 2) + '\r\n';
  return b;
}

// ---- main ---------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (o.target) {
    const m = /^(.*):(\d+)$/.exec(o.target);
    if (!m) throw new Error(`--target must be HOST:PORT, got "${o.target}"`);
    host = m[1]!.replace(/^\[|\]$/g, '');
    port = Number(m[2]);
  } else {
    await setupPostern();
  }

  const baseline = await deliveredCount();
  const goal = baseline + N;
  const lanes = plan();
  const body = makeBody();
  const runId = `${Date.now().toString(36)}.${process.pid}`;
  const date = new Date().toUTCString().replace('GMT', '+0000');
  console.log(
    `load: ${N} messages, ${SESSIONS} sessions, ${CHUNK} per connection, body ${SIZE} B, ${USERS} users @${DOMAIN}, seed ${SEED} → ${host}:${port}` +
      (serverPid ? ` (server pid ${serverPid})` : ''),
  );

  // memory sampling
  const samples: Array<{ t: number; done: number; rss: number; hwm: number }> = [];
  let accepted = 0;
  let failed = 0;
  const errors: string[] = [];
  const sample = () => {
    if (!serverPid) return;
    const m = memOf(serverPid);
    if (m) samples.push({ t: performance.now(), done: accepted + failed, ...m });
  };
  sample();
  const rssStart = samples[0]?.rss ?? 0;
  const sampler = setInterval(sample, 200);

  const latencies: number[] = [];
  let abort = '';
  let tLast250 = 0;
  const serverPids = servers.map((x) => x.pid!).filter(Boolean);
  const pgPids = STORE === 'postgres' ? postgresPids() : [];
  const cpu0 = { server: cpuMs(serverPids), pg: cpuMs(pgPids) };
  const t0 = performance.now();
  await Promise.all(
    lanes.map(async (rcpts, lane) => {
      let c: SmtpTestClient | null = null;
      let sent = 0;
      const fail = (msg: string) => {
        failed++;
        if (++consecutive >= 5 && !abort) abort = `lane ${lane}: 5 consecutive failures, last: ${msg}`;
        if (errors.length < 10) errors.push(`lane ${lane} msg ${sent}: ${msg}`);
      };
      let consecutive = 0;
      let step = '';
      for (let i = 0; i < rcpts.length && !abort; i++) {
        try {
          if (!c || sent === CHUNK || c.isClosed) {
            if (c) await c.quit();
            step = 'connect';
            c = await SmtpTestClient.connect({ host, port: ports.length ? ports[lane % ports.length]! : port, timeoutMs: 30_000 });
            sent = 0;
            if (c.greeting.code !== 220) throw new Error(`greeting ${c.greeting.code} ${c.greeting.text}`);
            step = 'EHLO';
            const e = await c.command('EHLO bench-client.test');
            if (e.code !== 250) throw new Error(`EHLO ${e.code} ${e.text}`);
          }
          sent++;
          const rcpt = rcpts[i]!;
          step = 'MAIL';
          const mail = await c.command('MAIL FROM:<bench@client.test>');
          if (mail.code !== 250) {
            fail(`MAIL ${mail.code} ${mail.text}`);
            await c.command('RSET');
            continue;
          }
          step = 'RCPT';
          const r = await c.command(`RCPT TO:<${rcpt}>`);
          if (r.code !== 250 && r.code !== 251) {
            fail(`RCPT ${r.code} ${r.text}`);
            await c.command('RSET');
            continue;
          }
          step = 'DATA';
          const d = await c.command('DATA');
          if (d.code !== 354) {
            fail(`DATA ${d.code} ${d.text}`);
            continue;
          }
          const payload =
            `From: Bench <bench@client.test>\r\nTo: <${rcpt}>\r\nSubject: bench ${lane}-${i}\r\nDate: ${date}\r\n` +
            `Message-ID: <bench.${runId}.${lane}.${i}@client.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n` +
            body +
            '.\r\n';
          step = 'end of DATA';
          const s = performance.now();
          c.sendRaw(payload);
          const fin = await c.readReply();
          const now = performance.now();
          latencies.push(now - s);
          if (fin.code === 250) {
            accepted++;
            consecutive = 0;
            tLast250 = now;
          } else fail(`end of DATA ${fin.code} ${fin.text}`);
        } catch (e) {
          fail(`${step}: ${(e as Error).message}`);
          c?.destroy();
          c = null;
        }
      }
      if (c) await c.quit();
    }),
  );
  if (abort) throw new Error(`aborted: ${abort}\n  ${errors.join('\n  ')}`);
  const tSent = performance.now();
  sample();
  const tAccepted = tLast250 || tSent;

  // end to end: poll the delivered count until it reaches baseline + accepted
  let delivered = baseline;
  let tE2e = 0;
  let status = 'ok';
  const target = baseline + accepted;
  let lastChange = performance.now();
  for (;;) {
    const n = await deliveredCount();
    const now = performance.now();
    if (n !== delivered) lastChange = now;
    delivered = n;
    if (n >= target) {
      tE2e = now;
      break;
    }
    if (now - lastChange > 60_000) {
      status = 'stalled';
      tE2e = now;
      break;
    }
    await sleep(100);
  }
  clearInterval(sampler);
  sample();
  const cpuServer = serverPids.length ? (cpuMs(serverPids) - cpu0.server) / Math.max(1, accepted) : NaN;
  const cpuPg = pgPids.length ? (cpuMs(postgresPids()) - cpu0.pg) / Math.max(1, accepted) : NaN;

  // ---- report -----------------------------------------------------------------------------------
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)]! : NaN);
  const runSamples = samples.filter((s) => s.t >= t0 && s.t <= tSent + 1);
  const quartiles = [0.25, 0.5, 0.75, 1].map((q) => {
    const s = runSamples.find((x) => x.done >= q * N) ?? runSamples[runSamples.length - 1];
    return s ? s.rss : NaN;
  });
  const peak = samples.reduce((m, s) => Math.max(m, s.hwm, s.rss), 0);
  const acceptedPerS = accepted / ((tAccepted - t0) / 1000);
  const newDelivered = delivered - baseline;
  const e2ePerS = newDelivered / ((tE2e - t0) / 1000);
  const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'NA');
  const f0 = (x: number) => (Number.isFinite(x) && x > 0 ? x.toFixed(0) : 'NA');
  const countMs = countCmdMs.length ? countCmdMs.reduce((a, b) => a + b, 0) / countCmdMs.length : NaN;

  console.log('');
  console.log(`accepted:   ${accepted}/${N} (${failed} failed) in ${((tAccepted - t0) / 1000).toFixed(2)} s = ${acceptedPerS.toFixed(1)} msgs/s (first connect → last 250)`);
  console.log(
    `end to end: ${newDelivered} delivered in ${((tE2e - t0) / 1000).toFixed(2)} s = ${e2ePerS.toFixed(1)} msgs/s (${status}; ` +
      `count reached ${((tE2e - tAccepted) / 1000).toFixed(2)} s after the last 250; one count command takes ~${f0(countMs)} ms)`,
  );
  console.log(`latency:    DATA terminator → reply p50 ${f1(pct(50))} ms, p90 ${f1(pct(90))} ms, p99 ${f1(pct(99))} ms, max ${f1(latencies[latencies.length - 1] ?? NaN)} ms`);
  if (serverPid) {
    console.log(`server mem: RSS at start ${f0(rssStart)} MB; at 25/50/75/100 % of the messages ${quartiles.map(f0).join(' / ')} MB; peak (VmHWM) ${f0(peak)} MB`);
  } else {
    console.log('server mem: not sampled (pass --pid with --target)');
  }
  const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'NA');
  if (serverPids.length) {
    console.log(`cpu:        ${f2(cpuServer)} ms per message in Postern (${serverPids.length} process(es))${pgPids.length ? `, ${f2(cpuPg)} ms in PostgreSQL` : ''}`);
  }
  for (const e of errors) console.log(`  error: ${e}`);
  console.log(
    `RESULT accepted_per_s=${acceptedPerS.toFixed(1)} e2e_per_s=${e2ePerS.toFixed(1)} p50_ms=${f1(pct(50))} p99_ms=${f1(pct(99))} ` +
      `peak_rss_mb=${f0(peak)} rss_quartiles_mb=${quartiles.map(f0).join(',')} ` +
      `cpu_ms_per_msg=${f2(cpuServer)} pg_cpu_ms_per_msg=${f2(cpuPg)} store=${o.target ? 'NA' : STORE} nodes=${o.target ? 'NA' : NODES} prefill=${PREFILL} ` +
      `messages=${N} sessions=${SESSIONS} size=${SIZE} chunk=${CHUNK} accepted=${accepted} failed=${failed} delivered=${newDelivered} status=${status}`,
  );
  if (failed || status !== 'ok') process.exitCode = 1;
}

try {
  await main();
} catch (e) {
  console.error(`bench: ${(e as Error).message}`);
  if (dir) console.error(`server log: ${path.join(dir, 'server.log')}${o.keep ? '' : ' (pass --keep to keep it)'}`);
  process.exitCode = 1;
} finally {
  await stopServer();
  await (benchDns as TestDnsServer | null)?.close();
  await dropPgSchema().catch((e: Error) => console.error(`bench: dropping schema ${PG_SCHEMA}: ${e.message}`));
  if (dir) {
    if (o.keep) console.log(`kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
}
