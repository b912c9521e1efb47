import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { openPostgresStores, openStores, type Stores } from '../../src/store/open.ts';
import type { DataStore, NewMessage } from '../../src/store/data-store.ts';
import { tempDir } from '../helpers/server.ts';
import { dropTestStore, pgStore, PG_URL } from '../helpers/backend.ts';

/**
 * The store's IMAP mailbox operations (issue #6), on SQLite always and on
 * PostgreSQL when one is given (POSTERN_TEST_PG_URL or POSTERN_TEST_PG), like
 * conformance.test.ts. `open()` gives two handles on one store where the backend
 * allows concurrent writers from one process (PostgreSQL: two nodes); on SQLite
 * the second writer is the delivery thread (the server's setup).
 */
interface Backend {
  name: string;
  open(): Promise<{ a: Stores; b: Stores; cleanup(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 'sqlite',
    async open() {
      const dir = tempDir('postern-imapops-');
      const a = await openStores(path.join(dir, 'data'), { writerThread: true, inlineMaxSize: 1024 });
      return { a, b: a, cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }) };
    },
  },
];
if (PG_URL) {
  backends.push({
    name: 'postgres',
    async open() {
      const st = pgStore();
      const opts = { url: st.url, schema: st.schema, poolSize: 4 };
      const a = await openPostgresStores(opts, 1024, undefined, false);
      const b = await openPostgresStores(opts, 1024, undefined, false);
      return { a, b, cleanup: () => dropTestStore(st) };
    },
  });
}

let seq = 0;
function message(deliveries: NewMessage['deliveries'], body = `message ${++seq}`): NewMessage {
  const bytes = Buffer.from(`Subject: ${body}\r\n\r\n${body}\r\n`);
  return {
    blobHash: `hash-${body}`,
    size: bytes.length,
    blobData: bytes,
    meta: '{}',
    searchText: body,
    internalDate: 1_700_000_000_000 + seq,
    subject: body,
    from: 'a@x.test',
    date: null,
    messageId: `<${seq}@x.test>`,
    deliveries,
    queue: null,
  };
}

async function deliver(data: DataStore, accountId: number, n: number, mailbox = 'INBOX', flags: string[] = []) {
  return (await data.addMessages(Array.from({ length: n }, () => message([{ accountId, mailbox, flags }])))).map((x) => x[0]!);
}

async function setup(data: DataStore) {
  await data.ensureDomain('imap.test');
  return data.addAccount(`u${++seq}@imap.test`, null);
}

/** Invariants of the modseq model that every operation must keep (schema.ts). */
async function checkChangeLog(data: DataStore, accountId: number) {
  const acct = await data.db.selectFrom('accounts').select('modseq').where('id', '=', accountId).executeTakeFirstOrThrow();
  const changes = await data.db.selectFrom('changes').selectAll().where('account_id', '=', accountId).orderBy('modseq').orderBy('id').execute();
  const top = Math.max(0, ...changes.map((c) => Number(c.modseq)));
  assert.equal(Number(acct.modseq), top, 'account modseq = highest change');
  for (const mb of await data.listMailboxes(accountId)) {
    const mine = changes.filter((c) => c.mailbox_id === mb.id);
    assert.equal(mb.highestmodseq, Math.max(0, ...mine.map((c) => Number(c.modseq))), `HIGHESTMODSEQ of ${mb.name}`);
    const perMessage = mine.filter((c) => c.message_id !== null).map((c) => Number(c.modseq));
    assert.equal(new Set(perMessage).size, perMessage.length, `one modseq per message change in ${mb.name}`);
    const msgs = await data.listMessageUids(mb.id);
    assert.equal(mb.messages, msgs.length);
    assert.ok(msgs.every((m) => m.uid < mb.uidnext), 'UIDs below UIDNEXT');
    for (const m of msgs) {
      const last = mine.filter((c) => c.message_id === m.id && (c.kind === 'add' || c.kind === 'flags')).at(-1);
      assert.equal(Number(last?.modseq), m.modseq, `message ${mb.name}:${m.uid} has the modseq of its last change`);
      assert.equal(Number(last?.uid), m.uid);
    }
  }
}

const code = (c: string) => (err: unknown) => (err as { code?: string }).code === c;

for (const backend of backends) {
  test(`imap ops (${backend.name}): create nested, list with counts, rename with children, delete rules`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      const u = await setup(a.data);
      await deliver(a.data, u.id, 2, 'INBOX');
      await deliver(a.data, u.id, 1, 'INBOX', ['\\Seen']);
      const created = await a.data.createMailbox(u.id, 'Work/Projects/2024/');
      assert.equal(created.name, 'Work/Projects/2024');
      assert.equal(created.subscribed, false, 'CREATE does not subscribe');
      await assert.rejects(b.data.createMailbox(u.id, 'Work/Projects'), code('ALREADY_EXISTS'));
      await assert.rejects(b.data.createMailbox(u.id, 'inbox'), code('ALREADY_EXISTS'));
      await assert.rejects(b.data.createMailbox(u.id, 'a//b'), code('INVALID'));
      await assert.rejects(b.data.createMailbox(u.id, 'a*'), code('INVALID'));
      const unicode = await a.data.createMailbox(u.id, 'Entwürfe/日本');
      assert.equal((await b.data.getMailbox(u.id, 'Entwürfe/日本'))?.id, unicode.id);
      const inboxChild = await a.data.createMailbox(u.id, 'inbox/Sub');
      assert.equal(inboxChild.name, 'INBOX/Sub', 'INBOX is case-insensitive as the first level');

      const list = await b.data.listMailboxes(u.id);
      assert.deepEqual(
        list.map((m) => m.name),
        ['INBOX', 'Archive', 'Drafts', 'Entwürfe', 'Entwürfe/日本', 'INBOX/Sub', 'Junk', 'Sent', 'Trash', 'Work', 'Work/Projects', 'Work/Projects/2024'],
      );
      const inbox = list.find((m) => m.name === 'INBOX')!;
      assert.equal(inbox.messages, 3);
      assert.equal(inbox.unseen, 2);
      assert.equal(inbox.uidnext, 4);
      assert.ok(inbox.size > 0);
      assert.equal(inbox.subscribed, true, 'default mailboxes are subscribed');
      assert.equal(list.find((m) => m.name === 'Sent')!.specialUse, '\\Sent');
      assert.equal(new Set(list.filter((m) => !['INBOX', 'Archive', 'Drafts', 'Junk', 'Sent', 'Trash'].includes(m.name)).map((m) => m.uidvalidity)).size, 6, 'a new UIDVALIDITY per created mailbox');

      // RENAME moves the inferiors along, keeps messages and UIDs, new UIDVALIDITY.
      const proj = (await a.data.getMailbox(u.id, 'Work/Projects'))!;
      await deliver(a.data, u.id, 2, 'Work/Projects');
      await assert.rejects(a.data.renameMailbox(u.id, 'Work', 'Work/Deeper'), code('INVALID'));
      await assert.rejects(a.data.renameMailbox(u.id, 'Work', 'Sent'), code('ALREADY_EXISTS'));
      await assert.rejects(a.data.renameMailbox(u.id, 'Nope', 'Nope2'), code('NOT_FOUND'));
      const renamed = await a.data.renameMailbox(u.id, 'Work', 'Old/Job');
      assert.equal(renamed.name, 'Old/Job');
      const after = await b.data.listMailboxes(u.id);
      assert.deepEqual(after.filter((m) => m.name.startsWith('Old') || m.name.startsWith('Work')).map((m) => m.name), ['Old', 'Old/Job', 'Old/Job/Projects', 'Old/Job/Projects/2024']);
      const moved = after.find((m) => m.name === 'Old/Job/Projects')!;
      assert.equal(moved.id, proj.id);
      assert.equal(moved.messages, 2);
      assert.notEqual(moved.uidvalidity, proj.uidvalidity);
      assert.deepEqual((await a.data.listMessageUids(moved.id)).map((m) => m.uid), [1, 2]);

      // DELETE: INBOX never, not with children, then leaf first.
      await assert.rejects(a.data.deleteMailbox(u.id, 'inbox'), code('INVALID'));
      await assert.rejects(a.data.deleteMailbox(u.id, 'Old/Job'), code('HAS_CHILDREN'));
      await assert.rejects(a.data.deleteMailbox(u.id, 'Missing'), code('NOT_FOUND'));
      await a.data.deleteMailbox(u.id, 'Old/Job/Projects/2024');
      await a.data.deleteMailbox(u.id, 'Old/Job/Projects');
      assert.equal(await b.data.getMailbox(u.id, 'Old/Job/Projects'), null);
      assert.equal((await a.data.db.selectFrom('messages').select('id').where('mailbox_id', '=', proj.id).execute()).length, 0, 'its messages are gone');
      // Recreated under the same name: a new UIDVALIDITY, UIDs from 1.
      const again = await a.data.createMailbox(u.id, 'Old/Job/Projects');
      assert.ok(again.uidvalidity > moved.uidvalidity, 'never an old UIDVALIDITY again');
      assert.equal(again.uidnext, 1);
      await checkChangeLog(a.data, u.id);
    } finally {
      await a.close();
      if (b !== a) await b.close();
      await cleanup();
    }
  });

  test(`imap ops (${backend.name}): rename INBOX moves its messages into a new mailbox and leaves INBOX empty`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      const u = await setup(a.data);
      const added = await deliver(a.data, u.id, 3, 'INBOX', ['\\Flagged']);
      await a.data.createMailbox(u.id, 'INBOX/Child');
      const inbox = (await a.data.getMailbox(u.id, 'INBOX'))!;
      const hm = inbox.highestmodseq;
      const old = await b.data.renameMailbox(u.id, 'INBOX', 'Old Mail');
      assert.equal(old.name, 'Old Mail');
      assert.equal(old.messages, 3);
      const oldMsgs = await a.data.listMessageUids(old.id);
      assert.deepEqual(oldMsgs.map((m) => m.uid), [1, 2, 3]);
      assert.deepEqual(oldMsgs.map((m) => m.id), added.map((x) => x.messageId), 'message ids stay (JMAP)');
      assert.ok(oldMsgs.every((m) => m.flags.includes('\\Flagged')));
      const inbox2 = (await a.data.getMailbox(u.id, 'INBOX'))!;
      assert.equal(inbox2.id, inbox.id);
      assert.equal(inbox2.messages, 0);
      assert.equal(inbox2.uidvalidity, inbox.uidvalidity, 'INBOX itself is not recreated');
      assert.ok(await a.data.getMailbox(u.id, 'INBOX/Child'), "INBOX's inferiors stay");
      const ch = await a.data.changesSince(u.id, inbox.id, hm);
      assert.deepEqual(ch.vanished, [1, 2, 3]);
      // UIDs are never reused: the next delivery to INBOX gets 4.
      const [next] = await deliver(b.data, u.id, 1);
      assert.equal(next!.uid, 4);
      await checkChangeLog(a.data, u.id);
    } finally {
      await a.close();
      if (b !== a) await b.close();
      await cleanup();
    }
  });

  test(`imap ops (${backend.name}): subscriptions outlive and precede their mailboxes`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      const u = await setup(a.data);
      await a.data.subscribe(u.id, 'Later/On');
      assert.deepEqual((await b.data.listSubscriptions(u.id)).filter((s) => s.name.startsWith('Later')), [{ name: 'Later/On', exists: false }]);
      const mb = await b.data.createMailbox(u.id, 'Later/On');
      assert.equal(mb.subscribed, true, 'a subscription made before CREATE holds');
      assert.equal((await a.data.getMailbox(u.id, 'Later'))!.subscribed, false);
      assert.deepEqual((await a.data.listSubscriptions(u.id)).filter((s) => s.name.startsWith('Later')), [{ name: 'Later/On', exists: true }]);
      await a.data.deleteMailbox(u.id, 'Later/On');
      assert.deepEqual((await a.data.listSubscriptions(u.id)).filter((s) => s.name.startsWith('Later')), [{ name: 'Later/On', exists: false }], 'DELETE leaves the subscription');
      assert.equal(await a.data.unsubscribe(u.id, 'Later/On'), true);
      assert.equal(await a.data.unsubscribe(u.id, 'Later/On'), false);
      assert.equal(await a.data.unsubscribe(u.id, 'Trash'), true);
      assert.equal((await a.data.getMailbox(u.id, 'Trash'))!.subscribed, false);
      await a.data.subscribe(u.id, 'Trash');
      await a.data.subscribe(u.id, 'Trash');
      assert.deepEqual((await a.data.listSubscriptions(u.id)).map((s) => s.name), ['INBOX', 'Archive', 'Drafts', 'Junk', 'Sent', 'Trash']);
      // The subscription follows a renamed mailbox.
      await a.data.renameMailbox(u.id, 'Trash', 'Bin');
      assert.deepEqual((await a.data.listSubscriptions(u.id)).map((s) => s.name), ['INBOX', 'Archive', 'Bin', 'Drafts', 'Junk', 'Sent']);
    } finally {
      await a.close();
      if (b !== a) await b.close();
      await cleanup();
    }
  });

  test(`imap ops (${backend.name}): STORE modes, UNCHANGEDSINCE, modseqs and changesSince`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      const u = await setup(a.data);
      await deliver(a.data, u.id, 5, 'INBOX', ['\\Seen', '$Label']);
      const inbox = (await a.data.getMailbox(u.id, 'INBOX'))!;
      const before = await a.data.listMessageUids(inbox.id);
      const hm0 = inbox.highestmodseq;

      const r1 = await b.data.storeFlags(inbox.id, [1, 2, 3, 99], 'add', ['\\flagged', '\\Recent', '\\Seen']);
      assert.deepEqual(r1.modified, []);
      assert.deepEqual(r1.messages.map((m) => m.uid), [1, 2, 3], 'UIDs not in the mailbox are skipped');
      assert.deepEqual(r1.messages[0]!.flags, ['\\Seen', '$Label', '\\Flagged'], 'canonical case, no \\Recent');
      assert.deepEqual(r1.messages.map((m) => m.modseq), [hm0 + 1, hm0 + 2, hm0 + 3], 'one modseq per changed message');

      // A store that changes nothing keeps the modseq.
      const r2 = await a.data.storeFlags(inbox.id, [1, 4], 'add', ['\\Flagged']);
      assert.deepEqual(r2.messages.map((m) => [m.uid, m.changed, m.modseq]), [[1, false, hm0 + 1], [4, true, hm0 + 4]]);

      const r3 = await a.data.storeFlags(inbox.id, [1, 2], 'remove', ['\\SEEN', '$label']);
      assert.deepEqual(r3.messages.map((m) => m.flags), [['\\Flagged'], ['\\Flagged']]);
      const r4 = await a.data.storeFlags(inbox.id, [5], 'set', ['\\Answered', 'Custom']);
      assert.deepEqual(r4.messages[0]!.flags, ['\\Answered', 'Custom']);

      // RFC 7162 §3.1.3: messages changed after UNCHANGEDSINCE fail the test.
      const cur = await a.data.listMessageUids(inbox.id);
      const since = cur.find((m) => m.uid === 3)!.modseq;
      const r5 = await a.data.storeFlags(inbox.id, [1, 2, 3, 4, 5], 'add', ['\\Deleted'], since);
      assert.deepEqual(r5.modified, cur.filter((m) => m.modseq > since).map((m) => m.uid));
      assert.deepEqual(r5.messages.map((m) => m.uid), cur.filter((m) => m.modseq <= since).map((m) => m.uid));
      assert.deepEqual((await a.data.storeFlags(inbox.id, [1], 'add', ['x'], 0)).modified, [1], 'UNCHANGEDSINCE 0 always fails');

      const after = await a.data.listMessageUids(inbox.id);
      const changedUids = after.filter((m, i) => m.modseq !== before[i]!.modseq).map((m) => m.uid);
      const ch = await b.data.changesSince(u.id, inbox.id, hm0);
      assert.deepEqual(ch.changed.map((c) => c.uid), changedUids);
      assert.equal(ch.highestmodseq, Math.max(...after.map((m) => m.modseq)));
      assert.equal(await b.data.highestModseq(inbox.id), ch.highestmodseq);
      assert.deepEqual(ch.vanished, []);
      const flagRows = await a.data.db.selectFrom('changes').select('modseq').where('account_id', '=', u.id).where('kind', '=', 'flags').execute();
      assert.equal(flagRows.length, 3 + 1 + 2 + 1 + r5.messages.filter((m) => m.changed).length, "one 'flags' change per changed message");
      await checkChangeLog(a.data, u.id);
    } finally {
      await a.close();
      if (b !== a) await b.close();
      await cleanup();
    }
  });

  test(`imap ops (${backend.name}): EXPUNGE and UID EXPUNGE remove only \\Deleted messages and log them for VANISHED`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      const u = await setup(a.data);
      await deliver(a.data, u.id, 6);
      const inbox = (await a.data.getMailbox(u.id, 'INBOX'))!;
      const hm0 = inbox.highestmodseq;
      await a.data.storeFlags(inbox.id, [1, 3, 5], 'add', ['\\Deleted']);
      const e1 = await b.data.expunge(inbox.id, [3, 4]);
      assert.deepEqual(e1.expunged.map((x) => x.uid), [3], 'UID EXPUNGE: only the given UIDs that are \\Deleted');
      const e2 = await a.data.expunge(inbox.id);
      assert.deepEqual(e2.expunged.map((x) => x.uid), [1, 5]);
      assert.ok(e2.expunged[0]!.modseq > e1.expunged[0]!.modseq && e2.expunged[1]!.modseq > e2.expunged[0]!.modseq);
      assert.deepEqual((await a.data.expunge(inbox.id)).expunged, []);
      assert.deepEqual((await a.data.listMessageUids(inbox.id)).map((m) => m.uid), [2, 4, 6]);
      const ch = await a.data.changesSince(u.id, inbox.id, hm0);
      assert.deepEqual(ch.vanished, [1, 3, 5]);
      assert.deepEqual((await a.data.changesSince(u.id, inbox.id, e1.expunged[0]!.modseq)).vanished, [1, 5]);
      assert.equal((await a.data.getMailbox(u.id, 'INBOX'))!.highestmodseq, e2.expunged[1]!.modseq);
      await checkChangeLog(a.data, u.id);
    } finally {
      await a.close();
      if (b !== a) await b.close();
      await cleanup();
    }
  });

  test(`imap ops (${backend.name}): EXPUNGE takes the \\Deleted messages from the shared list only while it is current`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      const u = await setup(a.data);
      await deliver(a.data, u.id, 4);
      const inbox = (await a.data.getMailbox(u.id, 'INBOX'))!;
      await a.data.storeFlags(inbox.id, [1], 'add', ['\\Deleted']);
      await a.data.listMessageUids(inbox.id);
      // The list as EXPUNGE looks at it, then a change lands before its transaction:
      // the list is stale (UID 2 has no \Deleted in it) and must not be used.
      // (The SQLite writer thread's path takes the view in memory, peek; the other, view.)
      const views = (a.data as unknown as { views: { view: (row: unknown) => Promise<unknown>; peek: (id: number) => unknown } }).views;
      const real = views.view.bind(views);
      const realPeek = views.peek.bind(views);
      let injected = false;
      const inject = async () => {
        if (injected) return;
        injected = true;
        await b.data.storeFlags(inbox.id, [2], 'add', ['\\Deleted']);
      };
      views.view = async (row) => {
        const v = await real(row);
        await inject();
        return v;
      };
      const fastPath = !!(a.data as unknown as { fastImap: unknown }).fastImap;
      let peeked: unknown;
      views.peek = (id) => (peeked = realPeek(id));
      try {
        if (fastPath) {
          // peek is synchronous: the change lands before the writer's transaction another way.
          const fast = (a.data as unknown as { fastImap: { expunge: (...args: unknown[]) => Promise<unknown> } }).fastImap;
          const realExpunge = fast.expunge.bind(fast);
          fast.expunge = async (...args) => {
            await inject();
            return realExpunge(...args);
          };
          try {
            assert.deepEqual((await a.data.expunge(inbox.id)).expunged.map((x) => x.uid), [1, 2]);
          } finally {
            fast.expunge = realExpunge;
          }
          assert.ok(peeked, 'the writer-thread path looked at the view in memory');
        } else assert.deepEqual((await a.data.expunge(inbox.id)).expunged.map((x) => x.uid), [1, 2]);
        assert.ok(injected);
      } finally {
        views.view = real;
        views.peek = realPeek;
      }
      // Current list: used as is (UID 3, flagged through the other handle, is seen after catching up).
      await b.data.storeFlags(inbox.id, [3], 'add', ['\\Deleted']);
      assert.deepEqual((await a.data.expunge(inbox.id)).expunged.map((x) => x.uid), [3]);
      assert.deepEqual((await a.data.listMessageUids(inbox.id)).map((m) => m.uid), [4]);
      await checkChangeLog(a.data, u.id);
    } finally {
      await a.close();
      if (b !== a) await b.close();
      await cleanup();
    }
  });

  test(`imap ops (${backend.name}): COPY and MOVE share the blobs, give new UIDs and modseqs`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      const u = await setup(a.data);
      await deliver(a.data, u.id, 4, 'INBOX', ['\\Seen']);
      await deliver(a.data, u.id, 1, 'Archive');
      const inbox = (await a.data.getMailbox(u.id, 'INBOX'))!;
      const archive = (await a.data.getMailbox(u.id, 'Archive'))!;
      const blobCount = async () => Number((await a.data.db.selectFrom('blobs').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow()).n);
      const blobs0 = await blobCount();
      const src = await a.data.listMessageUids(inbox.id);

      const c = await b.data.copyMessages(inbox.id, [4, 2, 9], archive.id);
      assert.equal(c.uidvalidity, archive.uidvalidity);
      assert.deepEqual(c.pairs, [[2, 2], [4, 3]], 'COPYUID pairs in source-UID order');
      const arch = await a.data.listMessageUids(archive.id);
      assert.deepEqual(arch.map((m) => m.uid), [1, 2, 3]);
      assert.equal(arch[1]!.blobHash, src[1]!.blobHash);
      assert.deepEqual(arch[1]!.flags, ['\\Seen']);
      assert.notEqual(arch[1]!.id, src[1]!.id, 'a copy is a new message');
      assert.equal((await a.data.listMessageUids(inbox.id)).length, 4, 'COPY leaves the source');

      const m = await a.data.moveMessages(inbox.id, [1, 3], archive.id);
      assert.deepEqual(m.pairs, [[1, 4], [3, 5]]);
      assert.deepEqual((await a.data.listMessageUids(inbox.id)).map((x) => x.uid), [2, 4]);
      const arch2 = await a.data.listMessageUids(archive.id);
      assert.equal(arch2.find((x) => x.uid === 4)!.id, src[0]!.id, 'MOVE keeps the message id');
      assert.equal(await blobCount(), blobs0, 'no new blob rows');
      const ch = await a.data.changesSince(u.id, inbox.id, inbox.highestmodseq);
      assert.deepEqual(ch.vanished, [1, 3]);
      const archCh = await a.data.changesSince(u.id, archive.id, archive.highestmodseq);
      assert.deepEqual(archCh.changed.map((x) => x.uid), [2, 3, 4, 5]);

      await assert.rejects(a.data.copyMessages(inbox.id, [2], 999_999), code('NOT_FOUND'));
      const other = await setup(a.data);
      const otherInbox = (await a.data.getMailbox(other.id, 'INBOX'))!;
      await assert.rejects(a.data.moveMessages(inbox.id, [2], otherInbox.id), code('INVALID'));
      assert.deepEqual((await a.data.moveMessages(inbox.id, [77], archive.id)).pairs, []);
      await checkChangeLog(a.data, u.id);
    } finally {
      await a.close();
      if (b !== a) await b.close();
      await cleanup();
    }
  });

  test(`imap ops (${backend.name}): concurrent deliveries, flag stores and moves on one account lose nothing`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      const u = await setup(a.data);
      await deliver(a.data, u.id, 20);
      const inbox = (await a.data.getMailbox(u.id, 'INBOX'))!;
      const archive = (await a.data.getMailbox(u.id, 'Archive'))!;
      const first20 = Array.from({ length: 20 }, (_, i) => i + 1);
      const jobs: Array<Promise<unknown>> = [];
      for (let i = 0; i < 20; i++) {
        const h = i % 2 ? b : a;
        jobs.push(deliver(h.data, u.id, 5));
        jobs.push(h.data.storeFlags(inbox.id, first20, 'add', [`$k${i}`]));
        if (i % 5 === 0) jobs.push(deliver(h.data, u.id, 2, 'Archive'));
        if (i % 4 === 0) jobs.push(h.data.copyMessages(inbox.id, [i + 1], archive.id));
      }
      await Promise.all(jobs);
      const msgs = await a.data.listMessageUids(inbox.id);
      assert.deepEqual(msgs.map((m) => m.uid), Array.from({ length: 120 }, (_, i) => i + 1), 'UIDs 1..120, no gap, no duplicate');
      for (const m of msgs.slice(0, 20)) assert.equal(m.flags.length, 20, `uid ${m.uid}: every concurrent +FLAGS kept`);
      const arch = await a.data.listMessageUids(archive.id);
      assert.deepEqual(arch.map((m) => m.uid), Array.from({ length: 13 }, (_, i) => i + 1));
      const all = [...msgs, ...arch].map((m) => m.modseq);
      assert.equal(new Set(all).size, all.length, 'modseqs unique within the account');
      await checkChangeLog(a.data, u.id);
    } finally {
      await a.close();
      if (b !== a) await b.close();
      await cleanup();
    }
  });
}

for (const backend of backends) {
  test(`imap ops (${backend.name}): APPEND through the write path keeps flags and internal date and gives what APPENDUID needs`, async () => {
    const { a, b, cleanup } = await backend.open();
    try {
      const u = await setup(a.data);
      const m = { ...message([{ accountId: u.id, mailbox: 'Drafts', flags: ['\\Draft', '\\Seen'] }]), internalDate: 1_234_567_890_000 };
      const added = (await a.data.addMessages([m]))[0]![0]!;
      const drafts = (await b.data.getMailboxById(added.mailboxId))!;
      assert.equal(drafts.name, 'Drafts', 'appended to the named mailbox');
      assert.equal(added.uid, 1);
      assert.equal(drafts.uidnext, 2);
      const [row] = await b.data.listMessageUids(drafts.id);
      assert.deepEqual(row!.flags, ['\\Draft', '\\Seen']);
      assert.equal(row!.internalDate, 1_234_567_890_000);
      assert.equal(drafts.unseen, 0);
      // A delivery to a missing mailbox falls back to INBOX: APPEND must look the
      // mailbox up first (NO [TRYCREATE]) and compare added.mailboxId.
      const fallback = (await a.data.addMessages([message([{ accountId: u.id, mailbox: 'Nowhere' }])]))[0]![0]!;
      assert.equal(fallback.mailboxId, (await a.data.getMailbox(u.id, 'INBOX'))!.id);
    } finally {
      await a.close();
      if (b !== a) await b.close();
      await cleanup();
    }
  });
}
