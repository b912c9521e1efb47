import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { openStores } from '../../src/store/open.ts';
import type { DataStore, NewMessage } from '../../src/store/data-store.ts';
import { applyDelta, MailboxViews, type MailboxRow } from '../../src/store/mailbox-views.ts';
import type { MessageUid } from '../../src/store/imap-model.ts';
import { tempDir } from '../helpers/server.ts';

/**
 * The shared per-mailbox message lists (src/store/mailbox-views.ts): brought up
 * to date from the mailbox row's HIGHESTMODSEQ, also for changes another process
 * made (the CLI writes the same SQLite file), and shared, not copied.
 */

const m = (uid: number, modseq = uid, flags: string[] = []): MessageUid => ({ id: uid, uid, modseq, flags, size: 10, internalDate: 0, blobHash: `h${uid}` });

test('applyDelta: replaces changed, drops expunged, inserts new in UID order, idempotent', () => {
  const base = [m(1), m(3), m(5)];
  const out = applyDelta(base, [m(3, 9, ['\\Seen']), m(7, 10), m(4, 11)], [5, 8]);
  assert.deepEqual(out.map((x) => [x.uid, x.modseq]), [[1, 1], [3, 9], [4, 11], [7, 10]]);
  assert.equal(out[0], base[0], 'unchanged messages are the same objects');
  assert.deepEqual(base.map((x) => x.uid), [1, 3, 5], 'the base list is not changed');
  assert.deepEqual(applyDelta(out, [m(3, 9, ['\\Seen']), m(7, 10), m(4, 11)], [5, 8]), out);
  // A message added and expunged after the view's modseq never shows up.
  assert.deepEqual(applyDelta(base, [m(9, 12)], [9]).map((x) => x.uid), [1, 3, 5]);
});

let seq = 0;
function message(accountId: number, mailbox = 'INBOX'): NewMessage {
  const body = `view message ${++seq}`;
  const bytes = Buffer.from(`Subject: ${body}\r\n\r\n${body}\r\n`);
  return {
    blobHash: `view-${seq}`,
    size: bytes.length,
    blobData: bytes,
    meta: '{}',
    searchText: body,
    internalDate: 1_700_000_000_000 + seq,
    subject: body,
    from: 'a@x.test',
    date: null,
    messageId: `<${seq}@x.test>`,
    deliveries: [{ accountId, mailbox }],
    queue: null,
  };
}

async function uids(data: DataStore, mailboxId: number): Promise<Array<[number, string]>> {
  const v = await data.mailboxView(mailboxId);
  return (v?.messages ?? []).map((x) => [x.uid, x.flags.join(' ')]);
}

test('a view follows changes made by another process on the same database (deliveries, STORE, EXPUNGE, MOVE)', async () => {
  const dir = tempDir('postern-views-');
  const server = await openStores(path.join(dir, 'data'), { writerThread: true });
  const cli = await openStores(path.join(dir, 'data'));
  try {
    await cli.data.ensureDomain('views.test');
    const acct = await cli.data.addAccount('v@views.test', null);
    const inbox = (await server.data.getMailbox(acct.id, 'INBOX'))!;
    const junk = (await server.data.getMailbox(acct.id, 'Junk'))!;
    assert.equal(inbox.messages, 0);
    assert.deepEqual(await uids(server.data, inbox.id), []);

    await cli.data.addMessages([message(acct.id), message(acct.id), message(acct.id)]);
    assert.deepEqual(await uids(server.data, inbox.id), [[1, ''], [2, ''], [3, '']]);
    const before = (await server.data.mailboxView(inbox.id))!.messages;

    await cli.data.storeFlags(inbox.id, [2], 'add', ['\\Seen', '\\Deleted']);
    const after = (await server.data.mailboxView(inbox.id))!;
    assert.deepEqual(after.messages.map((x) => [x.uid, x.flags.join(' ')]), [[1, ''], [2, '\\Seen \\Deleted'], [3, '']]);
    assert.equal(after.messages[0], before[0], 'an unchanged message is shared between versions');
    assert.equal(after.info.unseen, 2);
    assert.equal(after.info.messages, 3);

    await cli.data.expunge(inbox.id);
    await cli.data.moveMessages(inbox.id, [3], junk.id);
    assert.deepEqual(await uids(server.data, inbox.id), [[1, '']]);
    assert.deepEqual(await uids(server.data, junk.id), [[1, '']]);
    const info = (await server.data.getMailbox(acct.id, 'INBOX'))!;
    assert.equal(info.messages, 1);
    assert.equal(info.highestmodseq, (await cli.data.getMailbox(acct.id, 'INBOX'))!.highestmodseq);

    // listMessageUids hands out a copy the caller may change without touching the shared list.
    const copy = await server.data.listMessageUids(inbox.id);
    copy.pop();
    assert.deepEqual(await uids(server.data, inbox.id), [[1, '']]);

    // A deleted mailbox has no view.
    await cli.data.createMailbox(acct.id, 'Gone');
    const gone = (await server.data.getMailbox(acct.id, 'Gone'))!;
    await cli.data.deleteMailbox(acct.id, 'Gone');
    assert.equal(await server.data.mailboxView(gone.id), null);
  } finally {
    await cli.close();
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("advance: a write's own changes bring a view at the write's starting HIGHESTMODSEQ up to date without reading rows; any other view is read again", async () => {
  let deltas = 0;
  const rows = [m(1), m(2), m(3)];
  const views = new MailboxViews({
    messageUids: async () => rows.slice(),
    messageDelta: async () => {
      deltas++;
      return { changed: [m(2, 9, ['\\Seen'])], expunged: [3] };
    },
  });
  const row = (highestmodseq: number): MailboxRow => ({ id: 7, accountId: 1, name: 'INBOX', specialUse: null, uidvalidity: 5, uidnext: 4, highestmodseq, subscribed: true });
  const v3 = await views.view(row(3));
  assert.deepEqual(v3.messages.map((x) => x.uid), [1, 2, 3]);

  // The server's STORE of uid 2 (modseq 3 → 4) and EXPUNGE of uid 3 (4 → 5).
  views.advance({ mailboxId: 7, uidvalidity: 5, from: 3, to: 4, changed: [m(2, 4, ['\\Seen'])], expunged: [] });
  views.advance({ mailboxId: 7, uidvalidity: 5, from: 4, to: 5, changed: [], expunged: [3] });
  const v5 = await views.view(row(5));
  assert.equal(deltas, 0, 'no rows read');
  assert.deepEqual(v5.messages.map((x) => [x.uid, x.modseq, x.flags.join(' ')]), [[1, 1, ''], [2, 4, '\\Seen']]);
  assert.equal(v5.messages[0], v3.messages[0], 'unchanged messages are shared');
  assert.deepEqual((await views.info(row(5))).unseen, 1);

  // A write that started above the view (someone else's change came first) leaves it alone:
  // the next look reads the delta.
  views.advance({ mailboxId: 7, uidvalidity: 5, from: 7, to: 8, changed: [m(1, 8, ['\\Flagged'])], expunged: [] });
  const v9 = await views.view(row(9));
  assert.equal(deltas, 1);
  assert.deepEqual(v9.messages.map((x) => [x.uid, x.modseq]), [[1, 1], [2, 9]]);
  // Another UIDVALIDITY, or a mailbox without a view: nothing happens.
  views.advance({ mailboxId: 7, uidvalidity: 6, from: 9, to: 10, changed: [m(5, 10)], expunged: [] });
  views.advance({ mailboxId: 8, uidvalidity: 5, from: 0, to: 1, changed: [m(5, 1)], expunged: [] });
  assert.deepEqual((await views.view(row(9))).messages.map((x) => x.uid), [1, 2]);
});

test('the server (writer thread): STORE and EXPUNGE keep the view in step, as a second process sees it', async () => {
  const dir = tempDir('postern-views-');
  const server = await openStores(path.join(dir, 'data'), { writerThread: true });
  const cli = await openStores(path.join(dir, 'data'));
  try {
    await server.data.ensureDomain('views.test');
    const acct = await server.data.addAccount('w@views.test', null);
    const inbox = (await server.data.getMailbox(acct.id, 'INBOX'))!;
    await server.data.addMessages([message(acct.id), message(acct.id), message(acct.id)]);
    assert.deepEqual(await uids(server.data, inbox.id), [[1, ''], [2, ''], [3, '']]);
    const st = await server.data.storeFlags(inbox.id, [2, 3, 99], 'add', ['\\Deleted', '\\seen']);
    assert.deepEqual(st.messages.map((x) => [x.uid, x.flags.join(' '), x.changed]), [[2, '\\Deleted \\Seen', true], [3, '\\Deleted \\Seen', true]]);
    const again = await server.data.storeFlags(inbox.id, [2], 'add', ['\\Seen']);
    assert.deepEqual(again.messages.map((x) => [x.uid, x.modseq, x.changed]), [[2, st.messages[0]!.modseq, false]]);
    assert.deepEqual(await uids(server.data, inbox.id), [[1, ''], [2, '\\Deleted \\Seen'], [3, '\\Deleted \\Seen']]);
    assert.deepEqual((await server.data.storeFlags(inbox.id, [1], 'add', ['\\Flagged'], 0)).modified, [1], 'UNCHANGEDSINCE 0 fails');
    const ex = await server.data.expunge(inbox.id, [3]);
    assert.deepEqual(ex.expunged.map((x) => x.uid), [3]);
    assert.deepEqual(await uids(server.data, inbox.id), [[1, ''], [2, '\\Deleted \\Seen']]);
    assert.deepEqual(await uids(cli.data, inbox.id), await uids(server.data, inbox.id));
    const info = (await server.data.getMailbox(acct.id, 'INBOX'))!;
    assert.equal(info.highestmodseq, ex.expunged[0]!.modseq);
    assert.equal(info.highestmodseq, (await cli.data.getMailbox(acct.id, 'INBOX'))!.highestmodseq);
    assert.deepEqual((await cli.data.changesSince(acct.id, inbox.id, st.messages[1]!.modseq)).vanished, [3]);
    // A mailbox deleted meanwhile: NOT_FOUND from the thread, as from the portable path.
    await assert.rejects(server.data.storeFlags(99_999, [1], 'add', ['\\Seen']), { name: 'MailError', code: 'NOT_FOUND' });
    await assert.rejects(server.data.expunge(inbox.id + 99_999), { name: 'MailError', code: 'NOT_FOUND' });
  } finally {
    await cli.close();
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('applyDelta and the counts kept with a view agree with a plain rebuild, for small and large deltas (random)', async () => {
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let round = 0; round < 300; round++) {
    const base: MessageUid[] = [];
    for (let uid = 1; uid <= 60; uid++) if (rnd(3)) base.push(m(uid, uid, rnd(2) ? ['\\Seen'] : []));
    const n = round % 2 ? rnd(10) : 10 + rnd(50); // below and above the in-place limit
    const changed = new Map<number, MessageUid>();
    const expunged = new Set<number>();
    for (let k = 0; k < n; k++) {
      const uid = 1 + rnd(70);
      if (rnd(3) === 0) expunged.add(uid);
      else changed.set(uid, { ...m(uid, 100 + k, rnd(2) ? ['\\Seen'] : []), size: 1 + rnd(50) });
    }
    // The reference: a map by UID, sorted.
    const ref = new Map(base.map((x) => [x.uid, x]));
    for (const [uid, x] of changed) if (!expunged.has(uid)) ref.set(uid, x);
    for (const uid of expunged) ref.delete(uid);
    const want = [...ref.values()].sort((a, b) => a.uid - b.uid);
    const got = applyDelta(base, [...changed.values()], [...expunged]);
    assert.deepEqual(got, want, `round ${round}`);

    const views = new MailboxViews({ messageUids: async () => base.slice(), messageDelta: async () => ({ changed: [], expunged: [] }) });
    const row: MailboxRow = { id: 1, accountId: 1, name: 'INBOX', specialUse: null, uidvalidity: 1, uidnext: 99, highestmodseq: 1, subscribed: true };
    await views.info(row); // the counts are made
    views.advance({ mailboxId: 1, uidvalidity: 1, from: 1, to: 2, changed: [...changed.values()], expunged: [...expunged] });
    const info = await views.info({ ...row, highestmodseq: 2 });
    assert.deepEqual(
      { messages: info.messages, unseen: info.unseen, size: info.size },
      { messages: want.length, unseen: want.filter((x) => !x.flags.includes('\\Seen')).length, size: want.reduce((t, x) => t + x.size, 0) },
      `counts, round ${round}`,
    );
  }
});
