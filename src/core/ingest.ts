import type { Logger } from 'pino';
import type { BlobStore, BlobSink } from '../store/blob-store.ts';
import type { AddedMessage, DataStore, Delivery, NewMessage, QueueSpec } from '../store/data-store.ts';
import type { PubSub } from './pubsub.ts';
import { MimeIndexer } from '../mime/indexer.ts';
import type { MessageIndex } from '../mime/types.ts';
import { GroupCommitter } from './group-commit.ts';

/**
 * The one write path for every message that enters a mailbox (SMTP, LMTP, local
 * submission; later IMAP APPEND, JMAP import, bounces): stream the bytes to a blob
 * while indexing the MIME structure in the same pass, then commit blob + rows in a
 * group commit, then publish the change. Resolves only when everything is durable.
 */
export interface IngestResult {
  blobHash: string;
  size: number;
  added: AddedMessage[];
  index: MessageIndex;
}

export interface IngestTarget {
  deliveries: Delivery[];
  queue: QueueSpec | null;
  internalDate: number;
}

export class MessageSink {
  private indexer = new MimeIndexer();
  private writer: BlobSink;
  private aborted = false;
  private indexed: Promise<MessageIndex> | null = null;

  constructor(
    private ingest: Ingest,
    blobs: BlobStore,
  ) {
    this.writer = blobs.writer();
    this.indexer.on('error', () => undefined);
  }

  get size(): number {
    return this.writer.size;
  }

  /** Feeds bytes; resolves when it is safe to send more (backpressure). */
  async write(chunk: Buffer): Promise<void> {
    this.writer.write(chunk);
    if (!this.indexer.write(chunk)) await new Promise<void>((r) => this.indexer.once('drain', r));
    await this.writer.drained();
  }

  /** Parses what has been written so far (for checks before commit, e.g. loop detection). */
  index(): Promise<MessageIndex> {
    if (!this.indexed) {
      this.indexer.end();
      this.indexed = this.indexer.result();
    }
    return this.indexed as Promise<MessageIndex>;
  }

  async commit(target: IngestTarget): Promise<IngestResult> {
    const index = await this.index();
    const blob = await this.writer.finish();
    const { searchText, ...meta } = index;
    const msg: NewMessage = {
      blobHash: blob.hash,
      size: blob.size,
      blobData: blob.data ?? null,
      meta: JSON.stringify(meta),
      searchText,
      internalDate: target.internalDate,
      subject: noNul(index.subject),
      from: noNul(index.from),
      date: index.date,
      messageId: noNul(index.messageId),
      deliveries: target.deliveries,
      queue: target.queue,
    };
    const added = await this.ingest.commit(msg);
    return { blobHash: blob.hash, size: blob.size, added, index };
  }

  async abort(): Promise<void> {
    if (this.aborted) return;
    this.aborted = true;
    this.indexer.destroy();
    await this.writer.abort();
  }
}

export class Ingest {
  private committer: GroupCommitter<NewMessage, AddedMessage[]>;

  constructor(
    private data: DataStore,
    private blobs: BlobStore,
    private pubsub: PubSub,
    private log: Logger,
  ) {
    this.committer = new GroupCommitter((items) => this.data.addMessages(items), 256, this.data.deliveryCommitsInFlight);
  }

  /** Starts a new message: write its bytes, then commit it to its deliveries. */
  begin(): MessageSink {
    return new MessageSink(this, this.blobs);
  }

  /** Convenience for whole in-memory messages (tests, small internal messages). */
  async ingestBuffer(data: Buffer, target: IngestTarget): Promise<IngestResult> {
    const sink = this.begin();
    try {
      await sink.write(data);
      return await sink.commit(target);
    } catch (err) {
      await sink.abort();
      throw err;
    }
  }

  /** Called after a commit that queued remote recipients (the delivery agent wakes up). */
  onQueued: (() => void) | null = null;

  async commit(msg: NewMessage): Promise<AddedMessage[]> {
    const added = await this.committer.submit(msg);
    for (const a of added) this.pubsub.publish({ accountId: a.accountId, mailboxId: a.mailboxId, modseq: a.modseq });
    if (msg.queue) this.onQueued?.();
    return added;
  }
}

/**
 * NUL bytes from a message's headers become U+FFFD in the columns derived from them (subject,
 * from, Message-ID): PostgreSQL's text type cannot hold U+0000 (the insert failed, and the
 * message with it), and both backends should show the same. The blob keeps the bytes as sent;
 * searchText keeps its NULs (only SQLite's full-text table stores it, and its prefilter knows
 * that LIKE stops at a NUL: src/store/search-index.ts).
 */
function noNul<T extends string | null>(s: T): T {
  return (s && s.includes('\0') ? s.replace(/\0/g, '\uFFFD') : s) as T;
}
