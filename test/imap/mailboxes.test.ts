import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { ImapTestClient, type ImapReply } from '../helpers/imap-client.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { patternMatcher } from '../../src/imap/commands/list.ts';

/** LIST / LSUB / STATUS / CREATE / DELETE / RENAME / SUBSCRIBE / UNSUBSCRIBE over real sockets (RFC 9051 §6.3). */

const USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina'].map((u) => `${u}@example.test`);
let t: TestServer;
before(async () => {
  t = await startTestServer({}, { users: USERS });
});
after(() => t.stop());

async function connect(user: string): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  const r = await c.login(user);
  assert.equal(r.status, 'OK', r.text);
  return c;
}

async function ok(c: ImapTestClient, cmd: string): Promise<string[]> {
  const r = await c.command(cmd);
  assert.equal(r.status, 'OK', `${cmd}: ${r.status} ${r.text}`);
  return r.lines;
}

function expectNo(r: ImapReply, code: string): void {
  assert.equal(r.status, 'NO', r.text);
  assert.match(r.text, new RegExp(`^\\[${code}\\]`));
}

async function deliver(to: string, n: number): Promise<void> {
  const c = await SmtpTestClient.connect({ path: t.socketPath });
  for (let i = 1; i <= n; i++) {
    const r = await c.sendMail({ from: 'bob@example.test', to: [to], message: `From: bob@example.test\r\nSubject: message ${i}\r\n\r\nbody ${i}\r\n` });
    assert.equal(r.data?.code, 250);
  }
  await c.quit();
}

async function accountId(email: string): Promise<number> {
  return (await t.server.ctx.data.getAccount(email))!.id;
}

test('pattern matching: * and %, INBOX case-insensitive', () => {
  const m = (p: string, n: string) => patternMatcher(p)(n);
  assert.ok(m('*', 'a/b/c'));
  assert.ok(m('%', 'a'));
  assert.ok(!m('%', 'a/b'));
  assert.ok(m('a/%', 'a/b'));
  assert.ok(!m('a/%', 'a/b/c'));
  assert.ok(m('a/*', 'a/b/c'));
  assert.ok(m('*c', 'a/b/c'));
  assert.ok(m('a.b', 'a.b') && !m('a.b', 'axb'), 'regex characters are literal');
  assert.ok(m('inbox', 'INBOX'));
  assert.ok(m('Inbox/%', 'INBOX/x'));
  assert.ok(m('inb*', 'INBOX'));
  assert.ok(m('inb*', 'inbound'));
  assert.ok(!m('inb*', 'Inbound'), 'only INBOX is case-insensitive');
  assert.ok(!m('work', 'Work'));
});

test('LIST of a small tree: exact lines, modified UTF-7 for IMAP4rev1, UTF-8 after ENABLE UTF8=ACCEPT', async () => {
  const c = await connect('alice@example.test');
  try {
    await ok(c, 'CREATE "Projekte/&AMQ-rger"');
    await ok(c, 'CREATE Work/Reports/');
    await ok(c, 'CREATE "My Folder"');
    const tree = [
      '* LIST (\\HasNoChildren) "/" INBOX',
      '* LIST (\\HasNoChildren \\Archive) "/" Archive',
      '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
      '* LIST (\\HasNoChildren \\Junk) "/" Junk',
      '* LIST (\\HasNoChildren) "/" "My Folder"',
      '* LIST (\\HasChildren) "/" Projekte',
      '* LIST (\\HasNoChildren) "/" Projekte/&AMQ-rger',
      '* LIST (\\HasNoChildren \\Sent) "/" Sent',
      '* LIST (\\HasNoChildren \\Trash) "/" Trash',
      '* LIST (\\HasChildren) "/" Work',
      '* LIST (\\HasNoChildren) "/" Work/Reports',
    ];
    assert.deepEqual(await ok(c, 'LIST "" "*"'), tree);
    assert.deepEqual(await ok(c, 'LIST "" *'), tree, 'pattern as an atom');
    assert.deepEqual(await ok(c, 'LIST "" Projekte/%'), ['* LIST (\\HasNoChildren) "/" Projekte/&AMQ-rger']);
    // The non-ASCII name given in modified UTF-7 works everywhere.
    assert.deepEqual(await ok(c, 'STATUS "Projekte/&AMQ-rger" (MESSAGES)'), ['* STATUS Projekte/&AMQ-rger (MESSAGES 0)']);
    // Not valid modified UTF-7: BAD.
    assert.equal((await c.command('CREATE "Projekte/Ärger2"')).status, 'BAD');

    assert.deepEqual(await ok(c, 'ENABLE UTF8=ACCEPT'), ['* ENABLED UTF8=ACCEPT']);
    const utf8 = tree.map((l) => l.replace('Projekte/&AMQ-rger', '"Projekte/Ärger"'));
    assert.deepEqual(await ok(c, 'LIST "" "*"'), utf8);
    assert.deepEqual(await ok(c, 'LIST "" "Projekte/Ä*"'), ['* LIST (\\HasNoChildren) "/" "Projekte/Ärger"']);
    assert.deepEqual(await ok(c, 'STATUS "Projekte/Ärger" (MESSAGES)'), ['* STATUS "Projekte/Ärger" (MESSAGES 0)']);
    await ok(c, 'CREATE "Würfel"');
    assert.deepEqual(await ok(c, 'LIST "" W%'), ['* LIST (\\HasChildren) "/" Work', '* LIST (\\HasNoChildren) "/" "Würfel"']);
  } finally {
    c.close();
  }
  // A new IMAP4rev1 session sees the name created in UTF-8 in modified UTF-7.
  const d = await connect('alice@example.test');
  try {
    assert.deepEqual(await ok(d, 'LIST "" W%'), ['* LIST (\\HasChildren) "/" Work', '* LIST (\\HasNoChildren) "/" W&APw-rfel']);
  } finally {
    d.close();
  }
});

test('IMAP4rev2 sessions get UTF-8 names; patterns may be literals', async () => {
  const c = await connect('alice@example.test');
  try {
    assert.deepEqual(await ok(c, 'ENABLE IMAP4rev2'), ['* ENABLED IMAP4rev2']);
    assert.deepEqual(await ok(c, 'LIST "" "Projekte*"'), ['* LIST (\\HasChildren) "/" Projekte', '* LIST (\\HasNoChildren) "/" "Projekte/Ärger"']);
    assert.deepEqual(await ok(c, 'LIST "" {10+}\r\nProjekte/%'), ['* LIST (\\HasNoChildren) "/" "Projekte/Ärger"']);
    await ok(c, 'RENAME "Projekte/Ärger" "Projekte/Ärger & Co"');
    assert.deepEqual(await ok(c, 'LIST "" "Projekte/%"'), ['* LIST (\\HasNoChildren) "/" "Projekte/Ärger & Co"']);
    await ok(c, 'RENAME "Projekte/Ärger & Co" "Projekte/Ärger"');
  } finally {
    c.close();
  }
});

test('LIST wildcards, reference names, INBOX in any case, the delimiter request', async () => {
  const c = await connect('bob@example.test');
  try {
    await ok(c, 'CREATE Work/Reports/2024');
    await ok(c, 'CREATE INBOX/Lists');
    assert.deepEqual(await ok(c, 'LIST "" ""'), ['* LIST (\\Noselect) "/" ""']);
    assert.deepEqual(await ok(c, 'LIST "Work" ""'), ['* LIST (\\Noselect) "/" ""']);
    assert.deepEqual(await ok(c, 'LIST "" %'), [
      '* LIST (\\HasChildren) "/" INBOX',
      '* LIST (\\HasNoChildren \\Archive) "/" Archive',
      '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
      '* LIST (\\HasNoChildren \\Junk) "/" Junk',
      '* LIST (\\HasNoChildren \\Sent) "/" Sent',
      '* LIST (\\HasNoChildren \\Trash) "/" Trash',
      '* LIST (\\HasChildren) "/" Work',
    ]);
    assert.deepEqual(await ok(c, 'LIST "" Work/%'), ['* LIST (\\HasChildren) "/" Work/Reports']);
    assert.deepEqual(await ok(c, 'LIST Work/ %'), ['* LIST (\\HasChildren) "/" Work/Reports']);
    assert.deepEqual(await ok(c, 'LIST Work/ *'), ['* LIST (\\HasChildren) "/" Work/Reports', '* LIST (\\HasNoChildren) "/" Work/Reports/2024']);
    assert.deepEqual(await ok(c, 'LIST "" *2024'), ['* LIST (\\HasNoChildren) "/" Work/Reports/2024']);
    assert.deepEqual(await ok(c, 'LIST "" inbox'), ['* LIST (\\HasChildren) "/" INBOX']);
    assert.deepEqual(await ok(c, 'LIST "" InBox/%'), ['* LIST (\\HasNoChildren) "/" INBOX/Lists']);
    assert.deepEqual(await ok(c, 'LIST "" nothing*'), []);
    assert.equal((await c.command('LIST ""')).status, 'BAD');
    assert.equal((await c.command('LIST "" * EXTRA')).status, 'BAD');
  } finally {
    c.close();
  }
});

test('LIST-EXTENDED: SUBSCRIBED (with \\NonExistent), RECURSIVEMATCH, SPECIAL-USE, RETURN options, several patterns', async () => {
  const c = await connect('carol@example.test');
  try {
    await ok(c, 'CREATE Work/Reports');
    await ok(c, 'SUBSCRIBE Work/Reports');
    await ok(c, 'SUBSCRIBE Gone/Sub');
    await ok(c, 'UNSUBSCRIBE Junk');
    assert.deepEqual(await ok(c, 'LIST (SUBSCRIBED) "" "*"'), [
      '* LIST (\\HasNoChildren \\Subscribed) "/" INBOX',
      '* LIST (\\HasNoChildren \\Archive \\Subscribed) "/" Archive',
      '* LIST (\\HasNoChildren \\Drafts \\Subscribed) "/" Drafts',
      '* LIST (\\NonExistent \\Subscribed) "/" Gone/Sub',
      '* LIST (\\HasNoChildren \\Sent \\Subscribed) "/" Sent',
      '* LIST (\\HasNoChildren \\Trash \\Subscribed) "/" Trash',
      '* LIST (\\HasNoChildren \\Subscribed) "/" Work/Reports',
    ]);
    assert.deepEqual(await ok(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)'), [
      '* LIST (\\HasNoChildren \\Subscribed) "/" INBOX',
      '* LIST (\\HasNoChildren \\Archive \\Subscribed) "/" Archive',
      '* LIST (\\HasNoChildren \\Drafts \\Subscribed) "/" Drafts',
      '* LIST (\\NonExistent) "/" Gone ("CHILDINFO" ("SUBSCRIBED"))',
      '* LIST (\\HasNoChildren \\Sent \\Subscribed) "/" Sent',
      '* LIST (\\HasNoChildren \\Trash \\Subscribed) "/" Trash',
      '* LIST (\\HasChildren) "/" Work ("CHILDINFO" ("SUBSCRIBED"))',
    ]);
    assert.deepEqual(await ok(c, 'LIST "" "%" RETURN (SUBSCRIBED)'), [
      '* LIST (\\HasNoChildren \\Subscribed) "/" INBOX',
      '* LIST (\\HasNoChildren \\Archive \\Subscribed) "/" Archive',
      '* LIST (\\HasNoChildren \\Drafts \\Subscribed) "/" Drafts',
      '* LIST (\\HasNoChildren \\Junk) "/" Junk',
      '* LIST (\\HasNoChildren \\Sent \\Subscribed) "/" Sent',
      '* LIST (\\HasNoChildren \\Trash \\Subscribed) "/" Trash',
      '* LIST (\\HasChildren) "/" Work',
    ]);
    assert.deepEqual(await ok(c, 'LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)'), [
      '* LIST (\\HasNoChildren \\Archive) "/" Archive',
      '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
      '* LIST (\\HasNoChildren \\Junk) "/" Junk',
      '* LIST (\\HasNoChildren \\Sent) "/" Sent',
      '* LIST (\\HasNoChildren \\Trash) "/" Trash',
    ]);
    assert.deepEqual(await ok(c, 'LIST (REMOTE) "" ("inbox" "Work/*" "Sent")'), [
      '* LIST (\\HasNoChildren) "/" INBOX',
      '* LIST (\\HasNoChildren \\Sent) "/" Sent',
      '* LIST (\\HasNoChildren) "/" Work/Reports',
    ]);
    assert.deepEqual(await ok(c, 'LIST () "" "Work"'), ['* LIST (\\HasChildren) "/" Work']);
    assert.equal((await c.command('LIST (RECURSIVEMATCH) "" "*"')).status, 'BAD');
    assert.equal((await c.command('LIST (FOO) "" "*"')).status, 'BAD');
    assert.equal((await c.command('LIST "" "*" RETURN (FOO)')).status, 'BAD');
    assert.equal((await c.command('LIST "" "*" RETURN CHILDREN')).status, 'BAD');
    // IMAP4rev2 clients get \NonExistent in a plain LIST too; LSUB shows the subscription list.
    assert.deepEqual(await ok(c, 'LSUB "" "*"'), [
      '* LSUB () "/" INBOX',
      '* LSUB () "/" Archive',
      '* LSUB () "/" Drafts',
      '* LSUB (\\Noselect) "/" Gone/Sub',
      '* LSUB () "/" Sent',
      '* LSUB () "/" Trash',
      '* LSUB () "/" Work/Reports',
    ]);
    assert.deepEqual(await ok(c, 'LSUB "" "%"'), [
      '* LSUB () "/" INBOX',
      '* LSUB () "/" Archive',
      '* LSUB () "/" Drafts',
      '* LSUB (\\Noselect) "/" Gone',
      '* LSUB () "/" Sent',
      '* LSUB () "/" Trash',
      '* LSUB (\\Noselect) "/" Work',
    ]);
    assert.deepEqual(await ok(c, 'LSUB "" ""'), ['* LSUB (\\Noselect) "/" ""']);
  } finally {
    c.close();
  }
});

test('LIST-STATUS and STATUS items (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ)', async () => {
  await deliver('dave@example.test', 3);
  const id = await accountId('dave@example.test');
  const inbox = (await t.server.ctx.data.getMailbox(id, 'INBOX'))!;
  await t.server.ctx.data.storeFlags(inbox.id, [1], 'add', ['\\Seen']);
  await t.server.ctx.data.storeFlags(inbox.id, [2], 'add', ['\\Deleted']);
  const info = (await t.server.ctx.data.getMailbox(id, 'INBOX'))!;
  assert.equal(info.messages, 3);
  const sent = (await t.server.ctx.data.getMailbox(id, 'Sent'))!;
  const c = await connect('dave@example.test');
  try {
    assert.deepEqual(await ok(c, 'STATUS inbox (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ)'), [
      `* STATUS INBOX (MESSAGES 3 UIDNEXT 4 UIDVALIDITY ${info.uidvalidity} UNSEEN 2 DELETED 1 SIZE ${info.size} RECENT 0 HIGHESTMODSEQ ${info.highestmodseq})`,
    ]);
    assert.ok(info.size > 0 && info.highestmodseq > 0);
    assert.deepEqual(await ok(c, 'STATUS Sent (UNSEEN MESSAGES)'), ['* STATUS Sent (UNSEEN 0 MESSAGES 0)']);
    expectNo(await c.command('STATUS Nope (MESSAGES)'), 'NONEXISTENT');
    assert.equal((await c.command('STATUS INBOX (FOO)')).status, 'BAD');
    assert.equal((await c.command('STATUS INBOX ()')).status, 'BAD');
    assert.equal((await c.command('STATUS INBOX')).status, 'BAD');

    assert.deepEqual(await ok(c, 'LIST "" "%" RETURN (STATUS (MESSAGES UNSEEN))'), [
      '* LIST (\\HasNoChildren) "/" INBOX',
      '* STATUS INBOX (MESSAGES 3 UNSEEN 2)',
      '* LIST (\\HasNoChildren \\Archive) "/" Archive',
      '* STATUS Archive (MESSAGES 0 UNSEEN 0)',
      '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
      '* STATUS Drafts (MESSAGES 0 UNSEEN 0)',
      '* LIST (\\HasNoChildren \\Junk) "/" Junk',
      '* STATUS Junk (MESSAGES 0 UNSEEN 0)',
      '* LIST (\\HasNoChildren \\Sent) "/" Sent',
      '* STATUS Sent (MESSAGES 0 UNSEEN 0)',
      '* LIST (\\HasNoChildren \\Trash) "/" Trash',
      '* STATUS Trash (MESSAGES 0 UNSEEN 0)',
    ]);
    assert.deepEqual(await ok(c, 'LIST (SPECIAL-USE) "" "Sent" RETURN (STATUS (UIDVALIDITY SIZE))'), [
      '* LIST (\\HasNoChildren \\Sent) "/" Sent',
      `* STATUS Sent (UIDVALIDITY ${sent.uidvalidity} SIZE 0)`,
    ]);
    // No STATUS for a name that is no mailbox.
    await ok(c, 'SUBSCRIBE Ghost');
    assert.deepEqual(await ok(c, 'LIST (SUBSCRIBED) "" "Ghost" RETURN (STATUS (MESSAGES))'), ['* LIST (\\NonExistent \\Subscribed) "/" Ghost']);
    assert.equal((await c.command('LIST "" "%" RETURN (STATUS (BOGUS))')).status, 'BAD');
  } finally {
    c.close();
  }
});

test('CREATE: hierarchy, trailing delimiter, ALREADYEXISTS, CREATE-SPECIAL-USE', async () => {
  const c = await connect('erin@example.test');
  try {
    await ok(c, 'CREATE a/b/');
    assert.deepEqual(await ok(c, 'LIST "" a*'), ['* LIST (\\HasChildren) "/" a', '* LIST (\\HasNoChildren) "/" a/b']);
    expectNo(await c.command('CREATE a/b'), 'ALREADYEXISTS');
    expectNo(await c.command('CREATE a'), 'ALREADYEXISTS');
    expectNo(await c.command('CREATE inbox'), 'ALREADYEXISTS');
    await ok(c, 'CREATE inbox/child');
    assert.deepEqual(await ok(c, 'LIST "" INBOX*'), ['* LIST (\\HasChildren) "/" INBOX', '* LIST (\\HasNoChildren) "/" INBOX/child']);
    await ok(c, 'CREATE Receipts (USE (\\Archive))');
    await ok(c, 'CREATE "Old Sent" (USE (\\sent))');
    assert.deepEqual(await ok(c, 'LIST (SPECIAL-USE) "" "*"'), [
      '* LIST (\\HasNoChildren \\Archive) "/" Archive',
      '* LIST (\\HasNoChildren \\Drafts) "/" Drafts',
      '* LIST (\\HasNoChildren \\Junk) "/" Junk',
      '* LIST (\\HasNoChildren \\Sent) "/" "Old Sent"',
      '* LIST (\\HasNoChildren \\Archive) "/" Receipts',
      '* LIST (\\HasNoChildren \\Sent) "/" Sent',
      '* LIST (\\HasNoChildren \\Trash) "/" Trash',
    ]);
    expectNo(await c.command('CREATE Everything (USE (\\All))'), 'USEATTR');
    expectNo(await c.command('CREATE Both (USE (\\Sent \\Trash))'), 'USEATTR');
    assert.deepEqual(await ok(c, 'LIST "" Everything'), [], 'nothing created on USEATTR');
    // Names that cannot be atoms are quoted, or sent as literals (a quote character).
    await ok(c, 'CREATE "Say \\"hi\\""');
    await ok(c, 'CREATE "a b]c"');
    assert.deepEqual(await ok(c, 'LIST "" Say*'), ['* LIST (\\HasNoChildren) "/" {8}\r\nSay "hi"']);
    assert.deepEqual(await ok(c, 'LIST "" "a %"'), ['* LIST (\\HasNoChildren) "/" "a b]c"']);
    await ok(c, 'CREATE "nil"');
    assert.deepEqual(await ok(c, 'LIST "" "nil"'), ['* LIST (\\HasNoChildren) "/" "nil"']);
    assert.equal((await c.command('CREATE x (FOO)')).status, 'BAD');
    assert.equal((await c.command('CREATE x/*')).status, 'BAD');
    assert.equal((await c.command('CREATE "a//b"')).status, 'BAD');
    assert.equal((await c.command('CREATE')).status, 'BAD');
  } finally {
    c.close();
  }
});

test('DELETE and RENAME (children move along, INBOX special case), SUBSCRIBE / UNSUBSCRIBE', async () => {
  await deliver('frank@example.test', 2);
  const c = await connect('frank@example.test');
  try {
    await ok(c, 'CREATE Work/Reports');
    expectNo(await c.command('DELETE Work'), 'HASCHILDREN');
    expectNo(await c.command('DELETE INBOX'), 'CANNOT');
    expectNo(await c.command('DELETE inbox'), 'CANNOT');
    expectNo(await c.command('DELETE Nope'), 'NONEXISTENT');

    await ok(c, 'SUBSCRIBE Work/Reports');
    await ok(c, 'RENAME Work Play');
    assert.deepEqual(await ok(c, 'LIST "" "*" RETURN (SUBSCRIBED)'), [
      '* LIST (\\HasNoChildren \\Subscribed) "/" INBOX',
      '* LIST (\\HasNoChildren \\Archive \\Subscribed) "/" Archive',
      '* LIST (\\HasNoChildren \\Drafts \\Subscribed) "/" Drafts',
      '* LIST (\\HasNoChildren \\Junk \\Subscribed) "/" Junk',
      '* LIST (\\HasChildren) "/" Play',
      '* LIST (\\HasNoChildren \\Subscribed) "/" Play/Reports',
      '* LIST (\\HasNoChildren \\Sent \\Subscribed) "/" Sent',
      '* LIST (\\HasNoChildren \\Trash \\Subscribed) "/" Trash',
    ]);
    expectNo(await c.command('RENAME Nope Other'), 'NONEXISTENT');
    expectNo(await c.command('RENAME Play Sent'), 'ALREADYEXISTS');
    expectNo(await c.command('RENAME Play Play/Deeper'), 'CANNOT');
    await ok(c, 'RENAME Play/Reports New/Deep/Reports');
    assert.deepEqual(await ok(c, 'LIST "" New*'), [
      '* LIST (\\HasChildren) "/" New',
      '* LIST (\\HasChildren) "/" New/Deep',
      '* LIST (\\HasNoChildren) "/" New/Deep/Reports',
    ]);

    // RENAME INBOX: the messages move to the new mailbox, INBOX stays (empty).
    await ok(c, 'RENAME inbox "Old Inbox"');
    assert.deepEqual(await ok(c, 'STATUS INBOX (MESSAGES)'), ['* STATUS INBOX (MESSAGES 0)']);
    assert.deepEqual(await ok(c, 'STATUS "Old Inbox" (MESSAGES)'), ['* STATUS "Old Inbox" (MESSAGES 2)']);

    // Deleting children, then the parent.
    await ok(c, 'DELETE New/Deep/Reports');
    await ok(c, 'DELETE New/Deep');
    await ok(c, 'DELETE New');
    await ok(c, 'DELETE "Old Inbox"');
    assert.deepEqual(await ok(c, 'LIST "" "New*"'), []);
    // Play/Reports was subscribed (and renamed away): the subscription moved with it and stays after DELETE.
    assert.deepEqual(await ok(c, 'LIST (SUBSCRIBED) "" "New*"'), ['* LIST (\\NonExistent \\Subscribed) "/" New/Deep/Reports']);
    await ok(c, 'UNSUBSCRIBE New/Deep/Reports');
    await ok(c, 'UNSUBSCRIBE New/Deep/Reports');
    assert.deepEqual(await ok(c, 'LIST (SUBSCRIBED) "" "New*"'), []);

    // Re-created name: subscribed again because the subscription stayed.
    await ok(c, 'SUBSCRIBE Later');
    await ok(c, 'CREATE Later');
    assert.deepEqual(await ok(c, 'LIST "" Later RETURN (SUBSCRIBED)'), ['* LIST (\\HasNoChildren \\Subscribed) "/" Later']);
    await ok(c, 'UNSUBSCRIBE later');
    await ok(c, 'UNSUBSCRIBE Later');
    assert.deepEqual(await ok(c, 'LIST "" Later RETURN (SUBSCRIBED)'), ['* LIST (\\HasNoChildren) "/" Later']);
    assert.equal((await c.command('SUBSCRIBE')).status, 'BAD');
    assert.equal((await c.command('RENAME a')).status, 'BAD');
  } finally {
    c.close();
  }
});

test('DELETE or RENAME of the selected mailbox leaves the selected state', async () => {
  const c = await connect('gina@example.test');
  try {
    await ok(c, 'CREATE Doomed');
    await ok(c, 'SELECT Doomed');
    assert.deepEqual(await ok(c, 'DELETE Doomed'), ['* OK [CLOSED] Selected mailbox deleted']);
    assert.equal((await c.command('CLOSE')).status, 'BAD', 'no mailbox selected any more');
    await ok(c, 'CREATE Moving/Child');
    await ok(c, 'SELECT Moving/Child');
    assert.deepEqual(await ok(c, 'RENAME Moving Moved'), ['* OK [CLOSED] Selected mailbox renamed']);
    assert.equal((await c.command('CLOSE')).status, 'BAD');
    // Deleting another mailbox keeps the selection.
    await ok(c, 'CREATE Other');
    await ok(c, 'SELECT INBOX');
    assert.deepEqual(await ok(c, 'DELETE Other'), []);
    await ok(c, 'CLOSE');
  } finally {
    c.close();
  }
});

test('a mailbox another session deletes: its messages are reported expunged (not at once during FETCH), then the selection is empty', async () => {
  const a = await connect('gina@example.test');
  const b = await connect('gina@example.test');
  try {
    await ok(a, 'CREATE Shared');
    for (let i = 1; i <= 2; i++) {
      const msg = `Subject: shared ${i}\r\n\r\nbody\r\n`;
      assert.equal((await a.command(`APPEND Shared {${msg.length}+}\r\n${msg}`)).status, 'OK');
    }
    assert.ok((await ok(a, 'SELECT Shared')).includes('* 2 EXISTS'));
    await ok(b, 'DELETE Shared');
    // RFC 9051 §7.5.1: no EXPUNGE during FETCH; the messages' flags are frozen until then.
    const f = await ok(a, 'FETCH 1:2 (FLAGS)');
    assert.equal(f.filter((l) => / EXPUNGE$/.test(l)).length, 0, JSON.stringify(f));
    // NOOP reports both as expunged (RFC 2180 §3.3: a server may expunge instead of disconnecting).
    const n = await ok(a, 'NOOP');
    assert.deepEqual(n.filter((l) => / EXPUNGE$/.test(l)), ['* 2 EXPUNGE', '* 1 EXPUNGE']);
    const after = await a.command('FETCH 1 (FLAGS)');
    assert.equal(after.status, 'BAD', 'no message 1 any more');
    // The name is free again; a new mailbox under it has a new UIDVALIDITY.
    await ok(b, 'CREATE Shared');
    await ok(a, 'UNSELECT');
    assert.ok((await ok(a, 'SELECT Shared')).includes('* 0 EXISTS'));
  } finally {
    a.close();
    b.close();
  }
});

test('RENAME: IMAP4rev2 sessions get the new name in a LIST with OLDNAME (RFC 9051 §6.3.6); rev1 sessions do not', async () => {
  const c = await connect('gina@example.test');
  try {
    await ok(c, 'CREATE Before');
    assert.deepEqual(await ok(c, 'RENAME Before After'), []);
    await ok(c, 'ENABLE IMAP4rev2');
    assert.deepEqual(await ok(c, 'RENAME After "Après coup"'), ['* LIST () "/" "Après coup" ("OLDNAME" (After))']);
    // RENAME INBOX moves the messages and keeps INBOX: no old name to report.
    assert.deepEqual(await ok(c, 'RENAME INBOX "Old mail"'), []);
  } finally {
    c.close();
  }
});

test('mailbox commands need a login', async () => {
  for (const cmd of ['LIST "" *', 'STATUS INBOX (MESSAGES)', 'CREATE x', 'DELETE x', 'RENAME x y', 'SUBSCRIBE x', 'UNSUBSCRIBE x', 'LSUB "" *']) {
    // A fresh connection each: three bad commands before login end one.
    const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
    try {
      const r = await c.command(cmd);
      assert.equal(r.status, 'BAD', cmd);
      assert.match(r.text, /needs a login/);
    } finally {
      c.close();
    }
  }
});
