/**
 * POP3 benchmark (not a test), issue #7: --clients (20) clients, each on its own user whose
 * INBOX holds --messages (100) messages of ~--size (50) KB, in two phases of --seconds (20):
 *   download:  connect, USER/PASS, STAT, LIST, UIDL, RETR of every message, QUIT — again and
 *              again (nothing is deleted): MB/s of message bytes received, and sessions/s;
 *   login:     connect, USER/PASS, STAT, QUIT (a client polling for new mail): logins/s.
 * A warm-up round (not measured) comes first: the JIT, the credential cache, Dovecot's indexes
 * and \Seen flags set by the first RETRs (both servers set them at QUIT), so that the measured
 * rounds do the same work on both.
 *
 * Postern runs as `postern serve` in a child process (INBOXes filled beforehand through the
 * same Ingest write path as SMTP delivery); the clients run in this process and speak plaintext
 * on loopback, as the Dovecot peer of ../shared/peers allows (auth.allow_plaintext_loopback).
 * --peer (root, Dovecot installed): the same against that Dovecot 2.3 (filled with the same
 * messages as maildir files), after Postern, never both at once; prints the ratios.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { helpAndNumbers } from './options.ts';
import {
  cpuMs,
  fillDovecotMaildir,
  withDovecotPeer,
  freePort,
  machineCpu,
  percentile,
  preparePostern,
  processTree,
  prng,
  rfc5322Date,
  startPosternServe,
  stopChild,
  type CorpusMessage,
} from './imap-lib.ts';

const HELP = `usage: npm run bench:pop3 -- [options]
  --clients N       concurrent clients, each on its own user (default 20)
  --messages N      messages in each client's INBOX (default 100)
  --size KB         approximate message size (default 50)
  --seconds N       duration of each phase (default 20)
  --seed N          corpus PRNG seed (default 1)
  --peer            then the same against Dovecot from ../shared/peers (root; Dovecot installed);
                    prints the ratio Postern / Dovecot
  --peer-only       only the Dovecot side
  --keep            keep Postern's temp dir (config, data, server.log)
  --help
BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" passes node options to Postern.`;

const { values: o } = parseArgs({
  options: {
    clients: { type: 'string', default: '20' },
    messages: { type: 'string', default: '100' },
    size: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '20' },
    seed: { type: 'string', default: '1' },
    peer: { type: 'boolean', default: false },
    'peer-only': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
const { int, num } = helpAndNumbers(HELP, o.help);
const CLIENTS = int('clients', o.clients, 1);
const MESSAGES = int('messages', o.messages, 1);
const SIZE_KB = num('size', o.size, 1);
const SECONDS = num('seconds', o.seconds, 1);
const SEED = int('seed', o.seed, 0);
const PEER = o.peer || o['peer-only'];
if (PEER && CLIENTS > 50) {
  console.error('--peer: the peer has 50 users; use at most 50 clients');
  process.exit(1);
}
const PASSWORD = 'pass';

// ---- the messages -------------------------------------------------------------------------------

const WORDS = 'meeting report budget quarter project invoice travel schedule review update lunch server network release backup contract'.split(' ');

/**
 * Message i: ~SIZE_KB of text/plain in lines of 60–90 characters, 1 % of them starting with "."
 * (dot-stuffed on the wire), deterministic for (seed, i).
 */
function bigMessage(seed: number, i: number, to: string): CorpusMessage {
  const r = prng(seed * 1_000_003 + i);
  const date = 1_790_000_000 + i * 600;
  const head =
    `From: Sender ${1 + (i % 40)} <sender${1 + (i % 40)}@example.net>\r\nTo: <${to}>\r\nSubject: pop3 bench ${i}\r\n` +
    `Date: ${rfc5322Date(date)}\r\nMessage-ID: <pop3bench.${seed}.${i}@example.net>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n`;
  const lines: string[] = [];
  const target = SIZE_KB * 1024 * (0.8 + r() * 0.4) - head.length;
  for (let size = 0; size < target; ) {
    let l = '';
    while (l.length < 60 + r() * 30) l += `${WORDS[Math.floor(r() * WORDS.length)]} `;
    if (r() < 0.01) l = `.${l}`;
    lines.push(l.trimEnd());
    size += l.length + 1;
  }
  return { data: Buffer.from(`${head}${lines.join('\r\n')}\r\n`), seen: false, date };
}

// ---- a lean POP3 client -------------------------------------------------------------------------

const CRLF = Buffer.from('\r\n');
const TERMINATOR = Buffer.from('\r\n.\r\n');

/**
 * One connection, one command at a time. Single-line replies are returned as strings; multi-line
 * bodies are not kept, only counted (their bytes, up to the CRLF "." CRLF that ends them), so the
 * load generator stays cheap.
 */
class Pop3 {
  private buf: Buffer = Buffer.alloc(0);
  /** Waiting for a multi-line body: its bytes so far; the last 4 bytes seen, to find a split terminator. */
  private body: { bytes: number; tail: Buffer; resolve: (n: number) => void } | null = null;
  private lineWaiter: ((l: string) => void) | null = null;
  private closeError: Error | null = null;

  private constructor(private sock: net.Socket) {
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (e) => (this.closeError = e));
    sock.on('close', () => {
      const e = this.closeError ?? new Error('connection closed');
      this.onFail?.(e);
    });
  }

  private onFail: ((e: Error) => void) | null = null;

  static async connect(port: number): Promise<Pop3> {
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', () => resolve());
      sock.once('error', reject);
    });
    const c = new Pop3(sock);
    const g = await c.line();
    if (!g.startsWith('+OK')) throw new Error(`bad greeting: ${g.slice(0, 100)}`);
    return c;
  }

  private onData(d: Buffer): void {
    if (this.body) {
      const b = this.body;
      // The terminator may straddle the previous chunk and this one: look in the last 4 bytes seen + the start of this one.
      const inProbe = Buffer.concat([b.tail, d.subarray(0, 4)]).indexOf(TERMINATOR);
      const end = inProbe >= 0 ? inProbe - b.tail.length : d.indexOf(TERMINATOR);
      if (inProbe < 0 && end < 0) {
        b.bytes += d.length;
        b.tail = d.length >= 4 ? d.subarray(-4) : Buffer.concat([b.tail, d]).subarray(-4);
        return;
      }
      // `end` (maybe negative: inside the tail) is where CRLF "." CRLF starts; the body keeps its CRLF.
      this.body = null;
      b.bytes += end + 2;
      const rest = d.subarray(end + TERMINATOR.length);
      b.resolve(b.bytes);
      if (rest.length) this.onData(rest);
      return;
    }
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    const i = this.buf.indexOf(CRLF);
    if (i < 0 || !this.lineWaiter) return;
    const line = this.buf.toString('latin1', 0, i);
    this.buf = this.buf.subarray(i + 2);
    const w = this.lineWaiter;
    this.lineWaiter = null;
    w(line);
  }

  private line(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.onFail = reject;
      this.lineWaiter = resolve;
      if (this.buf.length) this.onData(Buffer.alloc(0));
    });
  }

  /** A single-line command; -ERR is an error. */
  async cmd(text: string): Promise<string> {
    this.sock.write(`${text}\r\n`);
    const l = await this.line();
    if (!l.startsWith('+OK')) throw new Error(`${text.split(' ')[0]}: ${l.slice(0, 200)}`);
    return l;
  }

  /** A multi-line command: resolves with the body's size in octets (dot-stuffed, as sent). */
  async multi(text: string): Promise<number> {
    await this.cmd(text);
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    const p = new Promise<number>((resolve, reject) => {
      this.onFail = reject;
      // The status line's CRLF: an empty body ends at once with ".CRLF".
      this.body = { bytes: 0, tail: CRLF, resolve };
    });
    if (rest.length) this.onData(rest);
    return p;
  }

  async quit(): Promise<void> {
    await this.cmd('QUIT');
    this.sock.end();
  }

  destroy(): void {
    this.sock.destroy();
  }
}

// ---- the workload -------------------------------------------------------------------------------

interface Target {
  name: string;
  port: number;
  domain: string;
  /** Processes whose CPU counts as the server's. */
  cpu: () => number;
}

type Phase = 'download' | 'login';

interface PhaseResult {
  phase: Phase;
  sessions: number;
  bytes: number;
  messages: number;
  elapsed: number;
  serverCpuMs: number;
  busyPct: number;
  loginP50: number;
  loginP99: number;
  errors: string[];
}

async function runPhase(t: Target, phase: Phase, seconds: number, once = false): Promise<PhaseResult> {
  const res: PhaseResult = { phase, sessions: 0, bytes: 0, messages: 0, elapsed: 0, serverCpuMs: 0, busyPct: 0, loginP50: 0, loginP99: 0, errors: [] };
  const logins: number[] = [];
  const end = performance.now() + seconds * 1000;
  const client = async (k: number) => {
    const email = `user${k + 1}@${t.domain}`;
    let failures = 0;
    do {
      let c: Pop3 | null = null;
      try {
        const t0 = performance.now();
        c = await Pop3.connect(t.port);
        await c.cmd(`USER ${email}`);
        await c.cmd(`PASS ${PASSWORD}`);
        logins.push(performance.now() - t0);
        const stat = await c.cmd('STAT');
        const n = Number(stat.split(' ')[1]);
        if (phase === 'download') {
          if (n !== MESSAGES) throw new Error(`STAT says ${n} messages, expected ${MESSAGES}`);
          await c.multi('LIST');
          await c.multi('UIDL');
          for (let i = 1; i <= n; i++) {
            // (awaited first: `res.bytes += await …` would read res.bytes before the await and lose other clients' bytes)
            const bytes = await c.multi(`RETR ${i}`);
            res.bytes += bytes;
            res.messages++;
          }
        }
        await c.quit();
        res.sessions++;
        failures = 0;
      } catch (err) {
        res.errors.push(`client ${k}: ${(err as Error).message}`);
        c?.destroy();
        if (++failures >= 5) break;
      }
    } while (!once && performance.now() < end);
  };
  const cpu0 = t.cpu();
  const m0 = machineCpu();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, (_, k) => client(k)));
  res.elapsed = (performance.now() - t0) / 1000;
  const m1 = machineCpu();
  res.serverCpuMs = t.cpu() - cpu0;
  res.busyPct = (100 * (m1.busy - m0.busy)) / Math.max(1, m1.total - m0.total);
  logins.sort((a, b) => a - b);
  res.loginP50 = percentile(logins, 50);
  res.loginP99 = percentile(logins, 99);
  return res;
}

const MB = 1024 * 1024;

async function measure(t: Target): Promise<PhaseResult[]> {
  // warm-up: every client downloads its INBOX once (JIT, credential cache, indexes, \Seen flags)
  const warm = await runPhase(t, 'download', 0, true);
  if (warm.errors.length) throw new Error(`${t.name} warm-up failed: ${warm.errors.slice(0, 3).join('; ')}`);
  const out: PhaseResult[] = [];
  for (const phase of ['download', 'login'] as const) {
    const r = await runPhase(t, phase, SECONDS);
    out.push(r);
    const cpu = `server CPU ${((r.serverCpuMs / r.elapsed) / 10).toFixed(0)} % of a core, machine ${r.busyPct.toFixed(0)} % busy`;
    if (phase === 'download') {
      console.log(
        `  ${t.name} download: ${(r.bytes / MB / r.elapsed).toFixed(1)} MB/s (${r.messages} messages, ${(r.bytes / MB).toFixed(0)} MB in ${r.elapsed.toFixed(1)} s), ` +
          `${(r.sessions / r.elapsed).toFixed(1)} sessions/s, ${(r.serverCpuMs / Math.max(1, r.bytes / MB)).toFixed(1)} ms server CPU per MB, ${cpu}`,
      );
    } else {
      console.log(
        `  ${t.name} login:    ${(r.sessions / r.elapsed).toFixed(0)} logins/s (${r.sessions} in ${r.elapsed.toFixed(1)} s), connect+login p50 ${r.loginP50.toFixed(1)} ms ` +
          `p99 ${r.loginP99.toFixed(1)} ms, ${(r.serverCpuMs / Math.max(1, r.sessions)).toFixed(2)} ms server CPU per session, ${cpu}`,
      );
    }
    for (const e of r.errors.slice(0, 5)) console.log(`    error: ${e}`);
  }
  return out;
}

// ---- Postern ------------------------------------------------------------------------------------

let dir = '';
let server: ChildProcess | null = null;

async function runPostern(): Promise<PhaseResult[]> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-bench-pop3-'));
  const fill = new Map<string, number>();
  for (let u = 1; u <= CLIENTS; u++) fill.set(`user${u}@bench.test`, MESSAGES);
  console.log(`Postern: filling ${CLIENTS} INBOXes × ${MESSAGES} messages of ~${SIZE_KB} KB (${dir}) …`);
  const fillMs = await preparePostern({ dir, users: CLIENTS, domain: 'bench.test', password: PASSWORD, fill, seed: SEED, message: bigMessage });
  console.log(`  filled in ${(fillMs / 1000).toFixed(1)} s`);
  const [imapPort, pop3Port] = [await freePort(), await freePort()];
  server = await startPosternServe({ dir, imapPort, pop3Port, extraToml: ['[imap]', 'processes = 0'] });
  const pid = server.pid!;
  console.log(`  postern serve pid ${pid}, POP3 on 127.0.0.1:${pop3Port}`);
  const r = await measure({ name: 'Postern', port: pop3Port, domain: 'bench.test', cpu: () => cpuMs(processTree(pid)) });
  const rss = Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/)?.[1] ?? 0);
  console.log(`  server peak RSS ${(rss / 1024).toFixed(0)} MB`);
  await stopChild(server);
  server = null;
  return r;
}

// ---- Dovecot (../shared/peers) ------------------------------------------------------------------

async function runDovecot(): Promise<PhaseResult[]> {
  return withDovecotPeer(async (master) => {
    const t0 = performance.now();
    for (let u = 1; u <= CLIENTS; u++) {
      const email = `user${u}@peer.test`;
      fillDovecotMaildir(email, MESSAGES, (i) => bigMessage(SEED, i, email));
    }
    console.log(`  filled in ${((performance.now() - t0) / 1000).toFixed(1)} s (dovecot master pid ${master})`);
    return measure({ name: 'Dovecot', port: 3110, domain: 'peer.test', cpu: () => cpuMs(processTree(master), true) });
  });
}

// ---- main ---------------------------------------------------------------------------------------

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    if (dir && !o.keep) fs.rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });
}

const figures = (r: PhaseResult[]) => {
  const d = r.find((x) => x.phase === 'download')!;
  const l = r.find((x) => x.phase === 'login')!;
  return { mbps: d.bytes / MB / d.elapsed, logins: l.sessions / l.elapsed, errors: d.errors.length + l.errors.length };
};

async function main(): Promise<void> {
  console.log(`POP3 bench: ${CLIENTS} clients, ${MESSAGES} messages of ~${SIZE_KB} KB each, ${SECONDS} s per phase; seed ${SEED}; ${os.cpus().length} cores`);
  const parts: string[] = [`clients=${CLIENTS}`, `messages=${MESSAGES}`, `size_kb=${SIZE_KB}`, `seconds=${SECONDS}`];
  let p: ReturnType<typeof figures> | null = null;
  let d: ReturnType<typeof figures> | null = null;
  try {
    if (!o['peer-only']) {
      p = figures(await runPostern());
      parts.push(`mb_per_s=${p.mbps.toFixed(1)}`, `logins_per_s=${p.logins.toFixed(0)}`, `errors=${p.errors}`);
    }
    if (PEER) {
      d = figures(await runDovecot());
      parts.push(`dovecot_mb_per_s=${d.mbps.toFixed(1)}`, `dovecot_logins_per_s=${d.logins.toFixed(0)}`, `dovecot_errors=${d.errors}`);
    }
  } finally {
    await stopChild(server);
    if (dir && !o.keep) fs.rmSync(dir, { recursive: true, force: true });
    else if (dir) console.log(`kept ${dir}`);
  }
  console.log('\nsummary');
  const line = (what: string, pv: number | undefined, dv: number | undefined, unit: string) => {
    const ratio = pv !== undefined && dv !== undefined ? pv / dv : NaN;
    if (!Number.isNaN(ratio)) parts.push(`${what}_ratio=${ratio.toFixed(2)}`);
    console.log(
      `  ${what.padEnd(9)} ${pv !== undefined ? `Postern ${pv.toFixed(1)} ${unit}` : ''}${dv !== undefined ? `  Dovecot ${dv.toFixed(1)} ${unit}` : ''}` +
        (Number.isNaN(ratio) ? '' : `  ratio ${ratio.toFixed(2)}× (target ≥ 1×: ${ratio >= 1 ? 'met' : 'NOT met'})`),
    );
  };
  line('download', p?.mbps, d?.mbps, 'MB/s');
  line('logins', p?.logins, d?.logins, 'logins/s');
  console.log(`RESULT ${parts.join(' ')}`);
  process.exitCode = p?.errors ? 1 : 0;
}

main().catch(async (err: unknown) => {
  console.error(err);
  await stopChild(server);
  if (dir && !o.keep) fs.rmSync(dir, { recursive: true, force: true });
  process.exit(1);
});
