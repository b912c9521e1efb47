import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { openStores } from '../../src/store/open.ts';
import type { DataStore, NewMessage } from '../../src/store/data-store.ts';
import { applyDelta } from '../../src/store/mailbox-views.ts';
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
