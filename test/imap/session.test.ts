import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';

let t: TestServer;
before(async () => {
  t = await startTestServer();
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  for (let i = 1; i <= 3; i++) {
    const r = await c.sendMail({ from: 'bob@example.test', to: ['alice@example.test'], message: `From: bob@example.test\r\nSubject: message ${i}\r\n\r\nbody ${i}\r\n` });
    assert.equal(r.data?.code, 250);
  }
  await c.quit();
});
after(() => t.stop());

test('greeting and CAPABILITY before TLS: STARTTLS and LOGINDISABLED, no AUTH=; LOGIN refused in cleartext', async () => {
  const c = await ImapTestClient.connect(t.imapPort);
  try {
    assert.match(c.greeting, /^\* OK \[CAPABILITY IMAP4rev1 IMAP4rev2 .*STARTTLS.*LOGINDISABLED\]/);
    const cap = await c.command('CAPABILITY');
    assert.equal(cap.status, 'OK');
    assert.match(cap.lines[0]!, /^\* CAPABILITY .*IMAP4rev2.*STARTTLS/);
    assert.doesNotMatch(cap.lines[0]!, /AUTH=/);
    const login = await c.login();
    assert.equal(login.status, 'NO');
    assert.match(login.text, /^\[PRIVACYREQUIRED\]/);
  } finally {
    c.close();
  }
});

test('STARTTLS, then LOGIN; capabilities recomputed after TLS and after login', async () => {
  const c = await ImapTestClient.connect(t.imapPort);
  try {
    await c.startTls();
    const cap = await c.command('CAPABILITY');
    assert.match(cap.lines[0]!, /AUTH=PLAIN/);
    assert.doesNotMatch(cap.lines[0]!, /STARTTLS|LOGINDISABLED/);
    const login = await c.login();
    assert.equal(login.status, 'OK', login.text);
    assert.match(login.text, /^\[CAPABILITY .*UTF8=ACCEPT.*\bBINARY\b/);
    assert.equal((await c.command('LOGOUT')).lines[0], '* BYE Logging out');
  } finally {
    c.close();
  }
});

test('plaintext pipelined behind STARTTLS is discarded, not run inside TLS', async () => {
  const c = await ImapTestClient.connect(t.imapPort);
  try {
    c.write('A1 STARTTLS\r\nA2 LOGIN alice@example.test secret\r\n');
    assert.match(await c.line(), /^A1 OK/);
    const tls = await import('node:tls');
    c.socket.removeAllListeners('data');
    const secure = tls.connect({ socket: c.socket, rejectUnauthorized: false });
    await new Promise((r) => secure.once('secureConnect', r));
    const got: string[] = [];
    secure.on('data', (d: Buffer) => got.push(d.toString()));
    secure.write('A3 NOOP\r\n');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(got.join('').trim().split('\r\n'), ['A3 OK NOOP completed'], 'A2 never answered');
    secure.destroy();
  } finally {
    c.close();
  }
});

test('IMAPS: LOGIN with a wrong password fails with [AUTHENTICATIONFAILED]; AUTHENTICATE PLAIN with SASL-IR works', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    assert.match(c.greeting, /AUTH=PLAIN/);
    const bad = await c.login('alice@example.test', 'wrong');
    assert.equal(bad.status, 'NO');
    assert.match(bad.text, /\[AUTHENTICATIONFAILED\]/);
    const ir = Buffer.from('\0alice@example.test\0secret').toString('base64');
    const ok = await c.command(`AUTHENTICATE PLAIN ${ir}`);
    assert.equal(ok.status, 'OK', ok.text);
  } finally {
    c.close();
  }
});

test('AUTHENTICATE PLAIN with a continuation; "*" aborts', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    c.write('X1 AUTHENTICATE PLAIN\r\n');
    assert.equal(await c.line(), '+ ');
    c.write('*\r\n');
    const aborted = await c.read('X1');
    assert.equal(aborted.status, 'BAD');
    c.write('X2 AUTHENTICATE PLAIN\r\n');
    assert.equal(await c.line(), '+ ');
    c.write(`${Buffer.from('\0alice@example.test\0secret').toString('base64')}\r\n`);
    assert.equal((await c.read('X2')).status, 'OK');
  } finally {
    c.close();
  }
});

test('SELECT INBOX reports EXISTS, FLAGS, UIDVALIDITY, UIDNEXT; EXAMINE is read-only; CLOSE/UNSELECT', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    assert.equal((await c.login()).status, 'OK');
    const sel = await c.command('SELECT INBOX');
    assert.equal(sel.status, 'OK', sel.text);
    assert.match(sel.text, /^\[READ-WRITE\]/);
    assert.ok(sel.lines.includes('* 3 EXISTS'), sel.lines.join('\n'));
    assert.ok(sel.lines.includes('* 3 RECENT'));
    assert.ok(sel.lines.some((l) => /^\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft\)$/.test(l)));
    assert.ok(sel.lines.some((l) => /^\* OK \[UIDVALIDITY \d+\]/.test(l)));
    assert.ok(sel.lines.some((l) => /^\* OK \[UIDNEXT 4\]/.test(l)));
    assert.ok(sel.lines.some((l) => /^\* OK \[UNSEEN 1\]/.test(l)));
    const ex = await c.command('EXAMINE inbox');
    assert.match(ex.text, /^\[READ-ONLY\]/);
    assert.ok(ex.lines.includes('* OK [CLOSED] Previous mailbox closed'));
    assert.equal((await c.command('UNSELECT')).status, 'OK');
    assert.equal((await c.command('CLOSE')).status, 'BAD', 'nothing selected any more');
    const missing = await c.command('SELECT Nowhere');
    assert.equal(missing.status, 'NO');
    assert.match(missing.text, /\[NONEXISTENT\]/);
  } finally {
    c.close();
  }
});

test('ENABLE IMAP4rev2 and UTF8=ACCEPT; ID; NAMESPACE; commands before login are refused; 3 bad commands before login end the connection', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    assert.equal((await c.command('SELECT INBOX')).status, 'BAD');
    const id = await c.command('ID ("name" "test-client")');
    assert.match(id.lines[0]!, /^\* ID \("name" "Postern"/);
    await c.login();
    const en = await c.command('ENABLE IMAP4rev2 UTF8=ACCEPT');
    assert.equal(en.lines[0], '* ENABLED IMAP4rev2 UTF8=ACCEPT');
    assert.equal((await c.command('NAMESPACE')).lines[0], '* NAMESPACE (("" "/")) NIL NIL');
    const sel = await c.command('SELECT INBOX');
    assert.ok(!sel.lines.some((l) => /RECENT/.test(l)), 'no \\Recent in IMAP4rev2');
  } finally {
    c.close();
  }
  const d = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    assert.match(d.greeting, /^\* OK/);
    await d.command('FOO');
    await d.command('BAR');
    const third = await d.command('BAZ');
    assert.equal(third.status, 'BAD');
    assert.equal(await d.line().catch(() => 'closed'), '* BYE Too many invalid commands');
  } finally {
    d.close();
  }
});

test("a command's untagged lines and its tagged status leave in one socket write (the session coalesces a turn's writes)", async () => {
  const net = await import('node:net');
  // Counted on the server's end of this connection: net.Socket's _write (one chunk) and
  // _writev (the chunks a cork held), which Writable calls once per system write.
  const proto = net.Socket.prototype as unknown as Record<'_write' | '_writev', (...a: unknown[]) => unknown>;
  const orig = { _write: proto._write, _writev: proto._writev };
  let clientPort = -1;
  let writes = 0;
  for (const m of ['_write', '_writev'] as const) {
    proto[m] = function (this: import('node:net').Socket, ...a: unknown[]) {
      if (this.remotePort === clientPort) writes++;
      return orig[m].apply(this, a);
    };
  }
  const c = await ImapTestClient.connect(t.imapPort);
  try {
    clientPort = c.socket.localPort!;
    for (const cmd of ['CAPABILITY', 'ID NIL', 'CAPABILITY']) {
      writes = 0;
      const r = await c.command(cmd);
      assert.equal(r.status, 'OK', r.text);
      assert.equal(r.lines.length, 1);
      assert.equal(writes, 1, `${cmd}: an untagged line and the tagged OK in ${writes} writes`);
    }
  } finally {
    Object.assign(proto, orig);
    c.close();
  }
});

test('failed IMAP logins feed the ban guard: after 3 the client is refused with BYE at connect', async () => {
  const b = await startTestServer({ bans: { trusted_networks: [] }, auth: { failure_delay: '10ms', failure_delay_max: '10ms' } });
  try {
    const c = await ImapTestClient.connect(b.imapsPort, { tls: true, localAddress: '127.0.0.21' });
    for (let i = 0; i < 3; i++) assert.equal((await c.login('alice@example.test', `wrong${i}`)).status, 'NO');
    c.close();
    const d = await ImapTestClient.connect(b.imapsPort, { tls: true, localAddress: '127.0.0.21' });
    assert.match(d.greeting, /^\* BYE .*failed logins/);
    d.close();
    // Another address is not affected.
    const e = await ImapTestClient.connect(b.imapsPort, { tls: true, localAddress: '127.0.0.22' });
    assert.match(e.greeting, /^\* OK/);
    e.close();
  } finally {
    await b.stop();
  }
});

test('\\Recent counts and SELECT summaries stay right as messages come and go (RFC 3501 §2.3.2, §7.3.2)', async () => {
  const connect = async () => {
    const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
    assert.equal((await c.login()).status, 'OK');
    return c;
  };
  const append = async (c: ImapTestClient, n: number, flags = '') => {
    const msg = `From: r@example.test\r\nSubject: recent ${n}\r\n\r\nbody ${n}\r\n`;
    c.write(`A${n} APPEND RecentBox (${flags}) {${Buffer.byteLength(msg)}+}\r\n${msg}\r\n`);
    assert.equal((await c.read(`A${n}`)).status, 'OK');
  };
  const other = await connect();
  const a = await connect();
  try {
    assert.equal((await other.command('CREATE RecentBox')).status, 'OK');
    for (let n = 1; n <= 40; n++) await append(other, n, n === 1 ? '\\Seen' : n === 2 ? '\\Seen $Label7' : '\\Seen');
    // The first session to see them: all recent; the next one none.
    const first = await a.command('SELECT RecentBox');
    assert.ok(first.lines.includes('* 40 RECENT'), first.lines.join('\n'));
    assert.ok(first.lines.some((l) => /^\* FLAGS \(.* \$Label7\)$/.test(l)), first.lines.join('\n'));
    assert.ok(!first.lines.some((l) => /UNSEEN/.test(l)), 'every message is seen');
    const again = await a.command('SELECT RecentBox');
    assert.ok(again.lines.includes('* 0 RECENT'), again.lines.join('\n'));
    // Two new ones: recent for this session (few among many: looked up one by one).
    await append(other, 41);
    await append(other, 42);
    const noop = await a.command('NOOP');
    assert.ok(noop.lines.includes('* 42 EXISTS') && noop.lines.includes('* 2 RECENT'), noop.lines.join('\n'));
    // One of them expunged, another delivered: 2 recent, not 3.
    assert.equal((await a.command('STORE 42 +FLAGS.SILENT (\\Deleted)')).status, 'OK');
    assert.equal((await a.command('EXPUNGE')).status, 'OK');
    await append(other, 43);
    const after = await a.command('NOOP');
    assert.ok(after.lines.includes('* 42 EXISTS') && after.lines.includes('* 2 RECENT'), after.lines.join('\n'));
    const recent = await a.command('SEARCH RECENT');
    assert.ok(recent.lines.includes('* SEARCH 41 42'), recent.lines.join('\n'));
    // A keyword and an unseen message appear in the next SELECT's FLAGS and UNSEEN.
    assert.equal((await a.command('STORE 5 +FLAGS ($Label9)')).status, 'OK');
    assert.equal((await a.command('STORE 5 -FLAGS (\\Seen)')).status, 'OK');
    const b = await other.command('SELECT RecentBox');
    assert.ok(b.lines.some((l) => /^\* FLAGS \(.* \$Label7 \$Label9\)$/.test(l)), b.lines.join('\n'));
    assert.ok(b.lines.includes('* OK [UNSEEN 5] First unseen'), b.lines.join('\n'));
    assert.ok(b.lines.includes('* 0 RECENT'), b.lines.join('\n'));
  } finally {
    a.close();
    other.close();
  }
});
