import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { Readable } from 'node:stream';
import { message, inbox } from '../helpers/server.ts';
import { Pop3TestClient, deliver, startPop3TestServer, type Pop3TestServer } from '../helpers/pop3-client.ts';

/**
 * Server-side failures and hostile input: a store that fails in the UPDATE state
 * (-ERR [SYS/TEMP], nothing deleted, the client may retry), a message that cannot be
 * read (-ERR [SYS/TEMP] before any byte of it), and garbage — random bytes, NULs,
 * bare CRs, non-UTF-8, huge lines, plaintext on the TLS port — answered with a clear
 * -ERR or a closed connection, never a crash or a hang.
 */
let t: Pop3TestServer;
before(async () => {
  t = await startPop3TestServer({}, { users: ['alice@example.test', 'bob@example.test', 'carol@example.test'] });
});
after(async () => t?.stop());

async function login(user: string): Promise<Pop3TestClient> {
  const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
  assert.match(await c.login(user), /^\+OK Logged in/);
  return c;
}

/**
 * A login right after the user's previous connection was dropped: the server releases that
 * session's maildrop lock when it sees the close (on PostgreSQL, a store write), so until then
 * the answer is a correct -ERR [IN-USE]; try again for a while.
 */
async function loginAfterDrop(user: string): Promise<Pop3TestClient> {
  for (const end = Date.now() + 10_000; ; ) {
    const c = await Pop3TestClient.connect(t.pop3sPort, { tls: true });
    const r = await c.login(user);
    if (/^\+OK Logged in/.test(r)) return c;
    c.close();
    assert.match(r, /^-ERR \[IN-USE\]/);
    assert.ok(Date.now() < end, 'the dropped session released its lock');
    await new Promise((res) => setTimeout(res, 50));
  }
}

test('UPDATE fails in the store: -ERR [SYS/TEMP], nothing deleted, the lock is released, a later QUIT deletes', async () => {
  for (const s of ['f1', 'f2']) await deliver(t, 'alice@example.test', message(s));
  const data = t.server.ctx.data;
  const original = data.pop3Update.bind(data);
  data.pop3Update = async () => {
    throw new Error('disk full');
  };
  try {
    const c = await login('alice@example.test');
    assert.equal(await c.cmd('DELE 1'), '+OK Message 1 deleted');
    assert.equal(await c.cmd('QUIT'), '-ERR [SYS/TEMP] Some deleted messages not removed, try again later');
    await c.waitClosed();
  } finally {
    data.pop3Update = original;
  }
  assert.deepEqual((await inbox(t, 'alice@example.test')).map((m) => m.subject), ['f1', 'f2']);
  const d = await login('alice@example.test');
  await d.cmd('DELE 1');
  assert.equal(await d.cmd('QUIT'), '+OK Logging out, 1 message deleted');
  assert.deepEqual((await inbox(t, 'alice@example.test')).map((m) => m.subject), ['f2']);
});

test('a message that cannot be read: -ERR [SYS/TEMP] instead of a broken response; the session goes on', async () => {
  await deliver(t, 'bob@example.test', message('unreadable'));
  const blobs = t.server.ctx.blobs;
  const original = blobs.read.bind(blobs);
  blobs.read = () =>
    new Readable({
      read() {
        this.destroy(new Error('EIO: i/o error'));
      },
    });
  try {
    const c = await login('bob@example.test');
    assert.equal(await c.cmd('RETR 1'), '-ERR [SYS/TEMP] Cannot read the message now, try again later');
    assert.equal(await c.cmd('TOP 1 0'), '-ERR [SYS/TEMP] Cannot read the message now, try again later');
    assert.equal(await c.cmd('NOOP'), '+OK');
    blobs.read = original;
    assert.match((await c.retr(1)).message.toString(), /Subject: unreadable/);
    await c.cmd('QUIT');
  } finally {
    blobs.read = original;
  }
});

test('a message whose bytes fail half-way: the connection is closed (a multi-line reply cannot carry an error); nothing is deleted', async () => {
  await deliver(t, 'carol@example.test', message('half', `${'x'.repeat(200_000)}\r\n`));
  const blobs = t.server.ctx.blobs;
  const original = blobs.read.bind(blobs);
  // 128 KiB or so of the real bytes, then an I/O error
  blobs.read = (hash: string) =>
    Readable.from(
      (async function* () {
        let n = 0;
        for await (const chunk of original(hash)) {
          yield chunk as Buffer;
          n += (chunk as Buffer).length;
          if (n > 128 * 1024) throw new Error('EIO: i/o error');
        }
      })(),
    );
  try {
    const c = await login('carol@example.test');
    await c.cmd('DELE 1');
    await c.cmd('RSET');
    c.write('RETR 1\r\n');
    await assert.rejects(c.readMulti(), /connection closed inside a multi-line reply/);
  } finally {
    blobs.read = original;
  }
  assert.equal((await inbox(t, 'carol@example.test')).length, 1);
  const d = await login('carol@example.test');
  assert.equal((await d.retr(1)).message.length, (await inbox(t, 'carol@example.test'))[0]!.size);
  await d.cmd('QUIT');
});

test('garbage: random bytes before and after login get -ERR lines or a close, never a crash or a hang', async () => {
  const rnd = (n: number) => crypto.randomBytes(n);
  const inputs: Buffer[] = [
    rnd(1000),
    Buffer.from('\0\0\0\r\n'),
    Buffer.from('USER \xff\xfe\r\n', 'latin1'),
    Buffer.from('RETR 99999999999999999999\r\n'),
    Buffer.from('TOP 1 -1\r\nLIST -0\r\nDELE 1 2\r\n'),
    Buffer.from('\r\n\r\n\r\n'),
    Buffer.from(`${'A'.repeat(70_000)}\r\n`),
    Buffer.from('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'), // a TLS ClientHello on the plain port
  ];
  for (let round = 0; round < 20; round++) {
    for (const loggedIn of [false, true]) {
      const c = loggedIn ? await loginAfterDrop('alice@example.test') : await Pop3TestClient.connect(t.pop3sPort, { tls: true });
      c.write(inputs[round % inputs.length]!);
      c.write(rnd(200 + round * 50));
      // a command answered +OK in the session's state: its reply ends what the garbage caused
      const [probe, ok] = loggedIn ? ['NOOP', '+OK'] : ['UTF8', '+OK UTF8 enabled'];
      c.write(`\r\n${probe}\r\n`);
      // Every line the server sends is a reply; the session either goes on or ends, within the timeout.
      for (;;) {
        const l = await c.line(5000).catch((e: Error) => {
          throw new Error(`round ${round}, ${loggedIn ? 'logged in' : 'before login'}: ${e.message}`);
        });
        if (c.closed && l === '') break;
        assert.match(l, /^(\+OK|-ERR)/, `reply: ${JSON.stringify(l)}`);
        if (l === ok) break;
      }
      c.close();
    }
  }
  // plaintext on the POP3S port, and random bytes as a TLS handshake: closed, nothing else
  for (const junk of [Buffer.from('USER alice@example.test\r\n'), rnd(5000)]) {
    const s = net.connect(t.pop3sPort, '127.0.0.1');
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.on('error', () => undefined);
    s.write(junk);
    await new Promise<void>((resolve) => s.once('close', () => resolve()));
  }
  // still serving (the loop's last session was dropped: its lock goes when the server sees the close)
  const c = await loginAfterDrop('alice@example.test');
  assert.match(await c.cmd('STAT'), /^\+OK \d+ \d+$/);
  await c.cmd('QUIT');
});
