/**
 * SMTP AUTH login benchmark (not a test). For --seconds, --clients concurrent clients loop:
 * new TCP connection to the submission port, EHLO, STARTTLS, EHLO, AUTH PLAIN, QUIT. Meanwhile
 * one extra client, logged in on its own connection, sends NOOP every --noop-interval ms and
 * records each round trip: if password hashing (argon2id, on libuv's thread pool) or TLS
 * handshakes blocked the event loop, every other session would stall and NOOP shows it.
 *
 * Reports logins/s, login latency (connect → 235) and AUTH latency (AUTH → 235) p50/p99,
 * NOOP p50/p99/max with PASS/FAIL against --noop-target (50 ms), and the server's CPU.
 * Default: credential cache on (auth.cache_ttl 60 s: one argon2 verification, then cache
 * hits). --no-cache: auth.cache_ttl = 0, argon2id on every login.
 *
 * The server is a fresh Postern in a temp dir started as a child process, like bench/smtp.ts.
 * See bench/README.md.
 */
import { spawn, execSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { helpAndNumbers } from './options.ts';
import { openStores } from '../src/store/open.ts';
import { hashPassword } from '../src/auth/password.ts';

const HELP = `usage: npm run bench:auth -- [options]
  --seconds N         how long the login load runs (default 10)
  --clients N         concurrent login loops (default 20)
  --no-cache          auth.cache_ttl = 0: argon2id verification on every login
                      (default: cache on, auth.cache_ttl 60 s)
  --noop-interval MS  the latency probe sends NOOP this often (default 10)
  --noop-target MS    PASS if the NOOP p99 is below this (default 50)
  --keep              keep the temp dir (config, data, server.log)
  --help
Exit status 1 if a login failed or the NOOP target was missed.`;

const { values: o } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    clients: { type: 'string', default: '20' },
    'no-cache': { type: 'boolean', default: false },
    'noop-interval': { type: 'string', default: '10' },
    'noop-target': { type: 'string', default: '50' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
const { num } = helpAndNumbers(HELP, o.help);
const SECONDS = num('seconds', o.seconds, 0.1);
const CLIENTS = Math.floor(num('clients', o.clients, 1));
const NOOP_INTERVAL = num('noop-interval', o['noop-interval'], 1);
const NOOP_TARGET = num('noop-target', o['noop-target'], 1);
const CACHE = !o['no-cache'];
const USER = 'bench@bench.test';
const PASSWORD = 'bench-pass';
const PLAIN = Buffer.from(`\0${USER}\0${PASSWORD}`).toString('base64');

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(ROOT, 'src/cli/main.ts');
const HOST = '127.0.0.1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- a minimal SMTP client: replies, STARTTLS --------------------------------------------------

interface Reply {
  code: number;
  text: string;
}

class Conn {
  private buf = '';
  private lines: string[] = [];
  private waiter: ((r: Reply | Error) => void) | null = null;
  private replies: Array<Reply | Error> = [];
  private closed: Error | null = null;

  private constructor(private sock: net.Socket | tls.TLSSocket) {
    this.attach(sock);
  }

  static connect(port: number, timeoutMs = 30_000): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, HOST);
      s.setNoDelay(true);
      s.setTimeout(timeoutMs, () => s.destroy(new Error('timeout')));
      s.once('connect', () => resolve(new Conn(s)));
      s.once('error', reject);
    });
  }

  private attach(s: net.Socket | tls.TLSSocket): void {
    s.setEncoding('latin1');
    s.on('data', this.onData);
    s.on('error', (e: Error) => this.fail(e));
    s.on('close', () => this.fail(new Error('connection closed')));
  }

  private onData = (chunk: string): void => {
    this.buf += chunk;
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i).replace(/\r$/, '');
      this.buf = this.buf.slice(i + 1);
      this.lines.push(line);
      if (line[3] !== '-') {
        const r = { code: Number(line.slice(0, 3)), text: this.lines.join('\n') };
        this.lines = [];
        this.deliver(r);
      }
    }
  };

  private deliver(r: Reply | Error): void {
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w(r);
    } else this.replies.push(r);
  }

  private fail(e: Error): void {
    if (this.closed) return;
    this.closed = e;
    this.deliver(e);
  }

  reply(): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const take = (r: Reply | Error) => (r instanceof Error ? reject(r) : resolve(r));
      const queued = this.replies.shift();
      if (queued) take(queued);
      else if (this.closed) reject(this.closed);
      else this.waiter = take;
    });
  }

  async command(line: string, expect: number): Promise<Reply> {
    this.sock.write(`${line}\r\n`);
    const r = await this.reply();
    if (r.code !== expect) throw new Error(`${line.split(' ').slice(0, 2).join(' ')}: ${r.code} ${r.text.split('\n').pop()}`);
    return r;
  }

  /** STARTTLS and the handshake; the self-signed certificate is not verified. */
  async startTls(): Promise<void> {
    await this.command('STARTTLS', 220);
    const plain = this.sock;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    plain.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      const s = tls.connect({ socket: plain, rejectUnauthorized: false, servername: 'bench.test' }, () => resolve());
      s.once('error', reject);
      this.sock = s;
      this.attach(s);
    });
  }

  async quit(): Promise<void> {
    this.sock.write('QUIT\r\n');
    await this.reply().catch(() => undefined);
    this.sock.end();
  }

  destroy(): void {
    this.sock.destroy();
  }
}

/** Connect, EHLO, STARTTLS, EHLO, AUTH PLAIN: returns the connection and the AUTH round trip. */
async function login(port: number): Promise<{ c: Conn; authMs: number }> {
  const c = await Conn.connect(port);
  try {
    const g = await c.reply();
    if (g.code !== 220) throw new Error(`greeting: ${g.code} ${g.text}`);
    await c.command('EHLO bench-client.test', 250);
    await c.startTls();
    const e = await c.command('EHLO bench-client.test', 250);
    if (!/^250[- ]AUTH .*\bPLAIN\b/m.test(e.text)) throw new Error(`AUTH PLAIN not offered after STARTTLS:\n${e.text}`);
    const t = performance.now();
    await c.command(`AUTH PLAIN ${PLAIN}`, 235);
    return { c, authMs: performance.now() - t };
  } catch (err) {
    c.destroy();
    throw err;
  }
}

// ---- server -------------------------------------------------------------------------------------

let dir = '';
let server: ChildProcess | null = null;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, HOST, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, HOST);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function tail(file: string, n = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '(no log)';
  }
}

const CLK_TCK = (() => {
  try {
    return Number(execSync('getconf CLK_TCK').toString().trim()) || 100;
  } catch {
    return 100;
  }
})();
/** CPU time (user + system, all threads) of a process, in ms, from /proc/PID/stat. */
function cpuMs(pid: number): number {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / CLK_TCK; // utime, stime
  } catch {
    return NaN;
  }
}

async function startPostern(): Promise<number> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-bench-auth-'));
  const stores = await openStores(path.join(dir, 'data'));
  await stores.data.addDomain('bench.test');
  await stores.data.addAccount(USER, await hashPassword(PASSWORD)); // argon2id, as `postern user add`
  await stores.close();
  const port = await freePort();
  const cfg = path.join(dir, 'postern.toml');
  // 127.0.0.1 is in bans.trusted_networks by default (never banned); every login succeeds, so
  // failure_delay never applies; no mail is sent, so submission.rate_limit never applies.
  // max_connections_per_ip is raised so that sockets still closing never count against the clients.
  fs.writeFileSync(
    cfg,
    [
      'hostname = "bench.test"',
      `data_dir = "${path.join(dir, 'data')}"`,
      '[listen]',
      `submission = "${HOST}:${port}"`,
      '[auth]',
      `cache_ttl = "${CACHE ? '60s' : '0s'}"`,
      'failure_delay = "0s"',
      '[bans]',
      'trusted_networks = ["127.0.0.1/32", "::1/128"]',
      '[submission]',
      'rate_limit = 0',
      '[smtp]',
      'max_connections_per_ip = 1000',
      '',
    ].join('\n'),
  );
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const logFd = fs.openSync(path.join(dir, 'server.log'), 'a');
  server = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', MAIN, 'serve', '--config', cfg], { cwd: ROOT, stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`server exited (${server.exitCode ?? server.signalCode}) before listening:\n${tail(path.join(dir, 'server.log'))}`);
    }
    if (await canConnect(port)) return port;
    if (Date.now() > deadline) throw new Error(`server not listening on ${HOST}:${port} after 60 s`);
    await sleep(100);
  }
}

async function stopServer(): Promise<void> {
  const s = server;
  if (!s || s.exitCode !== null || s.signalCode !== null) return;
  const exited = new Promise((r) => s.once('exit', r));
  s.kill('SIGTERM');
  const t = setTimeout(() => s.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    if (dir && !o.keep) fs.rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });
}

// ---- main ---------------------------------------------------------------------------------------

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : NaN;
}

async function main(): Promise<void> {
  const mode = CACHE ? 'cache (auth.cache_ttl 60 s)' : 'no-cache (auth.cache_ttl 0: argon2id per login)';
  console.log(`setup: a fresh Postern, 1 user (argon2id), ${mode} …`);
  const port = await startPostern();
  const pid = server!.pid!;
  console.log(`load: ${CLIENTS} login loops + 1 NOOP probe every ${NOOP_INTERVAL} ms for ${SECONDS} s → ${HOST}:${port} (server pid ${pid}, dir ${dir})`);

  // Warm-up: one login (starts the TLS context, JIT, the first argon2 verification).
  await (await login(port)).c.quit();

  // The probe: its own logged-in session.
  const probe = (await login(port)).c;
  const noop: number[] = [];
  let noopErr = '';
  let running = true;
  const probeDone = (async () => {
    let next = performance.now();
    while (running) {
      const t = performance.now();
      try {
        await probe.command('NOOP', 250);
      } catch (e) {
        noopErr = (e as Error).message;
        return;
      }
      noop.push(performance.now() - t);
      next += NOOP_INTERVAL;
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
      else next = performance.now(); // a slow round trip: no burst to catch up
    }
  })();

  const loginMs: number[] = [];
  const authMs: number[] = [];
  let failed = 0;
  const errors = new Map<string, number>();
  const cpu0 = cpuMs(pid);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        try {
          const r = await login(port);
          loginMs.push(performance.now() - t);
          authMs.push(r.authMs);
          await r.c.quit();
        } catch (e) {
          failed++;
          const m = (e as Error).message;
          errors.set(m, (errors.get(m) ?? 0) + 1);
          if (failed > 50 && failed > loginMs.length) throw new Error(`too many failures, first: ${[...errors.keys()][0]}`);
          await sleep(10);
        }
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = cpuMs(pid) - cpu0;
  const clientCpu = process.cpuUsage(client0);
  running = false;
  await probeDone;
  await probe.quit();

  const logins = loginMs.length;
  loginMs.sort((a, b) => a - b);
  authMs.sort((a, b) => a - b);
  noop.sort((a, b) => a - b);
  const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'NA');
  const noopP99 = percentile(noop, 99);
  const pass = Number.isFinite(noopP99) && noopP99 < NOOP_TARGET && !noopErr;
  const serverCores = cpu / 1000 / elapsed;
  const clientCores = (clientCpu.user + clientCpu.system) / 1e6 / elapsed;

  console.log('');
  console.log(`logins:     ${logins} in ${elapsed.toFixed(2)} s = ${(logins / elapsed).toFixed(1)} logins/s (${failed} failed)`);
  console.log(`login:      connect → 235 p50 ${f1(percentile(loginMs, 50))} ms, p99 ${f1(percentile(loginMs, 99))} ms`);
  console.log(`auth:       AUTH PLAIN → 235 p50 ${f1(percentile(authMs, 50))} ms, p99 ${f1(percentile(authMs, 99))} ms`);
  console.log(
    `noop:       ${noop.length} round trips, p50 ${f1(percentile(noop, 50))} ms, p99 ${f1(noopP99)} ms, max ${f1(noop[noop.length - 1] ?? NaN)} ms` +
      ` → ${pass ? 'PASS' : 'FAIL'} (target p99 < ${NOOP_TARGET} ms)${noopErr ? ` probe error: ${noopErr}` : ''}`,
  );
  console.log(
    `cpu:        server ${(serverCores * 100).toFixed(0)} % of one core (${f1(cpu / Math.max(1, logins))} ms per login); ` +
      `load generator ${(clientCores * 100).toFixed(0)} %; ${os.cpus().length} CPUs`,
  );
  for (const [m, n] of errors) console.log(`  error ×${n}: ${m}`);
  console.log(
    `RESULT mode=${CACHE ? 'cache' : 'no-cache'} logins_per_s=${(logins / elapsed).toFixed(1)} login_p50_ms=${f1(percentile(loginMs, 50))} login_p99_ms=${f1(percentile(loginMs, 99))} ` +
      `auth_p50_ms=${f1(percentile(authMs, 50))} auth_p99_ms=${f1(percentile(authMs, 99))} ` +
      `noop_p50_ms=${f1(percentile(noop, 50))} noop_p99_ms=${f1(noopP99)} noop_max_ms=${f1(noop[noop.length - 1] ?? NaN)} noop_target=${pass ? 'PASS' : 'FAIL'} ` +
      `server_cpu_pct=${(serverCores * 100).toFixed(0)} cpu_ms_per_login=${f1(cpu / Math.max(1, logins))} client_cpu_pct=${(clientCores * 100).toFixed(0)} ` +
      `clients=${CLIENTS} seconds=${SECONDS} logins=${logins} failed=${failed}`,
  );
  if (failed || !pass) process.exitCode = 1;
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
