import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { ImapTestClient, type ImapReply } from '../helpers/imap-client.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';

/**
 * CONDSTORE and QRESYNC (RFC 7162) over real sockets: the RFC's examples adapted
 * to a mailbox of four delivered messages per user (UIDs 1-4).
 */

const USERS = ['caps', 'empty', 'grow', 'changed', 'conflict', 'other', 'enable', 'resync', 'known', 'vanish', 'move', 'uidfetch', 'seen'].map((u) => `${u}@example.test`);
const WITH_MAIL = USERS.filter((u) => u !== 'empty@example.test');

let t: TestServer;
before(async () => {
  t = await startTestServer({}, { users: USERS });
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  for (const u of WITH_MAIL) {
    for (let i = 1; i <= 4; i++) {
      const r = await c.sendMail({ from: 'bob@example.test', to: [u], message: `From: bob@example.test\r\nSubject: message ${i}\r\n\r\nbody ${i}\r\n` });
      assert.equal(r.data?.code, 250);
    }
  }
  await c.quit();
});
after(() => t.stop());

/** A logged-in IMAP4rev2 session (no \Recent in flags), with extra ENABLEs. */
async function login(user: string, enable: string[] = []): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  assert.equal((await c.login(user, 'secret')).status, 'OK');
  const en = await c.command(`ENABLE IMAP4rev2 ${enable.join(' ')}`.trim());
  assert.equal(en.status, 'OK', en.text);
  return c;
}

async function ok(c: ImapTestClient, cmd: string): Promise<ImapReply> {
  const r = await c.command(cmd);
  assert.equal(r.status, 'OK', `${cmd}: ${r.status} ${r.text}`);
  return r;
}

/** The HIGHESTMODSEQ response code's value among the lines (or in the tagged text). */
function highest(r: ImapReply): number {
  const m = /\[HIGHESTMODSEQ (\d+)\]/.exec([...r.lines, r.text].find((l) => l.includes('[HIGHESTMODSEQ'))!);
  assert.ok(m, `no HIGHESTMODSEQ in ${JSON.stringify(r)}`);
  return Number(m[1]);
}

function modseqOf(line: string): number {
  const m = /MODSEQ \((\d+)\)/.exec(line);
  assert.ok(m, line);
  return Number(m[1]);
}

async function mailbox(user: string, name = 'INBOX') {
  const acct = await t.server.ctx.data.getAccount(user);
  return (await t.server.ctx.data.getMailbox(acct!.id, name))!;
}

test('CONDSTORE and QRESYNC are advertised before and after login', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  try {
    assert.match(c.greeting, / CONDSTORE .*QRESYNC|QRESYNC.* CONDSTORE/);
    await c.login('caps@example.test', 'secret');
    const cap = await ok(c, 'CAPABILITY');
    assert.ok(cap.lines[0]!.split(' ').includes('CONDSTORE'), cap.lines[0]);
    assert.ok(cap.lines[0]!.split(' ').includes('QRESYNC'), cap.lines[0]);
  } finally {
    c.close();
  }
});

test('SELECT and EXAMINE always answer HIGHESTMODSEQ, at least 1 for a mailbox without changes; SELECT (CONDSTORE) enables CONDSTORE', async () => {
  const c = await login('empty@example.test');
  try {
    assert.equal((await mailbox('empty@example.test')).highestmodseq, 0, 'a fresh INBOX has 0 in the store');
    const sel = await ok(c, 'SELECT INBOX');
    assert.ok(sel.lines.includes('* OK [HIGHESTMODSEQ 1] Highest'), JSON.stringify(sel.lines));
    assert.ok(!sel.lines.some((l) => l.includes('NOMODSEQ')));
    const ex = await ok(c, 'EXAMINE INBOX');
    assert.ok(ex.lines.includes('* OK [HIGHESTMODSEQ 1] Highest'));
    // RFC 7162 §3.1.8: the CONDSTORE parameter enables CONDSTORE (MODSEQ in flag-change FETCHes from now on).
    const withParam = await ok(c, 'SELECT INBOX (CONDSTORE)');
    assert.match(withParam.text, /^\[READ-WRITE\] /);
    const bad = await c.command('SELECT INBOX (BOGUS)');
    assert.equal(bad.status, 'BAD');
    assert.equal((await c.command('SELECT INBOX CONDSTORE')).status, 'BAD', 'the parameters are a list');
  } finally {
    c.close();
  }
});

test('HIGHESTMODSEQ grows with each change: STORE, EXPUNGE, delivery (SELECT, STATUS and MODSEQ agree)', async () => {
  const user = 'grow@example.test';
  const c = await login(user, ['CONDSTORE']);
  try {
    const h0 = highest(await ok(c, 'SELECT INBOX'));
    assert.equal(h0, (await mailbox(user)).highestmodseq);
    // RFC 7162 §3.1.3 example: STORE answers FETCH with the new MODSEQ.
    const st = await ok(c, 'STORE 1 +FLAGS (\\Flagged)');
    assert.equal(st.lines.length, 1);
    assert.match(st.lines[0]!, /^\* 1 FETCH \(FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)$/);
    const h1 = modseqOf(st.lines[0]!);
    assert.ok(h1 > h0);
    const status = await ok(c, 'STATUS INBOX (HIGHESTMODSEQ)');
    assert.equal(status.lines[0], `* STATUS INBOX (HIGHESTMODSEQ ${h1})`);
    const h2 = modseqOf((await ok(c, 'STORE 2 +FLAGS (\\Deleted)')).lines[0]!);
    assert.ok(h2 > h1);
    await ok(c, 'EXPUNGE');
    const h3 = highest(await ok(c, 'SELECT INBOX'));
    assert.ok(h3 > h2, 'the expunge took a modseq of its own');
    const fetched = await ok(c, 'FETCH 1:* (MODSEQ)');
    assert.ok(Math.max(...fetched.lines.map(modseqOf)) < h3, 'the expunge is the latest change');
    // A delivery is a change too.
    const smtp = await SmtpTestClient.connect({ path: t.socketPath });
    await smtp.sendMail({ from: 'bob@example.test', to: [user], message: 'Subject: late\r\n\r\nlate\r\n' });
    await smtp.quit();
    const noop = await ok(c, 'NOOP');
    assert.ok(noop.lines.includes('* 4 EXISTS'), JSON.stringify(noop.lines));
    const h4 = highest(await ok(c, 'SELECT INBOX'));
    assert.ok(h4 > h3);
    const last = await ok(c, 'FETCH 4 (UID MODSEQ)');
    assert.equal(last.lines[0], `* 4 FETCH (UID 5 MODSEQ (${h4}))`);
  } finally {
    c.close();
  }
});

test('FETCH CHANGEDSINCE returns only the messages changed since (RFC 7162 §3.1.4.2), with MODSEQ; SEARCH MODSEQ finds them', async () => {
  const c = await login('changed@example.test');
  try {
    const h0 = highest(await ok(c, 'SELECT INBOX'));
    const none = await ok(c, `FETCH 1:* (FLAGS) (CHANGEDSINCE ${h0})`);
    assert.deepEqual(none.lines, []);
    await ok(c, 'STORE 2 +FLAGS (\\Seen)');
    await ok(c, 'STORE 4 +FLAGS ($Important)');
    const ch = await ok(c, `FETCH 1:* (FLAGS) (CHANGEDSINCE ${h0})`);
    assert.equal(ch.lines.length, 2, JSON.stringify(ch.lines));
    assert.match(ch.lines[0]!, /^\* 2 FETCH \(FLAGS \(\\Seen\) MODSEQ \(\d+\)\)$/);
    assert.match(ch.lines[1]!, /^\* 4 FETCH \(FLAGS \(\$Important\) MODSEQ \(\d+\)\)$/);
    const m2 = modseqOf(ch.lines[0]!);
    const m4 = modseqOf(ch.lines[1]!);
    assert.ok(h0 < m2 && m2 < m4);
    const uid = await ok(c, `UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${m2})`);
    assert.deepEqual(uid.lines, [`* 4 FETCH (UID 4 FLAGS ($Important) MODSEQ (${m4}))`]);
    // The FETCH/STORE above enabled CONDSTORE: STORE answers carry MODSEQ now.
    const st = await ok(c, 'STORE 1 +FLAGS (\\Answered)');
    const m1 = modseqOf(st.lines[0]!);
    assert.ok(m1 > m4);
    const search = await ok(c, `SEARCH MODSEQ ${m2 + 1}`);
    // IMAP4rev2: ESEARCH, with the highest modseq of the matches (RFC 7162 §3.1.5).
    assert.match(search.lines[0]!, new RegExp(`^\\* ESEARCH \\(TAG "A\\d+"\\) ALL 1,4 MODSEQ ${m1}$`));
  } finally {
    c.close();
  }
});

test('STORE UNCHANGEDSINCE after another session changed the message: MODIFIED, and the other change arrives with MODSEQ (RFC 7162 §3.1.3 example)', async () => {
  const user = 'conflict@example.test';
  const a = await login(user);
  const b = await login(user);
  try {
    await ok(a, 'SELECT INBOX');
    await ok(b, 'SELECT INBOX');
    const before = await ok(a, 'FETCH 1:2 (MODSEQ)');
    const m1 = modseqOf(before.lines[0]!);
    const m2 = modseqOf(before.lines[1]!);
    await ok(b, 'STORE 1 +FLAGS (\\Seen)');
    const m1b = modseqOf((await ok(b, 'FETCH 1 (MODSEQ)')).lines[0]!);
    assert.ok(m1b > m1);
    // Both messages were read at their modseqs; message 1 changed since, message 2 did not.
    const st = await a.command(`STORE 1:2 (UNCHANGEDSINCE ${Math.max(m1, m2)}) +FLAGS (\\Deleted)`);
    assert.equal(`${st.status} ${st.text}`, 'OK [MODIFIED 1] Conditional STORE failed');
    assert.ok(st.lines.some((l) => /^\* 2 FETCH \(FLAGS \(\\Deleted\) MODSEQ \(\d+\)\)$/.test(l)), JSON.stringify(st.lines));
    // The change made by the other session is reported too (STORE allows flag updates), with its MODSEQ.
    assert.ok(st.lines.includes(`* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (${m1b}))`), JSON.stringify(st.lines));
    const uidSt = await a.command(`UID STORE 1 (UNCHANGEDSINCE ${m1}) +FLAGS (\\Deleted)`);
    assert.equal(`${uidSt.status} ${uidSt.text}`, 'OK [MODIFIED 1] Conditional UID STORE failed');
    // UNCHANGEDSINCE 0 always fails (the message has a modseq).
    assert.equal((await a.command('STORE 3 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)')).text, '[MODIFIED 3] Conditional STORE failed');
  } finally {
    a.close();
    b.close();
  }
});

test("a second session's STORE appears at NOOP as FETCH with UID, FLAGS and MODSEQ once CONDSTORE is enabled; without it, no MODSEQ", async () => {
  const user = 'other@example.test';
  const a = await login(user);
  const plain = await login(user);
  const b = await login(user);
  try {
    const sel = await ok(a, 'SELECT INBOX (CONDSTORE)');
    const h0 = highest(sel);
    await ok(plain, 'SELECT INBOX');
    await ok(b, 'SELECT INBOX');
    const st = await ok(b, 'STORE 3 FLAGS (\\Flagged $Work)');
    assert.deepEqual(st.lines, ['* 3 FETCH (FLAGS (\\Flagged $Work))'], 'b never enabled CONDSTORE');
    const m3 = modseqOf((await ok(b, 'FETCH 3 (MODSEQ)')).lines[0]!);
    assert.ok(m3 > h0);
    const noop = await ok(a, 'NOOP');
    assert.deepEqual(noop.lines, [`* 3 FETCH (UID 3 FLAGS (\\Flagged $Work) MODSEQ (${m3}))`]);
    assert.deepEqual((await ok(plain, 'NOOP')).lines, ['* 3 FETCH (UID 3 FLAGS (\\Flagged $Work))']);
    assert.deepEqual((await ok(a, 'NOOP')).lines, [], 'reported once');
  } finally {
    a.close();
    plain.close();
    b.close();
  }
});

test('ENABLE CONDSTORE in the selected state tells HIGHESTMODSEQ; ENABLE QRESYNC implies CONDSTORE', async () => {
  const user = 'enable@example.test';
  const a = await login(user);
  try {
    const h = highest(await ok(a, 'SELECT INBOX'));
    const en = await ok(a, 'ENABLE CONDSTORE');
    assert.deepEqual(en.lines, ['* ENABLED CONDSTORE', `* OK [HIGHESTMODSEQ ${h}] Highest`]);
    assert.deepEqual((await ok(a, 'ENABLE CONDSTORE')).lines, ['* ENABLED'], 'already enabled');
  } finally {
    a.close();
  }
  const b = await login(user, ['QRESYNC']);
  try {
    await ok(b, 'SELECT INBOX');
    const st = await ok(b, 'STORE 1 +FLAGS (\\Seen)');
    // With QRESYNC: MODSEQ (CONDSTORE) and the UID in every flag-change FETCH (RFC 7162 §3.2.4).
    assert.match(st.lines[0]!, /^\* 1 FETCH \(UID 1 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)$/);
    const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
    try {
      await c.login(user, 'secret');
      assert.deepEqual((await ok(c, 'ENABLE QRESYNC CONDSTORE')).lines, ['* ENABLED QRESYNC CONDSTORE']);
    } finally {
      c.close();
    }
  } finally {
    b.close();
  }
});

test('QRESYNC reselect after another session expunged and flagged: VANISHED (EARLIER) and FETCH (UID FLAGS MODSEQ) (RFC 7162 §3.2.5.1)', async () => {
  const user = 'resync@example.test';
  // The client's cache: UIDVALIDITY, HIGHESTMODSEQ, UIDs 1-4.
  const first = await login(user, ['QRESYNC']);
  const sel = await ok(first, 'SELECT INBOX');
  const uidvalidity = Number(/UIDVALIDITY (\d+)/.exec(sel.lines.find((l) => l.includes('UIDVALIDITY'))!)![1]);
  const h0 = highest(sel);
  assert.ok(sel.lines.findIndex((l) => l.includes('HIGHESTMODSEQ')) > sel.lines.findIndex((l) => l.includes('UIDNEXT')));
  await ok(first, 'LOGOUT');
  first.close();
  // Meanwhile another client expunges 2, flags 3, and a message arrives.
  const other = await login(user);
  await ok(other, 'SELECT INBOX');
  await ok(other, 'STORE 2 +FLAGS (\\Deleted)');
  await ok(other, 'EXPUNGE');
  await ok(other, 'UID STORE 3 +FLAGS (\\Answered)');
  other.close();
  const smtp = await SmtpTestClient.connect({ path: t.socketPath });
  await smtp.sendMail({ from: 'bob@example.test', to: [user], message: 'Subject: new\r\n\r\nnew\r\n' });
  await smtp.quit();

  const c = await login(user, ['QRESYNC']);
  try {
    const r = await ok(c, `SELECT INBOX (QRESYNC (${uidvalidity} ${h0} 1:4))`);
    const h1 = highest(r);
    assert.ok(h1 > h0);
    const i = r.lines.indexOf('* VANISHED (EARLIER) 2');
    assert.ok(i > r.lines.findIndex((l) => l.includes('HIGHESTMODSEQ')), JSON.stringify(r.lines));
    const fetches = r.lines.filter((l) => / FETCH /.test(l));
    assert.equal(fetches.length, 1, 'known UIDs 1:4: the new message (UID 5) is not reported');
    assert.match(fetches[0]!, /^\* 2 FETCH \(UID 3 FLAGS \(\\Answered\) MODSEQ \(\d+\)\)$/);
    assert.ok(r.lines.indexOf(fetches[0]!) > i, 'VANISHED before FETCH');
    assert.ok(r.lines.includes('* 4 EXISTS'));
    // Without known UIDs: every change, the new message too.
    const all = await ok(c, `EXAMINE INBOX (QRESYNC (${uidvalidity} ${h0}))`);
    assert.ok(all.lines.includes('* OK [CLOSED] Previous mailbox closed'));
    assert.ok(all.lines.includes('* VANISHED (EARLIER) 2'));
    assert.deepEqual(
      all.lines.filter((l) => / FETCH /.test(l)).map((l) => l.replace(/MODSEQ \(\d+\)/, 'MODSEQ (n)')),
      ['* 2 FETCH (UID 3 FLAGS (\\Answered) MODSEQ (n))', '* 4 FETCH (UID 5 FLAGS () MODSEQ (n))'],
    );
    // With message sequence match data (syntax only: the change log answers exactly).
    const matched = await ok(c, `SELECT INBOX (QRESYNC (${uidvalidity} ${h0} 1:* (1:4 1:4)))`);
    assert.ok(matched.lines.includes('* VANISHED (EARLIER) 2'));
    // Up to date: nothing to report.
    const same = await ok(c, `SELECT INBOX (QRESYNC (${uidvalidity} ${h1}))`);
    assert.ok(!same.lines.some((l) => /VANISHED|FETCH/.test(l)), JSON.stringify(same.lines));
    // Another UIDVALIDITY: the cache is void, the parameter is ignored (a plain SELECT).
    const stale = await ok(c, `SELECT INBOX (QRESYNC (${uidvalidity + 1} ${h0}))`);
    assert.ok(!stale.lines.some((l) => /VANISHED|FETCH/.test(l)), JSON.stringify(stale.lines));
    for (const bad of [`SELECT INBOX (QRESYNC)`, `SELECT INBOX (QRESYNC (${uidvalidity}))`, `SELECT INBOX (QRESYNC (${uidvalidity} ${h0} 1:4 (1:4)))`, `SELECT INBOX (QRESYNC (0 ${h0}))`]) {
      assert.equal((await c.command(bad)).status, 'BAD', bad);
    }
  } finally {
    c.close();
  }
  // QRESYNC parameter without ENABLE QRESYNC: BAD.
  const d = await login(user);
  try {
    assert.equal((await d.command(`SELECT INBOX (QRESYNC (${uidvalidity} ${h0}))`)).status, 'BAD');
  } finally {
    d.close();
  }
});

test('QRESYNC known UIDs limit what is reported', async () => {
  const user = 'known@example.test';
  const a = await login(user, ['QRESYNC']);
  try {
    const sel = await ok(a, 'SELECT INBOX');
    const uidvalidity = (await mailbox(user)).uidvalidity;
    const h0 = highest(sel);
    await ok(a, 'STORE 1,3 +FLAGS (\\Deleted)');
    await ok(a, 'STORE 4 +FLAGS (\\Seen)');
    await ok(a, 'EXPUNGE');
    const r = await ok(a, `SELECT INBOX (QRESYNC (${uidvalidity} ${h0} 3:*))`);
    assert.ok(r.lines.includes('* VANISHED (EARLIER) 3'), JSON.stringify(r.lines));
    assert.deepEqual(r.lines.filter((l) => / FETCH /.test(l)).map((l) => l.replace(/MODSEQ \(\d+\)/, 'MODSEQ (n)')), ['* 2 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (n))']);
  } finally {
    a.close();
  }
});

test('with QRESYNC enabled, expunges are VANISHED, not EXPUNGE: EXPUNGE, UID EXPUNGE, another session, and EXPUNGE answers HIGHESTMODSEQ', async () => {
  const user = 'vanish@example.test';
  const a = await login(user, ['QRESYNC']);
  const b = await login(user, ['QRESYNC']);
  const plain = await login(user);
  try {
    await ok(a, 'SELECT INBOX');
    await ok(b, 'SELECT INBOX');
    await ok(plain, 'SELECT INBOX');
    await ok(a, 'STORE 1,3 +FLAGS.SILENT (\\Deleted)');
    const ex = await ok(a, 'EXPUNGE');
    assert.deepEqual(ex.lines, ['* VANISHED 1,3']);
    assert.equal(ex.text, `[HIGHESTMODSEQ ${(await mailbox(user)).highestmodseq}] EXPUNGE completed`);
    const noop = await ok(b, 'NOOP');
    assert.equal(noop.lines[0], '* VANISHED 1,3', JSON.stringify(noop.lines));
    assert.deepEqual(
      (await ok(plain, 'NOOP')).lines.filter((l) => /EXPUNGE|VANISHED/.test(l)),
      ['* 3 EXPUNGE', '* 1 EXPUNGE'],
      'a session without QRESYNC still gets EXPUNGE',
    );
    await ok(a, 'UID STORE 4 +FLAGS (\\Deleted)');
    const uex = await ok(a, 'UID EXPUNGE 1:*');
    assert.deepEqual(uex.lines, ['* VANISHED 4']);
    assert.match(uex.text, /^\[HIGHESTMODSEQ \d+\] UID EXPUNGE completed$/);
    const nothing = await ok(a, 'UID EXPUNGE 1:*');
    assert.deepEqual(nothing.lines, []);
    assert.match(nothing.text, /^\[HIGHESTMODSEQ \d+\] /);
    // Not during FETCH by sequence number (RFC 9051 §7.5.1 holds for VANISHED too): at the next NOOP.
    await ok(a, 'STORE 1 +FLAGS (\\Deleted)');
    await ok(a, 'EXPUNGE');
    const f = await ok(b, 'FETCH 1 (FLAGS)');
    assert.ok(!f.lines.some((l) => l.includes('VANISHED')), JSON.stringify(f.lines));
    assert.ok((await ok(b, 'NOOP')).lines.includes('* VANISHED 2,4'));
  } finally {
    a.close();
    b.close();
    plain.close();
  }
});

test('MOVE with QRESYNC: COPYUID, then VANISHED for the moved UIDs', async () => {
  const user = 'move@example.test';
  const a = await login(user, ['QRESYNC']);
  try {
    await ok(a, 'SELECT INBOX');
    const v = (await mailbox(user, 'Archive')).uidvalidity;
    const mv = await ok(a, 'MOVE 2:3 Archive');
    assert.deepEqual(mv.lines, [`* OK [COPYUID ${v} 2:3 1:2] Moved`, '* VANISHED 2:3']);
    const umv = await ok(a, 'UID MOVE 4 Archive');
    assert.deepEqual(umv.lines, [`* OK [COPYUID ${v} 4 3] Moved`, '* VANISHED 4']);
  } finally {
    a.close();
  }
});

test('UID FETCH … (CHANGEDSINCE m VANISHED) reports expunged UIDs of the set as VANISHED (EARLIER) first (RFC 7162 §3.2.6)', async () => {
  const user = 'uidfetch@example.test';
  const a = await login(user, ['QRESYNC']);
  const b = await login(user);
  try {
    const h0 = highest(await ok(a, 'SELECT INBOX'));
    await ok(b, 'SELECT INBOX');
    await ok(b, 'STORE 1,2 +FLAGS (\\Deleted)');
    await ok(b, 'UID EXPUNGE 1');
    await ok(b, 'UID STORE 3 +FLAGS (\\Flagged)');
    // a has not been told about UID 1 yet (no command since): it stays out of VANISHED (EARLIER) and comes as VANISHED after.
    const r = await ok(a, `UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${h0} VANISHED)`);
    assert.ok(!r.lines.some((l) => l.startsWith('* VANISHED (EARLIER)')), JSON.stringify(r.lines));
    assert.ok(r.lines.includes('* VANISHED 1'), JSON.stringify(r.lines));
    const r2 = await ok(a, `UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${h0} VANISHED)`);
    assert.equal(r2.lines[0], '* VANISHED (EARLIER) 1');
    assert.deepEqual(r2.lines.slice(1).map((l) => l.replace(/MODSEQ \(\d+\)/, 'MODSEQ (n)')), ['* 1 FETCH (UID 2 FLAGS (\\Deleted) MODSEQ (n))', '* 2 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ (n))']);
    const narrow = await ok(a, `UID FETCH 2:4 (FLAGS) (CHANGEDSINCE ${h0} VANISHED)`);
    assert.ok(!narrow.lines.some((l) => l.includes('VANISHED')), 'UID 1 is outside the set');
    for (const bad of [`FETCH 1:* (FLAGS) (CHANGEDSINCE ${h0} VANISHED)`, 'UID FETCH 1:* (FLAGS) (VANISHED)']) {
      assert.equal((await a.command(bad)).status, 'BAD', bad);
    }
    // Without ENABLE QRESYNC the modifier is unknown.
    assert.equal((await b.command(`UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${h0} VANISHED)`)).status, 'BAD');
  } finally {
    a.close();
    b.close();
  }
});

test('FETCH that sets \\Seen with QRESYNC: the implicit FLAGS comes with UID and MODSEQ', async () => {
  const a = await login('seen@example.test', ['QRESYNC']);
  try {
    await ok(a, 'SELECT INBOX');
    const r = await ok(a, 'FETCH 1 (RFC822.SIZE BODY[TEXT])');
    assert.match(r.lines.at(-1)!, /^\* 1 FETCH \(RFC822\.SIZE \d+ BODY\[TEXT\] \{8\}\r\nbody 1\r\n UID 1 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)$/);
  } finally {
    a.close();
  }
});
