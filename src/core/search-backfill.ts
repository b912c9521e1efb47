import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { DataStore } from '../store/data-store.ts';
import type { BlobStore } from '../store/blob-store.ts';
import { MimeIndexer } from '../mime/indexer.ts';

/**
 * Re-indexes messages whose full-text entry was not committed before a crash (the
 * search index is filled after the delivery is acknowledged). Reads each stored
 * message, extracts its search text with the same indexer as ingest, and stores it.
 * Runs at start, before the listeners open; normally there is nothing to do.
 */
export async function backfillSearch(data: DataStore, blobs: BlobStore, log: Logger): Promise<number> {
  let done = 0;
  for (;;) {
    const hashes = await data.pendingSearch(100);
    if (!hashes.length) break;
    for (const hash of hashes) {
      let text = '';
      try {
        const indexer = new MimeIndexer();
        await pipeline(blobs.read(hash), indexer);
        text = (await indexer.result()).searchText;
      } catch (err) {
        // An unreadable message is logged and left out of search rather than retried forever.
        log.error({ err, blob: hash }, 'cannot re-index message for search');
      }
      await data.setSearchText(hash, text);
      done++;
    }
  }
  if (done) log.info({ messages: done }, 'search index: re-indexed messages left over from an interrupted run');
  return done;
}
