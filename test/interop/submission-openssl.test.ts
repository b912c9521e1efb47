import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { run, missing } from '../helpers/cli.ts';
import { startTestServer, inbox, blobText, type TestServer } from '../helpers/server.ts';

/**
 * openssl s_client against submission: STARTTLS (`-starttls smtp`) and implicit TLS, the
 * negotiated protocol (TLS 1.2 minimum, RFC 8996 / RFC 8314 §4.1), and a full AUTH PLAIN
 * session typed over the TLS channel.
 *
 * s_client is driven line by line: each command is written only after the reply it waits for
 * arrived (a client that talks before the greeting is an early talker and gets 421).
 * `-nocommands` stops it from treating lines starting with Q or R as its own commands
 * (QUIT would close the connection without sending it); `-brief` prints the protocol and
 * cipher on stderr. Every process is killed if it is still running after its deadline.
 */

const skip = missing('openssl');
let t: TestServer;
before(async () => {
  if (!skip) t = await startTestServer({ auth: { failure_delay: '50ms' } });
});
after(async () => t?.stop());

class SClient {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number>;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly killer: NodeJS.Timeout;

  constructor(args: string[], deadlineMs = 20_000) {
    this.child = spawn('openssl', ['s_client', '-brief', '-nocommands', '-crlf', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (d: Buffer) => (this.stdout += d.toString('latin1')));
    this.child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString('latin1')));
    this.child.stdin.on('error', () => {}); // EPIPE when the server already closed
    this.killer = setTimeout(() => this.child.kill('SIGKILL'), deadlineMs);
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        clearTimeout(this.killer);
        resolve(code ?? (signal ? 128 : 1));
      });
    });
  }

  /** Waits until stdout (from `from` on) matches; throws with the transcript on timeout or exit. */
  async expect(re: RegExp, from = 0, ms = 10_000): Promise<RegExpExecArray> {
    const end = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.stdout.slice(from));
      if (m) return m;
      if (Date.now() > end || this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`no ${re} from openssl s_client\n--- stdout\n${this.stdout}\n--- stderr\n${this.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Sends one line (s_client turns LF into CRLF: -crlf) and waits for a final reply line `code …`. */
  async command(line: string, code = '\\d{3}'): Promise<string> {
    const from = this.stdout.length;
    this.child.stdin.write(`${line}\n`);
    const m = await this.expect(new RegExp(`(?:^|\\n)(${code} [^\\r\\n]*)\\r?\\n`), from);
    return this.stdout.slice(from, from + m.index + m[0].length);
  }

  async quit(): Promise<number> {
    await this.command('QUIT', '221');
    this.child.stdin.end();
    return this.exited;
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

async function session(args: string[], body: (c: SClient) => Promise<void>): Promise<SClient> {
  const c = new SClient(args);
  try {
    await body(c);
    assert.equal(await c.quit(), 0, c.stderr);
  } finally {
    c.kill(); // no-op if it already exited
  }
  return c;
}

test('openssl s_client -starttls smtp: TLS 1.2+, then EHLO offers AUTH PLAIN LOGIN and no STARTTLS', { skip }, async () => {
  const c = await session(['-starttls', 'smtp', '-name', 'client.test', '-connect', `127.0.0.1:${t.submissionPort}`], async (c) => {
    // s_client consumed the greeting and its own EHLO before STARTTLS and reads stdin only
    // once the handshake is done; inside TLS the session starts over.
    const e = await c.command('EHLO client.test', '250');
    assert.match(e, /250-AUTH (?:\S+ )*PLAIN LOGIN\b/);
    assert.doesNotMatch(e, /STARTTLS/);
  });
  assert.match(c.stderr, /CONNECTION ESTABLISHED/);
  assert.match(c.stderr, /Protocol version: TLSv1\.[23]\b/);
  assert.match(c.stderr, /Peer certificate: CN\s*=\s*mx\.example\.test/);
});

test('openssl s_client on the submissions port (implicit TLS): 220 greeting, AUTH PLAIN and a message', { skip }, async () => {
  const plain = Buffer.from('\0alice@example.test\0secret').toString('base64');
  const c = await session(['-connect', `127.0.0.1:${t.submissionsPort}`], async (c) => {
    await c.expect(/^220 mx\.example\.test /m);
    const e = await c.command('EHLO client.test', '250');
    assert.match(e, /250-AUTH (?:\S+ )*PLAIN LOGIN\b/);
    assert.doesNotMatch(e, /STARTTLS/);
    assert.match(await c.command(`AUTH PLAIN ${plain}`), /^235 2\.7\.0/m);
    assert.match(await c.command('MAIL FROM:<alice@example.test>'), /^250 /m);
    assert.match(await c.command('RCPT TO:<bob@example.test>'), /^250 /m);
    assert.match(await c.command('DATA'), /^354 /m);
    const r = await c.command('From: alice@example.test\nTo: bob@example.test\nSubject: openssl-465\n\ntyped by hand\n.');
    assert.match(r, /^250 2\.6\.0 /m);
  });
  assert.match(c.stderr, /Protocol version: TLSv1\.[23]\b/);
  const m = (await inbox(t, 'bob@example.test')).find((x) => x.subject === 'openssl-465');
  assert.ok(m, 'delivered');
  const text = await blobText(t, m.blobHash);
  assert.match(text, /with ESMTPSA id /);
  assert.match(text, /\r\n\r\ntyped by hand\r\n$/);
});

for (const v of ['1_2', '1_3']) {
  test(`openssl s_client -tls${v} is accepted on both ports`, { skip }, async () => {
    for (const args of [['-starttls', 'smtp', '-connect', `127.0.0.1:${t.submissionPort}`], ['-connect', `127.0.0.1:${t.submissionsPort}`]]) {
      const c = await session([`-tls${v}`, ...args], async (c) => {
        if (!args.includes('-starttls')) await c.expect(/^220 /m);
        assert.match(await c.command('NOOP'), /^250 /m);
      });
      assert.match(c.stderr, new RegExp(`Protocol version: TLSv${v.replace('_', '\\.')}\\b`), c.stderr);
    }
  });
}

test('openssl s_client -tls1_1 (and -tls1) fails to handshake: TLS 1.2 is the minimum', { skip }, async () => {
  for (const version of ['-tls1_1', '-tls1']) {
    for (const args of [['-starttls', 'smtp', '-connect', `127.0.0.1:${t.submissionPort}`], ['-connect', `127.0.0.1:${t.submissionsPort}`]]) {
      // SECLEVEL=0 lets this OpenSSL 3 offer TLS 1.0/1.1 at all, so the refusal is the server's.
      const r = await run('openssl', ['s_client', version, '-cipher', 'DEFAULT@SECLEVEL=0', '-brief', ...args], { input: 'QUIT\n', timeoutMs: 15_000 });
      const out = r.stdout + r.stderr;
      assert.notEqual(r.status, 0, `${version} ${args.join(' ')}: ${out}`);
      assert.doesNotMatch(out, /CONNECTION ESTABLISHED/);
      assert.match(out, /alert protocol version/, `${version} ${args.join(' ')}: the server refused the version\n${out}`);
    }
  }
});
