/**
 * IMAP idle-connection memory benchmark (not a test), issue #6: --conns (10,000) logged-in
 * connections, INBOX selected, in IDLE, over plain IMAP and over IMAPS; memory per connection of
 * a separately started `postern serve` process (target < 100 KiB).
 *
 * The connections are opened by ../shared/peers/idle_conns.py (LOGIN, SELECT INBOX, IDLE; users
 * user1..user--users round robin, each INBOX holding --messages messages), which reads RSS/PSS
 * of the server from /proc/PID/smaps_rollup before and after. The server is restarted between
 * the plain and the TLS run, so each starts from the same baseline.
 * --peer (root, Dovecot installed): the same with --peer-conns connections against the Dovecot
 * of ../shared/peers (one imap process per connection). See bench/README.md.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { helpAndNumbers } from './options.ts';
import { Imap, PEERS, corpusMessage, freePort, imapDate, preparePostern, quote, startPosternServe, stopChild } from './imap-lib.ts';

const HELP = `usage: node --import tsx bench/imap-memory.ts [options]
  --conns N         idle connections per run (default 10000)
  --mode M          plain, tls or both (default plain; each 10,000-connection run takes 2–3 min)
  --users N         users the connections log in as, round robin (default 10)
  --messages N      messages in each user's INBOX (default 500)
  --peer            also Dovecot from ../shared/peers (root; plain only: the peer has ssl = no)
  --peer-conns N    connections for the Dovecot run (default 1000; one process each)
  --keep            keep Postern's temp dir
  --help`;

const { values: o } = parseArgs({
  options: {
    conns: { type: 'string', default: '10000' },
    mode: { type: 'string', default: 'plain' },
    users: { type: 'string', default: '10' },
    messages: { type: 'string', default: '500' },
    peer: { type: 'boolean', default: false },
    'peer-conns': { type: 'string', default: '1000' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
const { int } = helpAndNumbers(HELP, o.help);
const CONNS = int('conns', o.conns, 1);
const USERS = int('users', o.users, 1);
const MESSAGES = int('messages', o.messages, 0);
const PEER_CONNS = int('peer-conns', o['peer-conns'], 1);
if (!['plain', 'tls', 'both'].includes(o.mode!)) {
  console.error(`--mode must be plain, tls or both\n\n${HELP}`);
  process.exit(1);
}
const MODES = o.mode === 'both' ? ['plain', 'tls'] : [o.mode!];
const IDLE = path.join(PEERS, 'idle_conns.py');

interface IdleResult {
  idle_connections: number;
  open_seconds: number;
  rss_kb_per_conn: number;
  pss_kb_per_conn: number;
  sys_used_kb_per_conn: number;
  before: { rss_kb: number };
  after: { rss_kb: number };
  errors: string[];
}

/** Runs idle_conns.py and returns its JSON; its output goes to ours. */
function idleConns(port: number, n: number, pidArgs: string[], user: string, tls: boolean, json: string): Promise<IdleResult> {
  return new Promise((resolve, reject) => {
    const args = [IDLE, '127.0.0.1', String(port), user, 'pass', String(n), ...pidArgs, '--users', String(USERS), '--settle', '5', '--json', json, ...(tls ? ['--tls'] : [])];
    const p = spawn('python3', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    p.stdout!.on('data', (d: Buffer) => {
      for (const l of d.toString().split('\n')) if (l && !/^\s+\d+ connections idle/.test(l)) process.stdout.write(`    ${l}\n`);
    });
    p.on('exit', () => {
      try {
        resolve(JSON.parse(fs.readFileSync(json, 'utf8')) as IdleResult);
      } catch (e) {
        reject(new Error(`idle_conns.py wrote no result: ${(e as Error).message}`));
      }
    });
  });
}

let dir = '';
let server: ChildProcess | null = null;

async function main(): Promise<void> {
  const soft = Number(execFileSync('bash', ['-c', 'ulimit -n']).toString().trim());
  if (soft < CONNS + 200) {
    console.error(`ulimit -n is ${soft}: the server needs more than ${CONNS + 200} descriptors; run: ulimit -n ${CONNS + 1024} (as root: raise the hard limit too)`);
    process.exit(1);
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-bench-imapmem-'));
  const fill = new Map<string, number>();
  for (let u = 1; u <= USERS; u++) fill.set(`user${u}@bench.test`, MESSAGES);
  console.log(`Postern: ${USERS} users × ${MESSAGES} messages (${dir}); ${CONNS} idle connections per run (${MODES.join(', ')})`);
  await preparePostern({ dir, users: USERS, domain: 'bench.test', password: 'pass', fill, seed: 1 });
  const results: string[] = [`conns=${CONNS}`, `messages=${MESSAGES}`];
  let met = true;
  for (const mode of MODES) {
    const imapPort = await freePort();
    const imapsPort = await freePort();
    server = await startPosternServe({ dir, imapPort, imapsPort });
    const pid = server.pid!;
    console.log(`  ${mode}: postern serve pid ${pid}`);
    const r = await idleConns(mode === 'tls' ? imapsPort : imapPort, CONNS, ['--pid', String(pid)], 'user%d@bench.test', mode === 'tls', path.join(dir, `${mode}.json`));
    const peak = (fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/) ?? [])[1];
    await stopChild(server);
    server = null;
    const ok = r.idle_connections === CONNS && r.rss_kb_per_conn < 100;
    if (!ok) met = false;
    console.log(
      `  ${mode}: ${r.idle_connections}/${CONNS} idle in ${r.open_seconds} s; RSS ${(r.before.rss_kb / 1024).toFixed(0)} → ${(r.after.rss_kb / 1024).toFixed(0)} MiB ` +
        `= ${r.rss_kb_per_conn} KiB/connection (PSS ${r.pss_kb_per_conn}), peak RSS ${(Number(peak) / 1024).toFixed(0)} MiB; ` +
        `machine incl. kernel ${r.sys_used_kb_per_conn} KiB/connection; target < 100 KiB: ${r.rss_kb_per_conn < 100 ? 'met' : 'NOT met'}`,
    );
    results.push(`${mode}_kib_per_conn=${r.rss_kb_per_conn}`, `${mode}_pss_kib_per_conn=${r.pss_kb_per_conn}`, `${mode}_idle=${r.idle_connections}`, `${mode}_sys_kib_per_conn=${r.sys_used_kb_per_conn}`);
  }

  if (o.peer) {
    if (process.getuid?.() !== 0 || !fs.existsSync('/usr/sbin/dovecot')) throw new Error('--peer needs root and Dovecot (apt-get install dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd)');
    console.log('Dovecot: starting ../shared/peers, filling the INBOXes by APPEND …');
    execFileSync(path.join(PEERS, 'start-peers.sh'), { stdio: ['ignore', 'inherit', 'inherit'] });
    try {
      await Promise.all(
        Array.from({ length: USERS }, async (_, k) => {
          const email = `user${k + 1}@peer.test`;
          const c = await Imap.connect(3143);
          await c.ok(`LOGIN ${quote(email)} "pass"`);
          for (let i = 0; i < MESSAGES; i++) {
            const m = corpusMessage(1, i, email);
            await c.ok(`APPEND INBOX (${m.seen ? '\\Seen' : ''}) ${imapDate(m.date)}`, m.data);
          }
          await c.logout();
        }),
      );
      const r = await idleConns(3143, PEER_CONNS, ['--pidfile', '/tmp/peers/dovecot/run/master.pid'], 'user%d@peer.test', false, path.join(dir, 'dovecot.json'));
      console.log(`  Dovecot plain: ${r.idle_connections}/${PEER_CONNS} idle; RSS ${r.rss_kb_per_conn} KiB/connection, PSS ${r.pss_kb_per_conn} KiB/connection`);
      results.push(`dovecot_kib_per_conn=${r.rss_kb_per_conn}`, `dovecot_pss_kib_per_conn=${r.pss_kb_per_conn}`, `dovecot_idle=${r.idle_connections}`);
    } finally {
      execFileSync(path.join(PEERS, 'stop-peers.sh'), { stdio: ['ignore', 'inherit', 'inherit'] });
    }
  }
  console.log(`RESULT ${results.join(' ')}`);
  process.exitCode = met ? 0 : 1;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    if (dir && !o.keep) fs.rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(async () => {
    await stopChild(server);
    if (dir && !o.keep) fs.rmSync(dir, { recursive: true, force: true });
    else if (dir) console.log(`kept ${dir}`);
  });
