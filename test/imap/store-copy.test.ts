import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { ImapTestClient, type ImapReply } from '../helpers/imap-client.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';

/** STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE, CHECK (RFC 9051 §6.4; RFC 4315 UIDPLUS; RFC 6851 MOVE; RFC 7162 UNCHANGEDSINCE). */

const USERS = ['store', 'silent', 'readonly', 'condstore', 'copy', 'move', 'junk', 'expunge', 'uidexpunge', 'shared', 'rev1', 'uidset'].map((u) => `${u}@example.test`);

let t: TestServer;
before(async () => {
  t = await startTestServer({}, { users: USERS });
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  for (const u of USERS) {
    for (let i = 1; i <= 4; i++) {
      const r = await c.sendMail({ from: 'bob@example.test', to: [u], message: `From: bob@example.test\r\nSubject: message ${i}\r\n\r\nbody ${i}\r\n` });
      assert.equal(r.data?.code, 250);
    }
  }
  await c.quit();
});
after(() => t.stop());

/** A logged-in IMAP4rev2 session (no \Recent in flags) with INBOX selected. */
async function session(user: string, opts: { rev1?: boolean; examine?: boolean } = {}): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  assert.equal((await c.login(user, 'secret')).status, 'OK');
  if (!opts.rev1) assert.equal((await c.command('ENABLE IMAP4rev2')).status, 'OK');
  const sel = await c.command(`${opts.examine ? 'EXAMINE' : 'SELECT'} INBOX`);
  assert.equal(sel.status, 'OK', sel.text);
  return c;
}

function ok(r: ImapReply, text: string, lines: string[] = [], why?: string): void {
  assert.equal(`${r.status} ${r.text}`, `OK ${text}`, why);
  assert.deepEqual(r.lines, lines, why);
}

async function mailbox(user: string, name: string) {
  const acct = await t.server.ctx.data.getAccount(user);
  return (await t.server.ctx.data.getMailbox(acct!.id, name))!;
}

async function flagsOf(user: string, name = 'INBOX'): Promise<Record<number, string>> {
  const msgs = await t.server.ctx.data.listMessageUids((await mailbox(user, name)).id);
  return Object.fromEntries(msgs.map((m) => [m.uid, m.flags.join(' ')]));
}

test('STORE FLAGS / +FLAGS / -FLAGS: untagged FETCH FLAGS for changed messages, UID with UID STORE; nothing repeated at NOOP', async () => {
  const c = await session('store@example.test');
  try {
    ok(await c.command('STORE 1 +FLAGS (\\Seen)'), 'STORE completed', ['* 1 FETCH (FLAGS (\\Seen))']);
    ok(await c.command('STORE 1:2 +FLAGS (\\seen \\Flagged)'), 'STORE completed', ['* 1 FETCH (FLAGS (\\Seen \\Flagged))', '* 2 FETCH (FLAGS (\\Seen \\Flagged))']);
    ok(await c.command('UID STORE 2:* -FLAGS \\Flagged'), 'UID STORE completed', ['* 2 FETCH (UID 2 FLAGS (\\Seen))']);
    ok(await c.command('STORE 3 FLAGS ($Label1 \\Answered Junk)'), 'STORE completed', ['* 3 FETCH (FLAGS ($Label1 \\Answered Junk))']);
    ok(await c.command('STORE 3 FLAGS ($label1 \\ANSWERED junk)'), 'STORE completed', [], 'same flags in another case: no change');
    ok(await c.command('STORE 4 +FLAGS \\Draft \\Deleted'), 'STORE completed', ['* 4 FETCH (FLAGS (\\Draft \\Deleted))']);
    ok(await c.command('STORE 4 FLAGS ()'), 'STORE completed', ['* 4 FETCH (FLAGS ())']);
    ok(await c.command('UID STORE 99 +FLAGS (\\Seen)'), 'UID STORE completed', [], 'unknown UIDs are ignored');
    ok(await c.command('NOOP'), 'NOOP completed', [], 'own changes are not reported again');
    assert.deepEqual(await flagsOf('store@example.test'), { 1: '\\Seen \\Flagged', 2: '\\Seen', 3: '$Label1 \\Answered Junk', 4: '' });
  } finally {
    c.close();
  }
});

test('UID STORE / UID FETCH with a UID set of gaps, a reversed range, *, a range beyond the last UID and UIDs that do not exist: exactly the listed messages, in order', async () => {
  const smtp = await SmtpTestClient.connect({ path: t.socketPath });
  for (let i = 5; i <= 8; i++) await smtp.sendMail({ from: 'bob@example.test', to: ['uidset@example.test'], message: `Subject: message ${i}\r\n\r\nbody ${i}\r\n` });
  await smtp.quit();
  const c = await session('uidset@example.test');
  try {
    ok(await c.command('UID STORE 2,5 +FLAGS.SILENT (\\Deleted)'), 'UID STORE completed');
    assert.equal((await c.command('EXPUNGE')).status, 'OK');
    // UIDs now 1 3 4 6 7 8 at sequence numbers 1..6
    ok(await c.command('UID FETCH 2,5,9:12 (FLAGS)'), 'UID FETCH completed', [], 'only UIDs that do not exist');
    ok(await c.command('UID STORE 8,4:2,6:6,*:7,30:* +FLAGS ($T)'), 'UID STORE completed', [
      '* 2 FETCH (UID 3 FLAGS ($T))',
      '* 3 FETCH (UID 4 FLAGS ($T))',
      '* 4 FETCH (UID 6 FLAGS ($T))',
      '* 5 FETCH (UID 7 FLAGS ($T))',
      '* 6 FETCH (UID 8 FLAGS ($T))',
    ]);
    ok(await c.command('UID FETCH 1,5:6,8 (FLAGS)'), 'UID FETCH completed', ['* 1 FETCH (UID 1 FLAGS ())', '* 4 FETCH (UID 6 FLAGS ($T))', '* 6 FETCH (UID 8 FLAGS ($T))']);
    ok(await c.command('UID STORE 1:* -FLAGS.SILENT ($T)'), 'UID STORE completed');
    ok(await c.command('UID FETCH 1:* (FLAGS)'), 'UID FETCH completed', [1, 3, 4, 6, 7, 8].map((u, i) => `* ${i + 1} FETCH (UID ${u} FLAGS ())`));
  } finally {
    c.close();
  }
});

test('STORE errors: \\Recent, unknown system flags, bad keywords, sequence numbers beyond the mailbox, syntax', async () => {
  const c = await session('store@example.test');
  try {
    const cases: Array<[string, RegExp]> = [
      ['STORE 1 +FLAGS (\\Recent)', /\\Recent cannot be stored/],
      ['STORE 1 +FLAGS (\\Foo)', /unknown system flag/],
      ['STORE 1 +FLAGS (a]b)', /invalid keyword/],
      ['STORE 1 +FLAGS ("quoted")', /expected a flag/],
      ['STORE 5 +FLAGS (\\Seen)', /no message with sequence number 5/],
      ['STORE 1 FLAGGY (\\Seen)', /expected FLAGS/],
      ['STORE 1 +FLAGS', /expected/],
      ['STORE x +FLAGS (\\Seen)', /Invalid sequence number/],
      ['STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)', /UNCHANGEDSINCE/],
    ];
    for (const [cmd, re] of cases) {
      const r = await c.command(cmd);
      assert.equal(r.status, 'BAD', `${cmd}: ${r.status} ${r.text}`);
      assert.match(r.text, re, cmd);
    }
    assert.equal((await c.command('UNSELECT')).status, 'OK');
    assert.equal((await c.command('STORE 1 +FLAGS (\\Seen)')).status, 'BAD', 'STORE needs a selected mailbox');
  } finally {
    c.close();
  }
});

test('STORE .SILENT sends no FETCH; rev1 sessions see \\Recent in FETCH FLAGS', async () => {
  const c = await session('silent@example.test', { rev1: true });
  try {
    ok(await c.command('STORE 1:2 +FLAGS.SILENT (\\Seen)'), 'STORE completed');
    ok(await c.command('UID STORE 3 FLAGS.SILENT (\\Flagged)'), 'UID STORE completed');
    ok(await c.command('STORE 1 -FLAGS.SILENT (\\Seen)'), 'STORE completed');
    ok(await c.command('STORE 4 +FLAGS (\\Answered)'), 'STORE completed', ['* 4 FETCH (FLAGS (\\Answered \\Recent))']);
    ok(await c.command('NOOP'), 'NOOP completed');
    assert.deepEqual(await flagsOf('silent@example.test'), { 1: '', 2: '\\Seen', 3: '\\Flagged', 4: '\\Answered' });
  } finally {
    c.close();
  }
});

test('read-only (EXAMINE): STORE, EXPUNGE, UID EXPUNGE and MOVE are NO [READ-ONLY]; COPY works', async () => {
  const c = await session('readonly@example.test', { examine: true });
  try {
    for (const cmd of ['STORE 1 +FLAGS (\\Seen)', 'UID STORE 1 +FLAGS (\\Seen)', 'EXPUNGE', 'UID EXPUNGE 1', 'MOVE 1 Archive', 'UID MOVE 1 Archive']) {
      const r = await c.command(cmd);
      assert.equal(r.status, 'NO', cmd);
      assert.match(r.text, /^\[READ-ONLY\] /, cmd);
      assert.deepEqual(r.lines, []);
    }
    const v = (await mailbox('readonly@example.test', 'Archive')).uidvalidity;
    ok(await c.command('COPY 1 Archive'), `[COPYUID ${v} 1 1] COPY completed`);
    assert.deepEqual(await flagsOf('readonly@example.test'), { 1: '', 2: '', 3: '', 4: '' });
  } finally {
    c.close();
  }
});

test('CONDSTORE UNCHANGEDSINCE (RFC 7162 §3.1.3): MODIFIED for messages changed since; MODSEQ in FETCH, even with .SILENT', async () => {
  const c = await session('condstore@example.test');
  try {
    ok(await c.command('STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)'), '[MODIFIED 1:3] Conditional STORE failed');
    const s1 = await c.command('STORE 2 +FLAGS.SILENT (\\Seen)');
    assert.equal(s1.status, 'OK');
    assert.equal(s1.lines.length, 1);
    const m = /^\* 2 FETCH \(FLAGS \(\\Seen\) MODSEQ \((\d+)\)\)$/.exec(s1.lines[0]!);
    assert.ok(m, s1.lines[0]);
    const modseq = Number(m[1]);
    const s2 = await c.command(`STORE 1:2 (UNCHANGEDSINCE ${modseq - 1}) +FLAGS (\\Answered)`);
    assert.equal(`${s2.status} ${s2.text}`, 'OK [MODIFIED 2] Conditional STORE failed');
    assert.deepEqual(s2.lines, [`* 1 FETCH (FLAGS (\\Answered) MODSEQ (${modseq + 1}))`]);
    const s3 = await c.command(`UID STORE 2:3 (UNCHANGEDSINCE ${modseq}) +FLAGS (\\Flagged)`);
    assert.equal(`${s3.status} ${s3.text}`, 'OK UID STORE completed');
    assert.deepEqual(s3.lines, [`* 2 FETCH (UID 2 FLAGS (\\Seen \\Flagged) MODSEQ (${modseq + 2}))`, `* 3 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ (${modseq + 3}))`]);
    const s4 = await c.command(`UID STORE 1:3 (UNCHANGEDSINCE ${modseq + 1}) -FLAGS (\\Flagged)`);
    assert.equal(`${s4.status} ${s4.text}`, 'OK [MODIFIED 2:3] Conditional UID STORE failed');
    assert.deepEqual(s4.lines, [], 'message 1 passed but had no \\Flagged: unchanged');
    ok(await c.command('NOOP'), 'NOOP completed');
  } finally {
    c.close();
  }
});

test('COPY / UID COPY with COPYUID (RFC 4315); missing target is NO [TRYCREATE]; the copies get the flags', async () => {
  const c = await session('copy@example.test');
  try {
    const v = (await mailbox('copy@example.test', 'Archive')).uidvalidity;
    ok(await c.command('STORE 2 +FLAGS (\\Flagged)'), 'STORE completed', ['* 2 FETCH (FLAGS (\\Flagged))']);
    ok(await c.command('COPY 1:2 Archive'), `[COPYUID ${v} 1:2 1:2] COPY completed`);
    ok(await c.command('UID COPY 4,1,3 Archive'), `[COPYUID ${v} 1,3:4 3:5] UID COPY completed`);
    ok(await c.command('UID COPY 77 Archive'), 'UID COPY completed', [], 'nothing copied: no COPYUID');
    const missing = await c.command('COPY 1 Nowhere');
    assert.equal(missing.status, 'NO');
    assert.match(missing.text, /^\[TRYCREATE\] /);
    assert.equal((await c.command('COPY 9 Archive')).status, 'BAD');
    assert.deepEqual(await flagsOf('copy@example.test', 'Archive'), { 1: '', 2: '\\Flagged', 3: '', 4: '', 5: '' });
    // Copying into the selected mailbox itself: the new messages arrive as EXISTS.
    const self = await c.command('COPY 1 INBOX');
    assert.equal(`${self.status} ${self.text}`, `OK [COPYUID ${(await mailbox('copy@example.test', 'INBOX')).uidvalidity} 1 5] COPY completed`);
    assert.deepEqual(self.lines, ['* 5 EXISTS']);
  } finally {
    c.close();
  }
});

test('MOVE / UID MOVE (RFC 6851): untagged OK [COPYUID] first, then EXPUNGE highest first; the view is renumbered', async () => {
  const c = await session('move@example.test');
  try {
    const v = (await mailbox('move@example.test', 'Archive')).uidvalidity;
    const r = await c.command('MOVE 2:3 Archive');
    ok(r, 'MOVE completed', [`* OK [COPYUID ${v} 2:3 1:2] Moved`, '* 3 EXPUNGE', '* 2 EXPUNGE']);
    // INBOX is now UIDs 1, 4: sequence number 2 is UID 4.
    ok(await c.command('STORE 2 +FLAGS (\\Seen)'), 'STORE completed', ['* 2 FETCH (FLAGS (\\Seen))']);
    ok(await c.command('UID MOVE 4,1 Archive'), 'UID MOVE completed', [`* OK [COPYUID ${v} 1,4 3:4] Moved`, '* 2 EXPUNGE', '* 1 EXPUNGE']);
    ok(await c.command('NOOP'), 'NOOP completed');
    assert.deepEqual(await flagsOf('move@example.test'), {});
    assert.deepEqual(await flagsOf('move@example.test', 'Archive'), { 1: '', 2: '', 3: '', 4: '\\Seen' });
    assert.equal((await c.command('SELECT Archive')).status, 'OK');
    const nowhere = await c.command('MOVE 1 Nowhere');
    assert.equal(nowhere.status, 'NO');
    assert.match(nowhere.text, /^\[TRYCREATE\] /);
    const same = await c.command('MOVE 1 Archive');
    assert.equal(same.status, 'NO');
    assert.match(same.text, /^\[CANNOT\] /);
  } finally {
    c.close();
  }
});

test('moving or copying into \\Junk records "spam", out of it "ham" (not into \\Trash): training signals for the spam filter', async () => {
  const c = await session('junk@example.test');
  try {
    const acct = (await t.server.ctx.data.getAccount('junk@example.test'))!;
    const mine = async () => (await t.server.ctx.data.trainingSignals()).filter((x) => x.accountId === acct.id).map((x) => [x.verdict, x.source, x.blobHash]);
    const hashOf = async (box: string, uid: number) => (await t.server.ctx.data.listMessageUids((await mailbox('junk@example.test', box)).id)).find((m) => m.uid === uid)!.blobHash;
    const [h1, h2, h3] = [await hashOf('INBOX', 1), await hashOf('INBOX', 2), await hashOf('INBOX', 3)];
    assert.equal((await c.command('MOVE 1:2 Junk')).status, 'OK');
    assert.equal((await c.command('COPY 1 Junk')).status, 'OK');
    assert.equal((await c.command('MOVE 1 Archive')).status, 'OK', 'INBOX → Archive: no signal');
    assert.deepEqual(await mine(), [
      ['spam', 'imap', h1],
      ['spam', 'imap', h2],
      ['spam', 'imap', h3],
    ]);
    assert.equal((await c.command('SELECT Junk')).status, 'OK');
    assert.equal((await c.command('UID MOVE 2 INBOX')).status, 'OK');
    assert.equal((await c.command('UID MOVE 1 Trash')).status, 'OK', 'thrown away from Junk: still spam, no signal');
    assert.equal((await c.command('UID COPY 3 Archive')).status, 'OK');
    assert.deepEqual((await mine()).slice(3), [
      ['ham', 'imap', h2],
      ['ham', 'imap', h3],
    ]);
  } finally {
    c.close();
  }
});

test('EXPUNGE removes \\Deleted messages with EXPUNGE responses, highest first; CHECK is a NOOP', async () => {
  const c = await session('expunge@example.test');
  try {
    ok(await c.command('EXPUNGE'), 'EXPUNGE completed', [], 'nothing deleted');
    ok(await c.command('STORE 1,3:4 +FLAGS.SILENT (\\Deleted)'), 'STORE completed');
    ok(await c.command('EXPUNGE'), 'EXPUNGE completed', ['* 4 EXPUNGE', '* 3 EXPUNGE', '* 1 EXPUNGE']);
    ok(await c.command('STORE 1 +FLAGS (\\Seen)'), 'STORE completed', ['* 1 FETCH (FLAGS (\\Seen))'], 'UID 2 is sequence number 1 now');
    ok(await c.command('CHECK'), 'CHECK completed');
    assert.equal((await c.command('EXPUNGE 1')).status, 'BAD');
    assert.deepEqual(await flagsOf('expunge@example.test'), { 2: '\\Seen' });
  } finally {
    c.close();
  }
});

test('UID EXPUNGE (RFC 4315) removes only the named \\Deleted messages', async () => {
  const c = await session('uidexpunge@example.test');
  try {
    ok(await c.command('STORE 1:3 +FLAGS.SILENT (\\Deleted)'), 'STORE completed');
    ok(await c.command('UID EXPUNGE 2:4'), 'UID EXPUNGE completed', ['* 3 EXPUNGE', '* 2 EXPUNGE']);
    ok(await c.command('UID EXPUNGE 3'), 'UID EXPUNGE completed', [], 'gone already');
    ok(await c.command('EXPUNGE'), 'EXPUNGE completed', ['* 1 EXPUNGE']);
    assert.equal((await c.command('UID EXPUNGE')).status, 'BAD');
    assert.deepEqual(await flagsOf('uidexpunge@example.test'), { 4: '' });
  } finally {
    c.close();
  }
});

test("two sessions: B sees A's flag changes and expunges at NOOP, but no EXPUNGE while answering STORE", async () => {
  const a = await session('shared@example.test');
  const b = await session('shared@example.test');
  try {
    ok(await a.command('STORE 1 +FLAGS (\\Flagged)'), 'STORE completed', ['* 1 FETCH (FLAGS (\\Flagged))']);
    ok(await b.command('NOOP'), 'NOOP completed', ['* 1 FETCH (UID 1 FLAGS (\\Flagged))']);
    ok(await b.command('NOOP'), 'NOOP completed', [], 'reported once');
    ok(await a.command('STORE 2 +FLAGS.SILENT (\\Deleted)'), 'STORE completed');
    ok(await a.command('EXPUNGE'), 'EXPUNGE completed', ['* 2 EXPUNGE']);
    ok(await a.command('NOOP'), 'NOOP completed', [], 'A told its client already');
    // B still numbers UID 3 as 3; its STORE may carry A's flag change but no EXPUNGE.
    ok(await b.command('STORE 3 +FLAGS (\\Seen)'), 'STORE completed', ['* 3 FETCH (FLAGS (\\Seen))']);
    ok(await b.command('STORE 2 +FLAGS (\\Answered)'), 'STORE completed', [], 'a message expunged elsewhere: nothing to change');
    ok(await b.command('NOOP'), 'NOOP completed', ['* 2 EXPUNGE']);
    ok(await b.command('STORE 2 +FLAGS (\\Answered)'), 'STORE completed', ['* 2 FETCH (FLAGS (\\Seen \\Answered))'], 'UID 3 is number 2 now');
    ok(await a.command('NOOP'), 'NOOP completed', ['* 2 FETCH (UID 3 FLAGS (\\Seen \\Answered))']);
    // MOVE in A: B hears of it at NOOP.
    ok(await a.command('MOVE 1 Archive'), 'MOVE completed', [`* OK [COPYUID ${(await mailbox('shared@example.test', 'Archive')).uidvalidity} 1 1] Moved`, '* 1 EXPUNGE']);
    ok(await b.command('CHECK'), 'CHECK completed', ['* 1 EXPUNGE']);
  } finally {
    a.close();
    b.close();
  }
});

test('the database writer thread gone: STORE and EXPUNGE answer NO [UNAVAILABLE], reads and the session go on', async () => {
  // The writer thread is the SQLite backend's (PostgreSQL writes from the pool).
  const s = await startTestServer({ store: { backend: 'sqlite' } });
  const smtp = await SmtpTestClient.connect({ path: s.socketPath });
  assert.equal((await smtp.sendMail({ from: 'bob@example.test', to: ['alice@example.test'], message: 'Subject: kept\r\n\r\nbody\r\n' })).data?.code, 250);
  await smtp.quit();
  const c = await ImapTestClient.connect(s.imapsPort, { tls: true });
  try {
    assert.equal((await c.login('alice@example.test', 'secret')).status, 'OK');
    assert.equal((await c.command('SELECT INBOX')).status, 'OK');
    const thread = (s.server.ctx.data as unknown as { fastImap: { worker: { terminate(): Promise<number> } } }).fastImap;
    await thread.worker.terminate();
    for (const cmd of ['STORE 1 +FLAGS (\\Seen)', 'EXPUNGE']) {
      const r = await c.command(cmd);
      assert.equal(r.status, 'NO', `${cmd}: ${r.status} ${r.text}`);
      assert.match(r.text, /^\[UNAVAILABLE\] .*writer thread stopped.*restart postern/);
    }
    const f = await c.command('FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
    assert.equal(f.status, 'OK', 'reads still work');
    assert.doesNotMatch(f.lines.join(' '), /\\Seen/, 'nothing was stored');
  } finally {
    c.close();
    await s.stop();
  }
});
