import crypto from 'node:crypto';
import pg from 'pg';
import { LocalPubSub, type ChangeEvent, type PubSub } from '../../core/pubsub.ts';

/**
 * Change notifications between nodes over PostgreSQL LISTEN/NOTIFY: a delivery
 * committed on node A wakes IDLE/push on node B. Local subscribers are told at
 * once; the NOTIFY carries this node's id so its own echo is ignored. One channel
 * per schema, so installations sharing a database do not hear each other.
 *
 * NOTIFY is not durable (a node that is disconnected misses events): it only wakes
 * sessions, which then read the change log by modseq, so nothing is lost — at worst
 * a wake-up comes late, after the listener reconnects.
 */
export class PostgresPubSub implements PubSub {
  private local = new LocalPubSub();
  private readonly node = crypto.randomUUID();
  private readonly channel: string;
  private listener: pg.Client | null = null;
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    private pool: pg.Pool,
    private clientConfig: pg.ClientConfig,
    schema: string,
    private onError: (err: Error) => void = () => undefined,
  ) {
    this.channel = `postern_changes_${schema}`;
  }

  /** Connects the LISTEN session; resolves once notifications flow. */
  async start(): Promise<void> {
    const client = new pg.Client(this.clientConfig);
    client.on('notification', (msg) => {
      if (msg.channel !== this.channel || !msg.payload) return;
      try {
        const { node, events } = JSON.parse(msg.payload) as { node: string; events: ChangeEvent[] };
        if (node !== this.node) for (const e of events) this.local.publish(e);
      } catch {
        // not ours
      }
    });
    client.on('error', (err) => {
      this.onError(err);
      this.lost(client);
    });
    client.on('end', () => this.lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${this.channel}`);
    } catch (err) {
      client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) return void client.end().catch(() => undefined);
    this.listener = client;
  }

  /** The LISTEN session ended or failed: drop it and try again every second. */
  private lost(client: pg.Client): void {
    if (this.listener !== client) return;
    this.listener = null;
    client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.start().catch((err: Error) => {
        this.onError(err);
        this.scheduleReconnect();
      });
    }, 1000);
    this.retryTimer.unref();
  }

  publish(event: ChangeEvent): void {
    this.local.publish(event);
    // One NOTIFY per tick for all changes of a group commit, not one round trip each.
    this.outbox.push(event);
    if (this.outbox.length === 1) setImmediate(() => this.flush());
  }

  private outbox: ChangeEvent[] = [];

  private flush(): void {
    const events = this.outbox;
    this.outbox = [];
    // NOTIFY payloads must stay under 8000 bytes: ~60 bytes per event.
    for (let i = 0; i < events.length; i += 100) {
      const payload = JSON.stringify({ node: this.node, events: events.slice(i, i + 100) });
      this.pool.query('SELECT pg_notify($1, $2)', [this.channel, payload]).catch((err: Error) => this.onError(err));
    }
  }

  subscribe(accountId: number, listener: (event: ChangeEvent) => void): () => void {
    return this.local.subscribe(accountId, listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const l = this.listener;
    this.listener = null;
    await l?.end().catch(() => undefined);
  }
}
