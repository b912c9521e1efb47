/**
 * Shared by the IMAP benchmarks (bench/imap.ts, bench/imap-memory.ts): a lean raw IMAP client
 * (one command at a time, literals skipped by length, so the load generator stays cheap), the
 * seeded message corpus, and helpers to build and start a Postern for benchmarking.
 */
import { spawn, execSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { openStores } from '../src/store/open.ts';
import { passwordSecrets } from '../src/auth/secrets.ts';
import { Ingest } from '../src/core/ingest.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const MAIN = path.join(ROOT, 'src/cli/main.ts');
export const PEERS = path.resolve(ROOT, '../shared/peers');
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

export function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]! : NaN;
}

export const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);

const CLK_TCK = (() => {
  try {
    return Number(execSync('getconf CLK_TCK').toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU ms (user + system, all threads) of these processes; with `reaped`, also the CPU of their
 * children that have exited and been waited for (cutime + cstime: Dovecot's per-connection
 * imap and imap-login processes, reaped by the master).
 */
export function cpuMs(pids: number[], reaped = false): number {
  let t = 0;
  for (const pid of pids) {
    try {
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      t += ((Number(rest[11]) + Number(rest[12]) + (reaped ? Number(rest[13]) + Number(rest[14]) : 0)) * 1000) / CLK_TCK;
    } catch {
      /* gone */
    }
  }
  return t;
}

/** Busy and total jiffies of the whole machine (/proc/stat). */
export function machineCpu(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq] = f as [number, number, number, number, number, number, number];
  return { busy: user + nice + system + irq + softirq, total: user + nice + system + idle + iowait + irq + softirq };
}

// ---- PRNG and corpus ----------------------------------------------------------------------------

/** mulberry32: small, fast, seeded. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = (
  'meeting report budget quarter project invoice travel schedule review update lunch server network ' +
  'release backup contract customer support ticket deadline draft photo garden weekend holiday train ' +
  'coffee office printer security password account order shipping delivery payment receipt agenda ' +
  'minutes summary proposal design feature issue patch build test deploy monitor alert database'
).split(' ');

/** The word that SEARCH TEXT looks for in the large-mailbox test: in ~1 % of the messages' bodies. */
export const NEEDLE = 'zebrafish';
/** A word in no message: SEARCH TEXT must look at every message. */
export const NOWHERE = 'quixotically';

export interface CorpusMessage {
  data: Buffer;
  seen: boolean;
  /** Seconds since the epoch, used as the internal date. */
  date: number;
}

const pad = (n: number) => String(n).padStart(2, '0');
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
export function rfc5322Date(sec: number): string {
  const d = new Date(sec * 1000);
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
}
/** IMAP date-time (RFC 9051 §9 date-time) for APPEND. */
export function imapDate(sec: number): string {
  const d = new Date(sec * 1000);
  return `"${String(d.getUTCDate()).padStart(2, ' ')}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000"`;
}

/**
 * Message i of the corpus for `seed`: ~1–6 KB, text/plain (80 %) or multipart/alternative with an
 * HTML part (20 %), from one of 40 senders, a subject of 3–6 words; ~70 % \Seen; the NEEDLE word
 * in the body of ~1 %. Deterministic: the same (seed, i) always gives the same bytes.
 */
export function corpusMessage(seed: number, i: number, to: string): CorpusMessage {
  const r = prng(seed * 1_000_003 + i);
  const w = () => WORDS[Math.floor(r() * WORDS.length)]!;
  const sender = 1 + Math.floor(r() * 40);
  const subject = Array.from({ length: 3 + Math.floor(r() * 4) }, w).join(' ');
  const date = 1_790_000_000 + i * 600 + Math.floor(r() * 600);
  const lines: string[] = [];
  const target = 1000 + Math.floor(r() * 5000);
  let size = 0;
  while (size < target) {
    const l = Array.from({ length: 8 + Math.floor(r() * 6) }, w).join(' ');
    lines.push(l);
    size += l.length + 2;
  }
  if (r() < 0.01) lines.splice(Math.floor(r() * lines.length), 0, `see the ${NEEDLE} notes`);
  const text = lines.join('\r\n') + '\r\n';
  const head =
    `From: Sender ${sender} <sender${sender}@example.net>\r\n` +
    `To: <${to}>\r\n` +
    `Subject: ${subject}\r\n` +
    `Date: ${rfc5322Date(date)}\r\n` +
    `Message-ID: <bench.${seed}.${i}@example.net>\r\n` +
    'MIME-Version: 1.0\r\n';
  let msg: string;
  if (r() < 0.2) {
    const b = `b${seed}x${i}`;
    msg =
      head +
      `Content-Type: multipart/alternative; boundary="${b}"\r\n\r\n` +
      `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n${text}` +
      `--${b}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n<html><body><p>${lines.join('</p>\r\n<p>')}</p></body></html>\r\n` +
      `--${b}--\r\n`;
  } else {
    msg = head + 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n' + text;
  }
  return { data: Buffer.from(msg), seen: r() < 0.7, date };
}

// ---- raw IMAP client ----------------------------------------------------------------------------

export interface Reply {
  status: string;
  text: string;
  /** Untagged lines (only when asked for: collect). */
  lines: string[];
  /** Untagged "* n FETCH" responses seen. */
  fetches: number;
}

const EMPTY = Buffer.alloc(0);
const CRLF = Buffer.from('\r\n');
const FETCH_MARK = Buffer.from(' FETCH (');

interface Pending {
  tag: string;
  collect: boolean;
  lines: string[];
  fetches: number;
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
}

/**
 * One IMAP connection, one command at a time. Responses are parsed as bytes: lines are split on
 * CRLF, a line ending in {n} is followed by n literal bytes that are skipped, the tagged line
 * ends the command. Untagged lines are only turned into strings when the caller collects them.
 */
export class Imap {
  private buf: Buffer = EMPTY;
  private skip = 0;
  private n = 0;
  private pending: Pending | null = null;
  private greetWaiter: ((line: string) => void) | null = null;
  private greeting: string | null = null;
  closed = false;
  private closeError: Error | null = null;

  private constructor(private sock: net.Socket) {
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (e) => (this.closeError = e));
    sock.on('close', () => {
      this.closed = true;
      const p = this.pending;
      this.pending = null;
      p?.reject(this.closeError ?? new Error('connection closed'));
      if (this.greetWaiter) this.greetWaiter('');
    });
  }

  static async connect(port: number, opts: { host?: string; tls?: boolean } = {}): Promise<Imap> {
    const host = opts.host ?? '127.0.0.1';
    const sock = opts.tls ? tls.connect({ port, host, rejectUnauthorized: false }) : net.connect({ port, host });
    sock.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      sock.once(opts.tls ? 'secureConnect' : 'connect', () => resolve());
      sock.once('error', reject);
    });
    const c = new Imap(sock);
    const g = await c.greet();
    if (!g.startsWith('* OK')) throw new Error(`bad greeting: ${g.slice(0, 100)}`);
    return c;
  }

  private greet(): Promise<string> {
    if (this.greeting !== null) return Promise.resolve(this.greeting);
    return new Promise((r) => (this.greetWaiter = r));
  }

  private onData(d: Buffer): void {
    const b = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    let pos = 0;
    while (pos < b.length) {
      if (this.skip > 0) {
        const k = Math.min(this.skip, b.length - pos);
        pos += k;
        this.skip -= k;
        continue;
      }
      const i = b.indexOf(CRLF, pos);
      if (i < 0) break;
      if (i > pos && b[i - 1] === 0x7d) {
        // "{n}" at the end of the line: n literal bytes follow
        const open = b.lastIndexOf(0x7b, i - 1);
        if (open >= pos) {
          const num = Number(b.toString('latin1', open + 1, i - 1));
          if (Number.isInteger(num)) this.skip = num;
        }
      }
      this.onLine(b, pos, i);
      pos = i + 2;
    }
    this.buf = pos >= b.length ? EMPTY : b.subarray(pos);
  }

  private onLine(b: Buffer, start: number, end: number): void {
    if (this.greeting === null) {
      this.greeting = b.toString('latin1', start, end);
      this.greetWaiter?.(this.greeting);
      this.greetWaiter = null;
      return;
    }
    const p = this.pending;
    if (!p) return;
    const t = p.tag;
    // tagged?
    if (end - start > t.length && b[start + t.length] === 0x20 && b.toString('latin1', start, start + t.length) === t) {
      const rest = b.toString('latin1', start + t.length + 1, end);
      const sp = rest.indexOf(' ');
      this.pending = null;
      p.resolve({ status: sp < 0 ? rest : rest.slice(0, sp), text: sp < 0 ? '' : rest.slice(sp + 1), lines: p.lines, fetches: p.fetches });
      return;
    }
    if (b[start] === 0x2a) {
      const f = b.indexOf(FETCH_MARK, start);
      if (f >= 0 && f < end) p.fetches++;
      if (p.collect) p.lines.push(b.toString('latin1', start, end));
    }
  }

  /** Sends "tag text" (and, for APPEND, a LITERAL+ literal) and resolves with the tagged reply. */
  send(text: string, literal?: Buffer, collect = false): Promise<Reply> {
    if (this.closed) return Promise.reject(this.closeError ?? new Error('connection closed'));
    const tag = `a${++this.n}`;
    const pr = new Promise<Reply>((resolve, reject) => {
      this.pending = { tag, collect, lines: [], fetches: 0, resolve, reject };
    });
    if (literal) {
      this.sock.write(`${tag} ${text} {${literal.length}+}\r\n`);
      this.sock.write(literal);
      this.sock.write('\r\n');
    } else {
      this.sock.write(`${tag} ${text}\r\n`);
    }
    return pr;
  }

  /** Like send, but a status other than OK is an error. */
  async ok(text: string, literal?: Buffer, collect = false): Promise<Reply> {
    const r = await this.send(text, literal, collect);
    if (r.status !== 'OK') throw new Error(`${text.split(' ')[0]}: ${r.status} ${r.text.slice(0, 200)}`);
    return r;
  }

  destroy(): void {
    this.sock.destroy();
  }

  /** LOGOUT and wait for the server to close. */
  async logout(): Promise<Reply> {
    const r = await this.send('LOGOUT');
    this.sock.end();
    return r;
  }
}

export const quote = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

// ---- Postern set-up -----------------------------------------------------------------------------

export interface PosternSetup {
  dir: string;
  users: number;
  domain: string;
  password: string;
  /** user → number of messages to put in its INBOX. */
  fill: Map<string, number>;
  seed: number;
  /** Message i for a user (default: the corpus, corpusMessage). */
  message?: (seed: number, i: number, to: string) => CorpusMessage;
}

/**
 * Creates the domain and the users (argon2id + SCRAM, as `postern user add`) and fills their INBOXes with
 * the corpus through Ingest (the same write path as SMTP delivery), many in flight so that group
 * commit batches them. Returns the time the fill took.
 */
export async function preparePostern(s: PosternSetup, onProgress?: (done: number, total: number) => void): Promise<number> {
  const t0 = performance.now();
  const stores = await openStores(path.join(s.dir, 'data'), { inlineMaxSize: 64 * 1024 });
  await stores.data.addDomain(s.domain);
  // argon2id hash + SCRAM-SHA-256 secret, as `postern user add` stores them
  const { hash, scram } = await passwordSecrets(s.password);
  const ids = new Map<string, number>();
  for (let u = 1; u <= s.users; u++) {
    const email = `user${u}@${s.domain}`;
    ids.set(email, (await stores.data.addAccount(email, hash, scram)).id);
  }
  const ingest = new Ingest(stores.data, stores.blobs, stores.pubsub, pino({ level: 'silent' }));
  const total = [...s.fill.values()].reduce((a, b) => a + b, 0);
  let done = 0;
  for (const [email, count] of s.fill) {
    const accountId = ids.get(email)!;
    let next = 0;
    const worker = async () => {
      while (next < count) {
        const i = next++;
        const m = (s.message ?? corpusMessage)(s.seed, i, email);
        await ingest.ingestBuffer(m.data, { deliveries: [{ accountId, flags: m.seen ? ['\\Seen'] : [] }], queue: null, internalDate: m.date * 1000 });
        if (++done % 1000 === 0) onProgress?.(done, total);
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
  }
  await stores.close();
  return performance.now() - t0;
}

export interface ServeOptions {
  dir: string;
  imapPort: number;
  imapsPort?: number;
  /** POP3 (listen.pop3, plaintext + STLS) for bench/pop3.ts. */
  pop3Port?: number;
  extraToml?: string[];
}

/** Writes postern.toml and starts `postern serve` as a child process; resolves when IMAP answers. */
export async function startPosternServe(o: ServeOptions): Promise<ChildProcess> {
  const cfg = path.join(o.dir, 'postern.toml');
  fs.writeFileSync(
    cfg,
    [
      'hostname = "bench.test"',
      `data_dir = "${path.join(o.dir, 'data')}"`,
      '[listen]',
      `imap = "127.0.0.1:${o.imapPort}"`,
      ...(o.imapsPort ? [`imaps = "127.0.0.1:${o.imapsPort}"`] : []),
      ...(o.pop3Port ? [`pop3 = "127.0.0.1:${o.pop3Port}"`] : []),
      '[auth]',
      // LOGIN without TLS on loopback, as Dovecot allows on localhost (disable_plaintext_auth
      // exempts "secured" loopback connections); the credential cache is the default (60 s).
      'allow_plaintext_loopback = true',
      '[smtp]',
      // the connection guard applies to IMAP too: sockets still closing must not count against the clients
      'max_connections_per_ip = 100000',
      'max_connections = 100000',
      ...(o.extraToml ?? []),
      '',
    ].join('\n'),
  );
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const logFd = fs.openSync(path.join(o.dir, 'server.log'), 'a');
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', MAIN, 'serve', '--config', cfg], { cwd: ROOT, stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited (${child.exitCode ?? child.signalCode}) before listening:\n${tail(path.join(o.dir, 'server.log'))}`);
    }
    if (await canConnect(o.imapPort)) return child;
    if (Date.now() > deadline) throw new Error(`server not listening on 127.0.0.1:${o.imapPort} after 60 s`);
    await sleep(100);
  }
}

export async function stopChild(c: ChildProcess | null): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

export function tail(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Fills a Dovecot peer user's INBOX (../shared/peers, /tmp/peers/mail) with messages as maildir
 * files in cur/ (what Dovecot's LMTP delivery would leave there, without waiting for thousands of
 * fsynced deliveries): flags in the ":2,S" suffix, the internal date as the file's mtime, owned by
 * nobody:nogroup like the peer's mail. Dovecot indexes them on first use.
 */
export function fillDovecotMaildir(email: string, count: number, message: (i: number) => CorpusMessage): void {
  const [user, domain] = email.split('@') as [string, string];
  const home = path.join('/tmp/peers/mail', domain, user);
  for (const d of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(home, d), { recursive: true });
  for (let i = 0; i < count; i++) {
    const m = message(i);
    // S= and W= (physical and CRLF size, equal here: the files have CRLF line ends), as LMTP delivery writes them;
    // without W= Dovecot reads every message to size it for POP3 STAT/LIST and IMAP RFC822.SIZE.
    const f = path.join(home, 'cur', `${m.date}.M${i}P1.bench,S=${m.data.length},W=${m.data.length}:2,${m.seen ? 'S' : ''}`);
    fs.writeFileSync(f, m.data);
    fs.utimesSync(f, m.date, m.date);
    fs.chownSync(f, 65534, 65534);
  }
  for (const d of [path.join('/tmp/peers/mail', domain), home, ...['cur', 'new', 'tmp'].map((x) => path.join(home, x))]) fs.chownSync(d, 65534, 65534);
}

/**
 * Runs `fn` against the Postfix + Dovecot 2.3 peer of ../shared/peers (root; Dovecot installed):
 * starts it clean, passes Dovecot's master pid, stops it afterwards whatever happens.
 */
export async function withDovecotPeer<T>(fn: (master: number) => Promise<T>): Promise<T> {
  if (process.getuid?.() !== 0) throw new Error('--peer needs root (../shared/peers/start-peers.sh)');
  if (!fs.existsSync('/usr/sbin/dovecot')) {
    throw new Error('--peer needs Dovecot: DEBIAN_FRONTEND=noninteractive apt-get install -y dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix');
  }
  console.log('Dovecot: starting ../shared/peers …');
  execSync(path.join(PEERS, 'start-peers.sh'), { stdio: ['ignore', 'inherit', 'inherit'] });
  try {
    return await fn(Number(fs.readFileSync('/tmp/peers/dovecot/run/master.pid', 'utf8').trim()));
  } finally {
    execSync(path.join(PEERS, 'stop-peers.sh'), { stdio: ['ignore', 'inherit', 'inherit'] });
  }
}

/** The Dovecot master pid and all its descendants. */
export function processTree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const s = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      parent.set(Number(p), Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    for (const [c, pp] of parent) if (pp === p) todo.push(c);
  }
  return out;
}
