import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { rspamdFilter, parseRspamdResult } from '../../src/policy/content/rspamd.ts';
import type { ContentInput } from '../../src/policy/content/types.ts';
import { freePort, startDaemon, stopDaemon } from '../helpers/daemon.ts';

/**
 * The Rspamd client (issue #9) against Debian's real Rspamd, started once for this file with
 * Debian's rules and modules (/etc/rspamd/common.conf) but a config of the test's own: one normal
 * worker on a free loopback port, no controller, no proxy, no Redis (Bayes, ratelimit … are then
 * off by themselves), DNS pointed at a closed loopback port so that lookups fail at once (the
 * tests run offline), a short public suffix list (it starts in seconds, not 20 s). The failure cases use small servers of the test: one that never answers,
 * one that answers over 1 MiB.
 */

const RSPAMD = '/usr/bin/rspamd';
const missing = !process.env.CI && !fs.existsSync(RSPAMD) ? 'rspamd is not installed (apt-get install rspamd); CI installs it' : false;
if (missing) console.log(`# skipping the Rspamd tests: ${missing}`);

const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

function mail(body: string, opts: { subject?: string; to?: string } = {}): Buffer {
  return Buffer.from(
    [
      'From: Bob Example <bob@example.net>',
      `To: ${opts.to ?? 'alice@example.org'}`,
      `Subject: ${opts.subject ?? 'Lunch'}`,
      'Date: Wed, 02 Dec 2026 10:00:00 +0000',
      `Message-ID: <${Math.random().toString(36).slice(2)}@example.net>`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      body,
      '',
    ].join('\r\n'),
  );
}

function input(message: Buffer, over: Partial<ContentInput> = {}): ContentInput {
  // A loopback client: Rspamd skips the checks that need DNS for it, so the ham score is stable offline.
  return { message, ip: '127.0.0.1', helo: 'mx.example.net', from: 'bob@example.net', recipients: ['alice@example.org'], auth: null, dnsblHits: [], ...over };
}

const HAM = mail('Hi Alice,\r\n\r\nshall we have lunch tomorrow at noon, at the usual place?\r\nI can book a table for two.\r\n\r\nBob');

async function ping(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) });
    return (await res.text()).trim() === 'pong';
  } catch {
    return false;
  }
}

let dir = '';
let url = '';
let proc: ChildProcess | null = null;
let output = () => '';

before(async () => {
  if (missing) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-rspamd-'));
  for (const d of ['local/override.d', 'db', 'run']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  // The fuzzy module would resolve rspamd.com's fuzzy servers with the system resolver at start.
  fs.writeFileSync(path.join(dir, 'local/override.d/fuzzy_check.conf'), 'enabled = false;\n');
  fs.chmodSync(dir, 0o755);
  fs.chmodSync(path.join(dir, 'db'), 0o777); // the workers run as nobody: symbols cache, hyperscan cache
  fs.chmodSync(path.join(dir, 'run'), 0o777);
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const conf = path.join(dir, 'rspamd.conf');
  // Rspamd compiles its list of 9,600 public suffixes at start (10-20 s on this machine's two
  // cores); the test messages need only these.
  fs.writeFileSync(path.join(dir, 'tld.dat'), 'com\nnet\norg\nexample\ntest\n');
  fs.writeFileSync(path.join(dir, 'options-override.inc'), `url_tld = "${path.join(dir, 'tld.dat')}";\n`);
  fs.writeFileSync(
    conf,
    `# Postern's test Rspamd: Debian's rules, one normal worker, offline.
.include "$CONFDIR/common.conf"
options {
  pidfile = "$RUNDIR/rspamd.pid";
  .include "$CONFDIR/options.inc"
  dns { nameserver = ["127.0.0.1:9"]; timeout = 0.1s; retransmits = 1; }
  .include(priority=10) "${path.join(dir, 'options-override.inc')}"
}
logging { type = "console"; level = "notice"; }
worker "normal" {
  bind_socket = "127.0.0.1:${port}";
  .include "$CONFDIR/worker-normal.inc"
  count = 1;
}
`,
  );
  const args = ['-f', '-c', conf, `--var=LOCAL_CONFDIR=${path.join(dir, 'local')}`, `--var=DBDIR=${path.join(dir, 'db')}`, `--var=RUNDIR=${path.join(dir, 'run')}`, `--var=LOGDIR=${dir}`];
  // Rspamd refuses to run its workers as root; CI runs the tests as root.
  if (process.getuid?.() === 0) args.push('-u', 'nobody', '-g', 'nogroup');
  const started = await startDaemon('rspamd', RSPAMD, args, () => ping(url));
  proc = started.child;
  output = started.output;
});

after(async () => {
  await stopDaemon(proc, 10_000);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('GTUBE: a GTUBE hit and a score at Rspamd’s reject level', { skip: missing }, async () => {
  const r = await rspamdFilter({ url, timeoutMs: 10_000 }).score(input(mail(`This is the GTUBE:\r\n\r\n${GTUBE}\r\n`, { subject: 'Test spam mail (GTUBE)' })));
  assert.equal(r.filter, 'rspamd');
  assert.ok(r.hits.some((h) => h.rule === 'GTUBE'), JSON.stringify(r.hits));
  // Rspamd answers GTUBE with its reject action and the score of that action (Debian: 15).
  assert.ok(r.score >= 15, `score ${r.score}`);
});

test('a plain ham message: a low score, the symbols with their descriptions', { skip: missing }, async () => {
  const r = await rspamdFilter({ url: `${url}/`, timeoutMs: 10_000 }).score(input(HAM));
  assert.ok(r.score < 3, `score ${r.score}: ${JSON.stringify(r.hits)}`);
  assert.ok(!r.hits.some((h) => h.rule === 'GTUBE'));
  const mime = r.hits.find((h) => h.rule === 'MIME_GOOD');
  assert.ok(mime, JSON.stringify(r.hits));
  assert.equal(mime.description, 'Known content-type');
  assert.ok(mime.score < 0);
});

test('every recipient reaches Rspamd (Rcpt), the null sender is accepted', { skip: missing }, async () => {
  const filter = rspamdFilter({ url, timeoutMs: 10_000 });
  const msg = mail('Hi both, lunch tomorrow?\r\nBob', { to: 'alice@example.org, carol@example.org' });
  // Rspamd compares To: with the envelope: ALL when both recipients were sent, SOME with one.
  const both = await filter.score(input(msg, { recipients: ['alice@example.org', 'carol@example.org'] }));
  assert.ok(both.hits.some((h) => h.rule === 'TO_MATCH_ENVRCPT_ALL'), JSON.stringify(both.hits.map((h) => h.rule)));
  const one = await filter.score(input(msg, { recipients: ['carol@example.org'] }));
  assert.ok(one.hits.some((h) => h.rule === 'TO_MATCH_ENVRCPT_SOME'), JSON.stringify(one.hits.map((h) => h.rule)));
  const bounce = await filter.score(input(HAM, { from: '' }));
  assert.ok(bounce.score < 3, `score ${bounce.score}`);
});

test('an HTTP error from Rspamd rejects with its error, naming policy.spam.rspamd_url', { skip: missing }, async () => {
  await assert.rejects(rspamdFilter({ url: `${url}/nope`, timeoutMs: 10_000 }).score(input(HAM)), /^Error: policy\.spam\.rspamd_url: Rspamd at http:\/\/127\.0\.0\.1:\d+\/nope\/checkv2 answered HTTP 500: invalid command$/);
});

test('connection refused: rejects naming policy.spam.rspamd_url', async () => {
  const closed = await freePort();
  await assert.rejects(rspamdFilter({ url: `http://127.0.0.1:${closed}`, timeoutMs: 5000 }).score(input(HAM)), /^Error: policy\.spam\.rspamd_url: Rspamd at http:\/\/127\.0\.0\.1:\d+\/checkv2 cannot be reached: .*ECONNREFUSED/);
});

test('a server that never answers: rejects when the timeout ends, naming policy.spam.timeout', async () => {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((s) => {
    sockets.push(s);
    s.resume();
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const port = (silent.address() as net.AddressInfo).port;
  try {
    const started = Date.now();
    await assert.rejects(rspamdFilter({ url: `http://127.0.0.1:${port}`, timeoutMs: 300 }).score(input(HAM)), /^Error: policy\.spam\.rspamd_url: Rspamd at .* did not answer within 300 ms \(policy\.spam\.timeout\)$/);
    const took = Date.now() - started;
    assert.ok(took >= 290 && took < 1500, `took ${took} ms`);
  } finally {
    for (const s of sockets) s.destroy();
    silent.close();
  }
});

test('an answer over 1 MiB is refused, declared or streamed; a non-JSON answer is an error', async () => {
  let mode = 'declared';
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (mode === 'declared') {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 2_000_000 });
        res.end(Buffer.alloc(2_000_000, ' '));
      } else if (mode === 'chunked') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        for (let i = 0; i < 40; i++) res.write(Buffer.alloc(64 * 1024, ' '));
        res.end('{}');
      } else {
        res.writeHead(200, { 'Content-Type': 'text/html' });
        res.end('<html>hello</html>');
      }
    });
    res.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const base = `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
  try {
    const filter = rspamdFilter({ url: base, timeoutMs: 5000 });
    await assert.rejects(filter.score(input(HAM)), /policy\.spam\.rspamd_url: .* sent an answer over 1048576 bytes/);
    mode = 'chunked';
    await assert.rejects(filter.score(input(HAM)), /policy\.spam\.rspamd_url: .* sent an answer over 1048576 bytes/);
    mode = 'html';
    await assert.rejects(filter.score(input(HAM)), /policy\.spam\.rspamd_url: .* sent an answer that is not a JSON object/);
  } finally {
    srv.closeAllConnections();
    srv.close();
  }
});

test('bad URLs name policy.spam.rspamd_url; symbols without description or score', () => {
  assert.throws(() => rspamdFilter({ url: 'localhost:11333', timeoutMs: 1000 }), /^Error: policy\.spam\.rspamd_url: "localhost:11333" is not an http or https URL/);
  assert.throws(() => rspamdFilter({ url: 'not a url', timeoutMs: 1000 }), /^Error: policy\.spam\.rspamd_url: "not a url" is not a URL/);
  assert.deepEqual(parseRspamdResult({ score: 2, required_score: 15, action: 'no action', symbols: { A: { name: 'A', score: 0.5 }, B: { name: 'B', metric_score: 1.5, description: 'bee' }, C: {} } }), {
    score: 2,
    hits: [
      { rule: 'B', score: 1.5, description: 'bee' },
      { rule: 'A', score: 0.5, description: 'A' },
      { rule: 'C', score: 0, description: 'C' },
    ],
    filter: 'rspamd',
    action: 'no action',
  });
  assert.throws(() => parseRspamdResult({ error: 'x' }), /policy\.spam\.rspamd_url: .*numeric "score"/);
});
