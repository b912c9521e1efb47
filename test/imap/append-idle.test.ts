import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, inbox, blobText, message, type TestServer } from '../helpers/server.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { parseDateTime } from '../../src/imap/commands/append.ts';

/** APPEND (RFC 9051 §6.3.12, RFC 3502 MULTIAPPEND, RFC 4315 APPENDUID, RFC 7888 LITERAL+) and IDLE (RFC 2177). */

let t: TestServer;
before(async () => {
  t = await startTestServer();
});
after(() => t.stop());

async function login(): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  const r = await c.login();
  assert.equal(r.status, 'OK', r.text);
  return c;
}

/** APPEND with a synchronizing literal: waits for the continuation before sending the message. */
async function appendSync(c: ImapTestClient, mailbox: string, msg: Buffer, extra = ''): Promise<{ status: string; text: string; lines: string[] }> {
  const tag = c.nextTag();
  c.write(`${tag} APPEND ${mailbox}${extra ? ` ${extra}` : ''} {${msg.length}}\r\n`);
  const cont = await c.line();
  if (!cont.startsWith('+')) {
    const [, status, text] = /^\S+ (\S+) ?(.*)$/.exec(cont)!;
    return { status: status!, text: text!, lines: [] };
  }
  // Large messages go in pieces, as a client would write them.
  for (let i = 0; i < msg.length; i += 256 * 1024) c.write(msg.subarray(i, i + 256 * 1024));
  c.write('\r\n');
  return c.read(tag);
}

function appendUid(text: string): { uidvalidity: number; uids: string } {
  const m = /^\[APPENDUID (\d+) ([\d:,]+)\]/.exec(text);
  assert.ok(m, `no APPENDUID in "${text}"`);
  return { uidvalidity: Number(m[1]), uids: m[2]! };
}

test('date-time parsing (RFC 9051 §9 date-time)', () => {
  assert.equal(parseDateTime(' 5-Mar-2024 10:00:00 +0100'), Date.UTC(2024, 2, 5, 9, 0, 0));
  assert.equal(parseDateTime('05-Mar-2024 10:00:00 -0230'), Date.UTC(2024, 2, 5, 12, 30, 0));
  assert.equal(parseDateTime('31-Feb-2024 10:00:00 +0000'), null);
  assert.equal(parseDateTime('5-Mar-2024 10:00 +0000'), null);
  assert.equal(parseDateTime('5-Foo-2024 10:00:00 +0000'), null);
});

test('APPEND with a synchronizing literal, flags and date-time: [APPENDUID], stored as sent', async () => {
  const c = await login();
  try {
    const msg = Buffer.from(message('Appended one', 'Body of the appended message.\r\n'));
    const r = await appendSync(c, 'INBOX', msg, '(\\Seen $Label) " 5-Mar-2024 10:00:00 +0100"');
    assert.equal(r.status, 'OK', r.text);
    const { uidvalidity, uids } = appendUid(r.text);
    const sel = await c.command('SELECT INBOX');
    assert.ok(sel.lines.includes(`* OK [UIDVALIDITY ${uidvalidity}] UIDs valid`), JSON.stringify(sel.lines));
    const rows = await inbox(t, 'alice@example.test');
    const row = rows.find((x) => x.uid === Number(uids))!;
    assert.ok(row);
    assert.deepEqual(row.flags.sort(), ['$Label', '\\Seen']);
    assert.equal(row.internalDate, Date.UTC(2024, 2, 5, 9, 0, 0));
    assert.equal(row.subject, 'Appended one');
    assert.equal(await blobText(t, row.blobHash), msg.toString('latin1'));
  } finally {
    c.close();
  }
});

test('APPEND with LITERAL+ (no continuation), without flags or date; internal date is now', async () => {
  const c = await login();
  try {
    const msg = Buffer.from(message('Appended plus'));
    const before = Date.now();
    const tag = c.nextTag();
    c.write(Buffer.concat([Buffer.from(`${tag} APPEND inbox {${msg.length}+}\r\n`), msg, Buffer.from('\r\n')]));
    const r = await c.read(tag);
    assert.equal(r.status, 'OK', r.text);
    assert.ok(!r.lines.some((l) => l.startsWith('+')), 'no continuation request for LITERAL+');
    const { uids } = appendUid(r.text);
    const row = (await inbox(t, 'alice@example.test')).find((x) => x.uid === Number(uids))!;
    assert.deepEqual(row.flags, []);
    assert.ok(row.internalDate >= before - 1000 && row.internalDate <= Date.now() + 1000);
  } finally {
    c.close();
  }
});

test('MULTIAPPEND (RFC 3502): several messages in one command, one APPENDUID with a UID set', async () => {
  const c = await login();
  try {
    assert.equal((await c.command('CREATE Multi')).status, 'OK');
    const m1 = Buffer.from(message('multi 1'));
    const m2 = Buffer.from(message('multi 2'));
    const m3 = Buffer.from(message('multi 3'));
    const tag = c.nextTag();
    c.write(
      Buffer.concat([
        Buffer.from(`${tag} APPEND Multi (\\Seen) {${m1.length}+}\r\n`),
        m1,
        Buffer.from(` (\\Flagged) "01-Jan-2024 00:00:00 +0000" {${m2.length}+}\r\n`),
        m2,
        Buffer.from(` {${m3.length}+}\r\n`),
        m3,
        Buffer.from('\r\n'),
      ]),
    );
    const r = await c.read(tag);
    assert.equal(r.status, 'OK', r.text);
    assert.equal(appendUid(r.text).uids, '1:3');
    const rows = await inbox(t, 'alice@example.test', 'Multi');
    assert.deepEqual(
      rows.map((x) => [x.subject, x.flags]),
      [
        ['multi 1', ['\\Seen']],
        ['multi 2', ['\\Flagged']],
        ['multi 3', []],
      ],
    );
    assert.equal(rows[1]!.internalDate, Date.UTC(2024, 0, 1));
    // A MULTIAPPEND with a bad second message appends none.
    const t2 = c.nextTag();
    c.write(Buffer.concat([Buffer.from(`${t2} APPEND Multi {${m1.length}+}\r\n`), m1, Buffer.from(` (\\Bogus) {${m2.length}+}\r\n`), m2, Buffer.from('\r\n')]));
    assert.equal((await c.read(t2)).status, 'BAD');
    assert.equal((await inbox(t, 'alice@example.test', 'Multi')).length, 3);
  } finally {
    c.close();
  }
});

test('APPEND to the selected mailbox after another session deleted it: NO [TRYCREATE], nothing left in INBOX; renamed, with a new one of that name: stored in the new one', async () => {
  const a = await login();
  const b = await login();
  try {
    const acct = (await t.server.ctx.data.getAccount('alice@example.test'))!;
    const count = (await inbox(t, 'alice@example.test')).length;
    const msg = Buffer.from(message('Into the selected one'));
    assert.equal((await b.command('CREATE Gone')).status, 'OK');
    assert.equal((await a.command('SELECT Gone')).status, 'OK');
    const ok = await appendSync(a, 'Gone', msg);
    assert.equal(ok.status, 'OK', ok.text);
    assert.equal((await b.command('DELETE Gone')).status, 'OK');
    let r = await appendSync(a, 'Gone', msg);
    assert.equal(r.status, 'NO');
    assert.match(r.text, /^\[TRYCREATE\]/);
    assert.equal((await inbox(t, 'alice@example.test')).length, count, 'the fallback delivery to INBOX was not undone');
    // renamed, and a new mailbox of the old name: the session still has the old one selected
    assert.equal((await b.command('CREATE Moved')).status, 'OK');
    assert.equal((await a.command('SELECT Moved')).status, 'OK');
    assert.equal((await b.command('RENAME Moved Elsewhere')).status, 'OK');
    assert.equal((await b.command('CREATE Moved')).status, 'OK');
    r = await appendSync(a, 'Moved', msg);
    assert.equal(r.status, 'OK', r.text);
    const moved = (await t.server.ctx.data.getMailbox(acct.id, 'Moved'))!;
    // APPENDUID names the mailbox that has the name now (its UIDVALIDITY), where the message is
    assert.equal(r.text.split(' ')[1], String(moved.uidvalidity));
    assert.equal((await t.server.ctx.data.listMessageUids(moved.id)).length, 1);
    const elsewhere = (await t.server.ctx.data.getMailbox(acct.id, 'Elsewhere'))!;
    assert.equal((await t.server.ctx.data.listMessageUids(elsewhere.id)).length, 0);
    // and then deleted too: TRYCREATE, nothing left in INBOX
    assert.equal((await b.command('DELETE Moved')).status, 'OK');
    r = await appendSync(a, 'Moved', msg);
    assert.equal(r.status, 'NO');
    assert.match(r.text, /^\[TRYCREATE\]/);
    assert.equal((await inbox(t, 'alice@example.test')).length, count);
  } finally {
    a.close();
    b.close();
  }
});

test('APPEND to a missing mailbox: NO [TRYCREATE], nothing stored; bad arguments are BAD; empty message NO', async () => {
  const c = await login();
  try {
    const count = (await inbox(t, 'alice@example.test')).length;
    const msg = Buffer.from(message('Nowhere'));
    let tag = c.nextTag();
    c.write(Buffer.concat([Buffer.from(`${tag} APPEND Nowhere {${msg.length}+}\r\n`), msg, Buffer.from('\r\n')]));
    let r = await c.read(tag);
    assert.equal(r.status, 'NO');
    assert.match(r.text, /^\[TRYCREATE\]/);
    const sync = await appendSync(c, 'Nowhere/Deeper', msg);
    assert.equal(sync.status, 'NO');
    assert.match(sync.text, /^\[TRYCREATE\]/);
    assert.equal((await inbox(t, 'alice@example.test')).length, count);

    for (const extra of ['(\\Bogus)', '"not a date"', '(\\Seen) "5-Mar-2024 10:00:00 +0100" (\\Seen)']) {
      tag = c.nextTag();
      c.write(Buffer.concat([Buffer.from(`${tag} APPEND INBOX ${extra} {${msg.length}+}\r\n`), msg, Buffer.from('\r\n')]));
      r = await c.read(tag);
      assert.equal(r.status, 'BAD', extra);
    }
    tag = c.nextTag();
    c.write(`${tag} APPEND INBOX {0+}\r\n\r\n`);
    r = await c.read(tag);
    assert.equal(r.status, 'NO');
    assert.equal((await c.command('APPEND INBOX')).status, 'BAD');
    assert.equal((await inbox(t, 'alice@example.test')).length, count);
    // The connection still works after all that.
    assert.equal((await c.command('NOOP')).status, 'OK');
  } finally {
    c.close();
  }
});

test('APPEND with UTF8 (~{n}) after ENABLE UTF8=ACCEPT (RFC 6855 §4)', async () => {
  const c = await login();
  try {
    assert.equal((await c.command('ENABLE UTF8=ACCEPT')).status, 'OK');
    const msg = Buffer.from(message('Grüße in UTF-8 headers'));
    const tag = c.nextTag();
    c.write(Buffer.concat([Buffer.from(`${tag} APPEND INBOX UTF8 (~{${msg.length}+}\r\n`), msg, Buffer.from(')\r\n')]));
    const r = await c.read(tag);
    assert.equal(r.status, 'OK', r.text);
    const row = (await inbox(t, 'alice@example.test')).find((x) => x.uid === Number(appendUid(r.text).uids))!;
    assert.equal(row.subject, 'Grüße in UTF-8 headers');
  } finally {
    c.close();
  }
});

test('APPEND above APPENDLIMIT: NO [TOOBIG] without a continuation request', async () => {
  const c = await login();
  try {
    const cap = await c.command('CAPABILITY');
    const limit = Number(/APPENDLIMIT=(\d+)/.exec(cap.lines[0]!)![1]);
    const tag = c.nextTag();
    c.write(`${tag} APPEND INBOX {${limit + 1}}\r\n`);
    const l = await c.line();
    assert.match(l, new RegExp(`^${tag} NO \\[TOOBIG\\]`));
    assert.equal((await c.command('NOOP')).status, 'OK');
  } finally {
    c.close();
  }
});

test('a 5 MB APPEND is streamed and stored intact', async () => {
  const c = await login();
  try {
    const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-=-=-=-=-=-=-=\r\n';
    const body = line.repeat(Math.ceil((5 * 1024 * 1024) / line.length));
    const msg = Buffer.from(message('Five megabytes', body));
    const r = await appendSync(c, 'INBOX', msg);
    assert.equal(r.status, 'OK', r.text);
    const { uids } = appendUid(r.text);
    const row = (await inbox(t, 'alice@example.test')).find((x) => x.uid === Number(uids))!;
    assert.equal(row.size, msg.length);
    const stored = await t.server.ctx.blobs.readAll(row.blobHash);
    assert.ok(stored.equals(msg), 'stored bytes equal the sent ones');
  } finally {
    c.close();
  }
});

test('APPEND into the selected mailbox: EXISTS at completion, and another selected session sees it', async () => {
  const a = await login();
  const b = await login();
  try {
    const selA = await a.command('SELECT INBOX');
    const n = Number(/^\* (\d+) EXISTS$/.exec(selA.lines.find((l) => / EXISTS$/.test(l))!)![1]);
    await b.command('SELECT INBOX');
    const msg = Buffer.from(message('Into selected'));
    const r = await appendSync(a, 'INBOX', msg);
    assert.equal(r.status, 'OK', r.text);
    assert.ok(r.lines.includes(`* ${n + 1} EXISTS`), JSON.stringify(r.lines));
    const noop = await b.command('NOOP');
    assert.ok(noop.lines.includes(`* ${n + 1} EXISTS`), JSON.stringify(noop.lines));
  } finally {
    a.close();
    b.close();
  }
});

test('IDLE: a message delivered over SMTP is pushed as EXISTS within 1 s; DONE ends it with OK', async () => {
  const c = await login();
  try {
    const sel = await c.command('SELECT INBOX');
    const n = Number(/^\* (\d+) EXISTS$/.exec(sel.lines.find((l) => / EXISTS$/.test(l))!)![1]);
    const tag = c.nextTag();
    c.write(`${tag} IDLE\r\n`);
    assert.equal(await c.line(), '+ idling');
    const smtp = await SmtpTestClient.connect({ path: t.socketPath });
    const r = await smtp.sendMail({ from: 'bob@example.test', to: ['alice@example.test'], message: message('Wake up') });
    assert.equal(r.data?.code, 250);
    // From the 250 (the delivery is committed) to the push; the SMTP transaction itself is not counted.
    const sent = Date.now();
    const got = await c.waitFor(/^\* \d+ EXISTS$/);
    assert.equal(got.line, `* ${n + 1} EXISTS`);
    assert.ok(Date.now() - sent < 1000, `EXISTS after ${Date.now() - sent} ms`);
    await smtp.quit();
    c.write('DONE\r\n');
    const done = await c.read(tag);
    assert.equal(done.status, 'OK');
    // rev1 clients also get "* n RECENT" after EXISTS (RFC 3501 §7.3.2)
    assert.deepEqual(done.lines.filter((l) => !/^\* \d+ RECENT$/.test(l)), []);
    assert.equal((await c.command('NOOP')).status, 'OK');
  } finally {
    c.close();
  }
});

test('IDLE pushes flag changes (FETCH) and EXPUNGE made elsewhere, and APPEND from another session', async () => {
  const c = await login();
  const other = await login();
  try {
    const sel = await c.command('SELECT INBOX');
    const n = Number(/^\* (\d+) EXISTS$/.exec(sel.lines.find((l) => / EXISTS$/.test(l))!)![1]);
    assert.ok(n >= 2);
    const tag = c.nextTag();
    c.write(`${tag} IDLE\r\n`);
    assert.equal(await c.line(), '+ idling');

    const data = t.server.ctx.data;
    const acct = (await data.getAccount('alice@example.test'))!;
    const info = (await data.getMailbox(acct.id, 'INBOX'))!;
    const uids = (await data.listMessageUids(info.id)).map((m) => m.uid);
    // flags of message 1
    const st = await data.storeFlags(info.id, [uids[0]!], 'add', ['\\Flagged']);
    t.server.ctx.pubsub.publish({ accountId: acct.id, mailboxId: info.id, modseq: st.messages[0]!.modseq });
    const f = await c.waitFor(/FETCH/);
    assert.match(f.line, new RegExp(`^\\* 1 FETCH \\(UID ${uids[0]} FLAGS \\(.*\\\\Flagged.*\\)`));
    assert.ok(f.ms < 1000);
    // expunge the last message
    await data.storeFlags(info.id, [uids.at(-1)!], 'add', ['\\Deleted']);
    const ex = await data.expunge(info.id, [uids.at(-1)!]);
    t.server.ctx.pubsub.publish({ accountId: acct.id, mailboxId: info.id, modseq: ex.expunged[0]!.modseq });
    const e = await c.waitFor(/EXPUNGE/);
    assert.equal(e.line, `* ${n} EXPUNGE`);
    // APPEND by another session
    const msg = Buffer.from(message('From the other session'));
    const r = await appendSync(other, 'INBOX', msg);
    assert.equal(r.status, 'OK', r.text);
    const x = await c.waitFor(/EXISTS/);
    assert.equal(x.line, `* ${n} EXISTS`);
    c.write('DONE\r\n');
    assert.equal((await c.read(tag)).status, 'OK');
  } finally {
    c.close();
    other.close();
  }
});

test('IDLE: a line other than DONE is BAD; IDLE works in the authenticated state; arguments are BAD', async () => {
  const c = await login();
  try {
    let tag = c.nextTag();
    c.write(`${tag} IDLE\r\n`);
    assert.equal(await c.line(), '+ idling');
    c.write('done\r\n');
    assert.equal((await c.read(tag)).status, 'OK', 'DONE is case-insensitive');

    await c.command('SELECT INBOX');
    tag = c.nextTag();
    c.write(`${tag} IDLE\r\n`);
    assert.equal(await c.line(), '+ idling');
    c.write('NOOP\r\n');
    const r = await c.read(tag);
    assert.equal(r.status, 'BAD');
    assert.equal((await c.command('NOOP')).status, 'OK');
    assert.equal((await c.command('IDLE now')).status, 'BAD');
    // IDLE and DONE pipelined in one write
    tag = c.nextTag();
    c.write(`${tag} IDLE\r\nDONE\r\n`);
    assert.equal(await c.line(), '+ idling');
    assert.equal((await c.read(tag)).status, 'OK');
  } finally {
    c.close();
  }
});

test('IDLE before login is BAD; closing the connection while idling is harmless', async () => {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  assert.equal((await c.command('IDLE')).status, 'BAD');
  c.close();
  const d = await login();
  d.write('X1 IDLE\r\n');
  assert.equal(await d.line(), '+ idling');
  d.close();
  // The server is still fine.
  const e = await login();
  assert.equal((await e.command('NOOP')).status, 'OK');
  e.close();
});
