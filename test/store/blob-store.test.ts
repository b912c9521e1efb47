import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { openStores } from '../../src/store/open.ts';
import { Ingest } from '../../src/core/ingest.ts';
import { LocalPubSub } from '../../src/core/pubsub.ts';
import { tempDir } from '../helpers/server.ts';

async function collect(s: NodeJS.ReadableStream): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts).toString('latin1');
}

/**
 * store.inline_max_size: a message up to the limit lives in the database row (one
 * group-commit fsync), a bigger one in data_dir/blobs; both read back the same,
 * whole and by byte range (IMAP partial fetch will rely on ranges).
 */
test('small messages are stored inline, large ones as files, and both read back whole and by range', async () => {
  const dir = tempDir('postern-blobs-');
  const stores = await openStores(path.join(dir, 'data'), { inlineMaxSize: 1024 });
  try {
    await stores.data.addDomain('blob.test');
    const acct = await stores.data.addAccount('x@blob.test', null);
    const ingest = new Ingest(stores.data, stores.blobs, new LocalPubSub(), pino({ level: 'silent' }));
    const small = Buffer.from('Subject: small\r\n\r\n' + 'a'.repeat(500) + '\r\n', 'latin1');
    const large = Buffer.from('Subject: large\r\n\r\n' + 'b'.repeat(5000) + '\r\n', 'latin1');
    const target = { deliveries: [{ accountId: acct.id, mailbox: 'INBOX' }], queue: null, internalDate: Date.now() };
    const s = await ingest.ingestBuffer(small, target);
    const l = await ingest.ingestBuffer(large, target);

    assert.ok(!fs.existsSync(stores.blobs.pathOf(s.blobHash)), 'small message has no file');
    assert.ok((await stores.data.inlineBlob(s.blobHash))?.equals(small), 'small message is in the database');
    assert.equal(fs.statSync(stores.blobs.pathOf(l.blobHash)).size, large.length, 'large message is a file');
    assert.equal(await stores.data.inlineBlob(l.blobHash), null);

    for (const [hash, bytes] of [[s.blobHash, small], [l.blobHash, large]] as const) {
      assert.ok((await stores.blobs.readAll(hash)).equals(bytes));
      assert.equal(await collect(stores.blobs.read(hash)), bytes.toString('latin1'));
      assert.equal(await collect(stores.blobs.read(hash, 9, 14)), bytes.subarray(9, 14).toString('latin1'));
      assert.equal(await collect(stores.blobs.read(hash, 18)), bytes.subarray(18).toString('latin1'));
      assert.ok(await stores.blobs.exists(hash));
    }
    assert.equal(await stores.blobs.exists('0'.repeat(64)), false);
    // A missing message is a stream error, not a hang.
    await assert.rejects(collect(stores.blobs.read('0'.repeat(64))), /ENOENT/);
    // Nothing left behind in tmp/.
    assert.deepEqual(fs.readdirSync(path.join(dir, 'data', 'tmp')), []);
  } finally {
    await stores.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
