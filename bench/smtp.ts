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
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SmtpTestClient } from '../test/helpers/smtp-client.ts';
import BetterSqlite3 from 'better-sqlite3';
import { openStores } from '../src/store/open.ts';
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
    help: { type: 'boolean', default: false },
  },
});
if (o.help) {
  console.log(HELP);
  process.exit(0);
}
const int = (name: string, v: string, min: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}, got "${v}"\n\n${HELP}`);
    process.exit(1);
  }
  return n;
};
const SESSIONS = int('sessions', o.sessions, 1);
const N = int('messages', o.messages, 1);
const SIZE = int('size', o.size, 0);
const USERS = int('users', o.users, 1);
const CHUNK = int('chunk', o.chunk, 1);
const SEED = int('seed', o.seed, 0);
const DOMAIN = o.domain;
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

let cfgFile = '';
const countCmdMs: number[] = [];
let countDb: BetterSqlite3.Database | null = null;
async function deliveredCount(): Promise<number> {
  const t = performance.now();
  let out: string;
  if (o.target) {
    const r = await run(o['count-cmd']!, [], undefined, true);
    if (r.code !== 0) throw new Error(`--count-cmd failed (exit ${r.code}): ${r.err.trim()}`);
    out = r.out;
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
let host = '127.0.0.1';
let port = 0;
let serverPid: number | null = o.pid ? Number(o.pid) : null;

async function stopServer(): Promise<void> {
  const s = server;
  if (!s || s.exitCode !== null || s.signalCode !== null) return;
  const exited = new Promise((r) => s.once('exit', r));
  s.kill('SIGTERM');
  const t = setTimeout(() => s.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

function cleanup(): void {
  if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  if (dir && !o.keep) fs.rmSync(dir, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

async function setupPostern(): Promise<void> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-bench-'));
  cfgFile = path.join(dir, 'postern.toml');
  port = await freePort();
  fs.writeFileSync(cfgFile, `hostname = "bench.test"\ndata_dir = "${path.join(dir, 'data')}"\n[listen]\nsmtp = "127.0.0.1:${port}"\n`);
  const t = performance.now();
  console.log(`setup: ${dir}, domain ${DOMAIN} and ${USERS} users …`);
  // Domain and users in this process: one CLI call per user costs ~1.5 s of start-up each.
  // Same store code path as `postern domain add` / `postern user add`.
  const stores = await openStores(path.join(dir, 'data'));
  await stores.data.addDomain(DOMAIN);
  const hash = await hashPassword('bench-pass');
  for (let u = 1; u <= USERS; u++) await stores.data.addAccount(`user${u}@${DOMAIN}`, hash);
  await stores.close();
  console.log(`setup: done in ${((performance.now() - t) / 1000).toFixed(1)} s; starting the server on 127.0.0.1:${port}`);
  const logFd = fs.openSync(path.join(dir, 'server.log'), 'a');
  // BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the server.
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  server = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', MAIN, 'serve', '--config', cfgFile], { cwd: ROOT, stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  serverPid = server.pid ?? null;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`server exited (${server.exitCode ?? server.signalCode}) before listening:\n${tail(path.join(dir, 'server.log'))}`);
    }
    if (await canConnect(host, port)) break;
    if (Date.now() > deadline) throw new Error(`server not listening on ${host}:${port} after 60 s:\n${tail(path.join(dir, 'server.log'))}`);
    await sleep(100);
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
            c = await SmtpTestClient.connect({ host, port, timeoutMs: 30_000 });
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
  for (const e of errors) console.log(`  error: ${e}`);
  console.log(
    `RESULT accepted_per_s=${acceptedPerS.toFixed(1)} e2e_per_s=${e2ePerS.toFixed(1)} p50_ms=${f1(pct(50))} p99_ms=${f1(pct(99))} ` +
      `peak_rss_mb=${f0(peak)} rss_quartiles_mb=${quartiles.map(f0).join(',')} ` +
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
  if (dir) {
    if (o.keep) console.log(`kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
}
