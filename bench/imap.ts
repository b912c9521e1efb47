/**
 * IMAP benchmark (not a test), issue #6:
 *
 *  1. Throughput: --clients clients (10) for --seconds (20) per mix, each on its own user whose
 *     INBOX holds --messages (500) messages of a seeded corpus (~1–6 KB, 20 % multipart), running
 *     a mixed workload — SELECT, FETCH of a page of headers, FETCH of a whole message, STORE
 *     flags, SEARCH, APPEND + STORE \Deleted + EXPUNGE (the INBOX stays at 500) — in two mixes:
 *       login-heavy:  connect, LOGIN, SELECT, one workload step, LOGOUT (a phone polling)
 *       logged-in:    one LOGIN, then SELECT and every workload step in turn, forever
 *     and reports tagged commands per second (+ per-command latency, server CPU per command).
 *  2. Large mailbox: one user with --big (10,000) messages: SELECT, FETCH 1:* (BODY.PEEK[HEADER]),
 *     FETCH 1:* of the header fields a client lists, SEARCH TEXT for a word in ~1 % of the
 *     messages and for a word in none, --big-runs (3) times each: latency (target < 1 s).
 *
 * Postern runs as `postern serve` in a child process (its INBOXes filled beforehand through the
 * same Ingest write path as SMTP delivery); the clients run in this process.
 * --peer (root, Dovecot installed): the same against the Dovecot 2.3 of ../shared/peers (filled
 * with the same messages as maildir files), after Postern, never both at once; prints the ratios.
 * See bench/README.md.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { helpAndNumbers } from './options.ts';
import {
  Imap,
  NEEDLE,
  NOWHERE,
  corpusMessage,
  cpuMs,
  fillDovecotMaildir,
  withDovecotPeer,
  freePort,
  imapDate,
  machineCpu,
  median,
  percentile,
  preparePostern,
  processTree,
  prng,
  quote,
  sleep,
  startPosternServe,
  stopChild,
} from './imap-lib.ts';

const HELP = `usage: npm run bench:imap -- [options]
  --clients N       concurrent clients, each on its own user (default 10)
  --seconds N       duration of each mix (default 20)
  --messages N      messages in each client's INBOX (default 500)
  --mix M           login, session or both (default both)
  --big N           messages in the large mailbox for the FETCH/SEARCH latency test (default
                    10000; 0 skips it)
  --big-runs N      repetitions of each large-mailbox command (default 3)
  --seed N          corpus and workload PRNG seed (default 1)
  --peer            then the same against Dovecot from ../shared/peers (root; Dovecot installed);
                    prints the ratio Postern / Dovecot
  --peer-only       only the Dovecot side (with --peer semantics)
  --steps S         the logged-in mix runs only these steps, comma-separated, of headers, body,
                    store, search, append (default all; 'none' leaves SELECT alone): for the
                    server CPU of one kind of command
  --processes P     Postern's [imap] processes: N worker processes (default 0: the sessions run
                    in the main process) or auto (one per core)
  --keep            keep Postern's temp dir (config, data, server.log)
  --help
BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" passes node options to Postern.`;

const { values: o } = parseArgs({
  options: {
    clients: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '20' },
    messages: { type: 'string', default: '500' },
    mix: { type: 'string', default: 'both' },
    big: { type: 'string', default: '10000' },
    'big-runs': { type: 'string', default: '3' },
    seed: { type: 'string', default: '1' },
    peer: { type: 'boolean', default: false },
    'peer-only': { type: 'boolean', default: false },
    processes: { type: 'string', default: '0' },
    steps: { type: 'string', default: 'headers,body,store,search,append' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
const { int, num } = helpAndNumbers(HELP, o.help);
const CLIENTS = int('clients', o.clients, 1);
const SECONDS = num('seconds', o.seconds, 1);
const MESSAGES = int('messages', o.messages, 25);
const BIG = int('big', o.big, 0);
const BIG_RUNS = int('big-runs', o['big-runs'], 1);
const SEED = int('seed', o.seed, 0);
const PEER = o.peer || o['peer-only'];
const WARMUP = Math.min(3, SECONDS / 5);
if (!['login', 'session', 'both'].includes(o.mix!)) {
  console.error(`--mix must be login, session or both\n\n${HELP}`);
  process.exit(1);
}
const STEP_NAMES = ['headers', 'body', 'store', 'search', 'append'] as const;
const STEPS = o.steps === 'none' ? [] : o.steps!.split(',');
for (const s of STEPS) {
  if (!(STEP_NAMES as readonly string[]).includes(s)) {
    console.error(`--steps: unknown step "${s}" (use ${STEP_NAMES.join(', ')} or none)\n\n${HELP}`);
    process.exit(1);
  }
}
const MIXES: Mix[] = o.mix === 'both' ? ['login', 'session'] : [o.mix as Mix];
const USERS = Math.max(CLIENTS + (BIG ? 1 : 0), 1);
if (PEER && USERS > 50) {
  console.error('--peer: the peer has 50 users; use at most 49 clients with --big, 50 without');
  process.exit(1);
}
const BIG_USER = USERS; // the last user holds the large mailbox
const PASSWORD = 'pass';

type Mix = 'login' | 'session';

interface Target {
  name: string;
  port: number;
  domain: string;
  /** Processes whose CPU counts as the server's. */
  cpu: () => number;
}

// ---- the workload -------------------------------------------------------------------------------

interface Stats {
  commands: number;
  connections: number;
  errors: string[];
  lat: Map<string, number[]>;
}

const HEADER_PAGE = 20;
const LIST_ITEMS = '(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])';

/** One workload step: a few commands a client sends for one user action. */
type Step = (c: Imap, cmd: (name: string, text: string, literal?: Buffer) => Promise<string>) => Promise<void>;

function steps(r: () => number, email: string, clientNo: number): Step[] {
  let appended = 0;
  const pick = () => 1 + Math.floor(r() * MESSAGES);
  const searches = [
    () => 'SEARCH UNSEEN',
    () => `SEARCH FROM ${quote(`sender${1 + Math.floor(r() * 40)}`)}`,
    () => `SEARCH SUBJECT ${quote(['meeting', 'invoice', 'budget', 'release', 'coffee'][Math.floor(r() * 5)]!)}`,
  ];
  let s = 0;
  const all: Step[] = [
    // a page of the message list
    async (_c, cmd) => {
      const start = 1 + Math.floor(r() * (MESSAGES - HEADER_PAGE));
      await cmd('FETCH headers', `FETCH ${start}:${start + HEADER_PAGE - 1} ${LIST_ITEMS}`);
    },
    // open one message
    async (_c, cmd) => {
      await cmd('FETCH body', `FETCH ${pick()} (UID BODY.PEEK[])`);
    },
    // mark read / unread
    async (_c, cmd) => {
      await cmd('STORE', `STORE ${pick()} ${r() < 0.5 ? '+' : '-'}FLAGS (\\Seen)`);
    },
    async (_c, cmd) => {
      await cmd('SEARCH', searches[s++ % searches.length]!());
    },
    // save a draft / a copy, then delete it again: the INBOX stays at MESSAGES
    async (_c, cmd) => {
      const m = corpusMessage(SEED + 7, clientNo * 1_000_000 + appended++, email);
      const t = await cmd('APPEND', `APPEND INBOX (\\Seen) ${imapDate(m.date)}`, m.data);
      const uid = /APPENDUID \d+ (\d+)/.exec(t)?.[1];
      if (!uid) throw new Error(`APPEND: no APPENDUID in "${t}"`);
      await cmd('STORE', `UID STORE ${uid} +FLAGS.SILENT (\\Deleted)`);
      await cmd('EXPUNGE', 'EXPUNGE');
    },
  ];
  return all.filter((_, i) => STEPS.includes(STEP_NAMES[i]!));
}

async function runMix(t: Target, mix: Mix, seconds: number): Promise<{ stats: Stats; elapsed: number; serverCpuMs: number; genCpuMs: number; busyPct: number }> {
  const stats: Stats = { commands: 0, connections: 0, errors: [], lat: new Map() };
  const end = performance.now() + seconds * 1000;
  const record = (name: string, ms: number) => {
    let a = stats.lat.get(name);
    if (!a) stats.lat.set(name, (a = []));
    a.push(ms);
    stats.commands++;
  };
  const client = async (k: number) => {
    const email = `user${k + 1}@${t.domain}`;
    const r = prng(SEED * 7919 + k);
    const work = steps(r, email, k);
    let next = Math.floor(r() * work.length);
    let c: Imap | null = null;
    const cmd = async (name: string, text: string, literal?: Buffer) => {
      const t0 = performance.now();
      const rep = await c!.ok(text, literal);
      record(name, performance.now() - t0);
      return rep.text;
    };
    const login = async () => {
      c = await Imap.connect(t.port);
      stats.connections++;
      await cmd('LOGIN', `LOGIN ${quote(email)} ${quote(PASSWORD)}`);
    };
    let failures = 0;
    while (performance.now() < end) {
      try {
        if (mix === 'login') {
          await login();
          await cmd('SELECT', 'SELECT INBOX');
          if (work.length) await work[next++ % work.length]!(c!, cmd);
          const t0 = performance.now();
          await c!.logout();
          record('LOGOUT', performance.now() - t0);
          c = null;
        } else {
          if (!c) await login();
          await cmd('SELECT', 'SELECT INBOX');
          for (const w of work) {
            if (performance.now() >= end) break;
            await w(c!, cmd);
          }
        }
        failures = 0;
      } catch (err) {
        stats.errors.push(`client ${k}: ${(err as Error).message}`);
        (c as Imap | null)?.destroy();
        c = null;
        if (++failures >= 5) break;
      }
    }
    if (c) await (c as Imap).logout().catch(() => undefined);
  };
  const cpu0 = t.cpu();
  const m0 = machineCpu();
  const g0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, (_, k) => client(k)));
  const elapsed = (performance.now() - t0) / 1000;
  const g = process.cpuUsage(g0);
  const m1 = machineCpu();
  return {
    stats,
    elapsed,
    serverCpuMs: t.cpu() - cpu0,
    genCpuMs: (g.user + g.system) / 1000,
    busyPct: (100 * (m1.busy - m0.busy)) / Math.max(1, m1.total - m0.total),
  };
}

interface MixResult {
  mix: Mix;
  cmdsPerS: number;
  connsPerS: number;
  p50: number;
  p99: number;
  cpuMsPerCmd: number;
  errors: number;
}

async function throughput(t: Target): Promise<MixResult[]> {
  const out: MixResult[] = [];
  for (const mix of MIXES) {
    // warm-up, not measured: JIT, the credential cache, Dovecot's index files
    await runMix(t, mix, WARMUP);
    const { stats, elapsed, serverCpuMs, genCpuMs, busyPct } = await runMix(t, mix, SECONDS);
    const all = [...stats.lat.values()].flat().sort((a, b) => a - b);
    const res: MixResult = {
      mix,
      cmdsPerS: stats.commands / elapsed,
      connsPerS: stats.connections / elapsed,
      p50: percentile(all, 50),
      p99: percentile(all, 99),
      cpuMsPerCmd: serverCpuMs / Math.max(1, stats.commands),
      errors: stats.errors.length,
    };
    out.push(res);
    console.log(
      `  ${t.name} ${mix === 'login' ? 'login-heavy' : 'logged-in  '}: ${res.cmdsPerS.toFixed(0)} commands/s (${stats.commands} in ${elapsed.toFixed(1)} s, ` +
        `${res.connsPerS.toFixed(0)} logins/s), latency p50 ${res.p50.toFixed(2)} ms p99 ${res.p99.toFixed(2)} ms, ` +
        `server CPU ${res.cpuMsPerCmd.toFixed(3)} ms/command (${((serverCpuMs / elapsed) / 10).toFixed(0)} % of a core), ` +
        `load generator ${((genCpuMs / elapsed) / 10).toFixed(0)} % of a core, machine ${busyPct.toFixed(0)} % busy`,
    );
    const names = [...stats.lat.keys()].sort();
    console.log(
      '    ' +
        names
          .map((n) => {
            const a = stats.lat.get(n)!.sort((x, y) => x - y);
            return `${n} ${a.length}× p50 ${percentile(a, 50).toFixed(2)}/p99 ${percentile(a, 99).toFixed(2)} ms`;
          })
          .join('; '),
    );
    for (const e of stats.errors.slice(0, 5)) console.log(`    error: ${e}`);
  }
  return out;
}

// ---- large mailbox ------------------------------------------------------------------------------

interface BigResult {
  name: string;
  runs: number[];
  count: number;
}

async function bigMailbox(t: Target): Promise<BigResult[]> {
  const email = `user${BIG_USER}@${t.domain}`;
  const c = await Imap.connect(t.port);
  await c.ok(`LOGIN ${quote(email)} ${quote(PASSWORD)}`);
  const out: BigResult[] = [];
  const time = async (name: string, text: string, count: (r: Awaited<ReturnType<Imap['ok']>>) => number) => {
    const res: BigResult = { name, runs: [], count: 0 };
    for (let i = 0; i < BIG_RUNS; i++) {
      const t0 = performance.now();
      const r = await c.ok(text, undefined, text.includes('SEARCH') || text.startsWith('SELECT'));
      res.runs.push(performance.now() - t0);
      res.count = count(r);
    }
    out.push(res);
    console.log(`  ${t.name} ${name.padEnd(34)} ${res.runs.map((x) => `${x.toFixed(0)} ms`).join(', ')}  (${res.count})`);
  };
  const exists = (r: { lines: string[] }) => Number(/^\* (\d+) EXISTS/.exec(r.lines.find((l) => / EXISTS$/.test(l)) ?? '')?.[1] ?? NaN);
  const hits = (r: { lines: string[] }) => (r.lines.find((l) => l.startsWith('* SEARCH')) ?? '* SEARCH').split(' ').length - 2;
  await time('SELECT INBOX', 'SELECT INBOX', exists);
  await time('FETCH 1:* (BODY.PEEK[HEADER])', 'FETCH 1:* (UID BODY.PEEK[HEADER])', (r) => r.fetches);
  await time('FETCH 1:* (list header fields)', `FETCH 1:* ${LIST_ITEMS}`, (r) => r.fetches);
  await time(`SEARCH TEXT "${NEEDLE}" (~1 % hit)`, `SEARCH TEXT ${NEEDLE}`, hits);
  await time(`SEARCH TEXT "${NOWHERE}" (no hit)`, `SEARCH TEXT ${NOWHERE}`, hits);
  await c.logout().catch(() => undefined);
  return out;
}

// ---- Postern ------------------------------------------------------------------------------------

let dir = '';
let server: ChildProcess | null = null;

async function runPostern(): Promise<{ mixes: MixResult[]; big: BigResult[] }> {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-bench-imap-'));
  const fill = new Map<string, number>();
  for (let u = 1; u <= CLIENTS; u++) fill.set(`user${u}@bench.test`, MESSAGES);
  if (BIG) fill.set(`user${BIG_USER}@bench.test`, BIG);
  const total = [...fill.values()].reduce((a, b) => a + b, 0);
  console.log(`Postern: filling ${CLIENTS} INBOXes × ${MESSAGES}${BIG ? ` + 1 × ${BIG}` : ''} messages (${dir}) …`);
  const fillMs = await preparePostern({ dir, users: USERS, domain: 'bench.test', password: PASSWORD, fill, seed: SEED });
  console.log(`  filled ${total} messages in ${(fillMs / 1000).toFixed(1)} s`);
  const port = await freePort();
  server = await startPosternServe({ dir, imapPort: port, extraToml: ['[imap]', `processes = ${o.processes === 'auto' ? '"auto"' : Number(o.processes)}`] });
  const pid = server.pid!;
  console.log(`  postern serve pid ${pid} on 127.0.0.1:${port}`);
  // The whole tree: with --processes, IMAP worker processes serve the sessions.
  const t: Target = { name: 'Postern', port, domain: 'bench.test', cpu: () => cpuMs(processTree(pid)) };
  const mixes = await throughput(t);
  const big = BIG ? await bigMailbox(t) : [];
  const rss = processTree(pid).map((p) => Number(fs.readFileSync(`/proc/${p}/status`, 'utf8').match(/VmHWM:\s+(\d+)/)?.[1] ?? 0));
  console.log(`  server peak RSS ${rss.map((k) => (k / 1024).toFixed(0)).join(' + ')} MB (main process + IMAP workers)`);
  await stopChild(server);
  server = null;
  return { mixes, big };
}

// ---- Dovecot (../shared/peers) ------------------------------------------------------------------

/** A peer user's INBOX filled with the corpus (imap-lib.ts fillDovecotMaildir). */
function fillDovecot(email: string, count: number): void {
  fillDovecotMaildir(email, count, (i) => corpusMessage(SEED, i, email));
}

async function runDovecot(): Promise<{ mixes: MixResult[]; big: BigResult[] }> {
  return withDovecotPeer(async (master) => {
    const port = 3143;
    const t0 = performance.now();
    console.log(`  filling maildirs: ${CLIENTS} INBOXes × ${MESSAGES}${BIG ? ` + 1 × ${BIG}` : ''} messages …`);
    for (let u = 1; u <= CLIENTS; u++) fillDovecot(`user${u}@peer.test`, MESSAGES);
    if (BIG) fillDovecot(`user${BIG_USER}@peer.test`, BIG);
    console.log(`  filled in ${((performance.now() - t0) / 1000).toFixed(1)} s (dovecot master pid ${master})`);
    const t: Target = { name: 'Dovecot', port, domain: 'peer.test', cpu: () => cpuMs(processTree(master), true) };
    const mixes = await throughput(t);
    const big = BIG ? await bigMailbox(t) : [];
    return { mixes, big };
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

const kv = (prefix: string, r: { mixes: MixResult[]; big: BigResult[] }) => {
  const parts: string[] = [];
  for (const m of r.mixes) parts.push(`${prefix}${m.mix}_cmds_per_s=${m.cmdsPerS.toFixed(0)}`, `${prefix}${m.mix}_cpu_ms_per_cmd=${m.cpuMsPerCmd.toFixed(3)}`, `${prefix}${m.mix}_errors=${m.errors}`);
  const slug = (n: string) => n.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '');
  for (const b of r.big) parts.push(`${prefix}big_${slug(b.name).slice(0, 30)}_ms=${b.runs.map((x) => x.toFixed(0)).join(',')}`);
  return parts;
};

async function main(): Promise<void> {
  console.log(`IMAP bench: ${CLIENTS} clients × ${SECONDS} s per mix (${MIXES.join(', ')}), INBOX of ${MESSAGES} messages each; large mailbox ${BIG || 'skipped'}; seed ${SEED}`);
  let failed = false;
  const parts: string[] = [`clients=${CLIENTS}`, `seconds=${SECONDS}`, `messages=${MESSAGES}`, `big=${BIG}`];
  let p: { mixes: MixResult[]; big: BigResult[] } | null = null;
  let d: { mixes: MixResult[]; big: BigResult[] } | null = null;
  try {
    if (!o['peer-only']) {
      p = await runPostern();
      parts.push(...kv('', p));
      if (p.mixes.some((m) => m.errors)) failed = true;
    }
    if (PEER) {
      d = await runDovecot();
      parts.push(...kv('dovecot_', d));
    }
  } finally {
    await stopChild(server);
    if (dir && !o.keep) fs.rmSync(dir, { recursive: true, force: true });
    else if (dir) console.log(`kept ${dir}`);
  }
  console.log('\nsummary');
  for (const mix of MIXES) {
    const pm = p?.mixes.find((m) => m.mix === mix);
    const dm = d?.mixes.find((m) => m.mix === mix);
    const label = mix === 'login' ? 'login-heavy' : 'logged-in';
    const ratio = pm && dm ? pm.cmdsPerS / dm.cmdsPerS : NaN;
    if (pm && dm) parts.push(`${mix}_ratio=${ratio.toFixed(2)}`);
    console.log(
      `  ${label.padEnd(12)} ${pm ? `Postern ${pm.cmdsPerS.toFixed(0)} cmds/s` : ''}${dm ? `  Dovecot ${dm.cmdsPerS.toFixed(0)} cmds/s` : ''}` +
        (pm && dm ? `  ratio ${ratio.toFixed(2)}× (target ≥ 1.5×: ${ratio >= 1.5 ? 'met' : 'NOT met'})` : ''),
    );
  }
  for (const b of p?.big ?? []) {
    const worst = Math.max(...b.runs);
    const db = d?.big.find((x) => x.name === b.name);
    console.log(
      `  ${b.name.padEnd(34)} Postern median ${median(b.runs).toFixed(0)} ms, worst ${worst.toFixed(0)} ms (target < 1000 ms: ${worst < 1000 ? 'met' : 'NOT met'})` +
        (db ? `; Dovecot median ${median(db.runs).toFixed(0)} ms, first ${db.runs[0]!.toFixed(0)} ms` : ''),
    );
  }
  console.log(`RESULT ${parts.join(' ')}`);
  process.exitCode = failed ? 1 : 0;
}

main().catch(async (err: unknown) => {
  console.error(err);
  await stopChild(server);
  process.exit(1);
});
