import type { Context } from '../core/context.ts';

/**
 * The maildrop lock behind `-ERR [IN-USE]` (RFC 1939 §8: "the POP3 server acquires
 * an exclusive-access lock on the maildrop"; RFC 2449 §8.1.2): one POP3 session per
 * user at a time, so two clients never download and delete the same messages.
 *
 * Scope: this node always (an in-memory set, no I/O). On the PostgreSQL backend,
 * where several nodes serve the same users, also the whole cluster: a lease row in
 * policy_state ('pop3-lock', account id), taken with one atomic upsert, renewed while
 * the session lasts and deleted at its end. A node that dies holding a lease blocks
 * that user's POP3 logins until the lease runs out (LEASE_MS). IMAP and JMAP
 * sessions never take it: they see POP3's deletions as ordinary expunges.
 */
const LEASE_MS = 120_000;
const RENEW_MS = 30_000;
const KIND = 'pop3-lock';

export interface MaildropLease {
  /** Resolves once another session can take the lock (QUIT awaits it before its +OK). */
  release(): Promise<void>;
}

export class MaildropLocks {
  private readonly held = new Set<number>();

  constructor(private readonly ctx: Context) {}

  private get cluster(): boolean {
    return this.ctx.config.store.backend === 'postgres';
  }

  /** The lease, or null when another session holds the maildrop. */
  async acquire(accountId: number): Promise<MaildropLease | null> {
    if (this.held.has(accountId)) return null;
    this.held.add(accountId);
    const key = String(accountId);
    if (this.cluster) {
      try {
        // bumpCounter is one atomic upsert: 1 means the window (the lease) was free or had run out.
        if ((await this.ctx.data.bumpCounter(KIND, key, LEASE_MS, this.ctx.now())) !== 1) {
          this.held.delete(accountId);
          return null;
        }
      } catch (e) {
        this.held.delete(accountId);
        throw e;
      }
    }
    let released = false;
    const timer = this.cluster
      ? setInterval(() => {
          this.ctx.data.putState(KIND, key, 1, this.ctx.now() + LEASE_MS).catch((e: unknown) => this.ctx.log.warn({ err: e }, 'could not renew a POP3 maildrop lease'));
        }, RENEW_MS)
      : null;
    timer?.unref();
    return {
      release: async () => {
        if (released) return;
        released = true;
        if (timer) clearInterval(timer);
        try {
          if (this.cluster) await this.ctx.data.deleteState(KIND, key);
        } catch (e) {
          this.ctx.log.warn({ err: e }, 'could not release a POP3 maildrop lease (it runs out by itself)');
        } finally {
          this.held.delete(accountId);
        }
      },
    };
  }
}
