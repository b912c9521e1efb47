import type { Logger } from 'pino';
import { LRUCache } from 'lru-cache';
import { MailError } from '../core/errors.ts';
import type { DataStore } from '../store/data-store.ts';
import type { DirectoryUser } from './directory.ts';

/**
 * Store accounts for users who live in an external directory (LDAP). Mailboxes,
 * messages, flags and quota usage need an account row; the directory has the user.
 *
 * - The row is created on first use — the first delivery to the user or their first
 *   login — named by the user's primary address (LDAP `mail`), with no password (the
 *   directory checks passwords) and the default mailboxes.
 * - The directory's quota and display name are copied onto the row when they differ
 *   from what this process last wrote (IMAP QUOTA reads the row).
 * - Nothing is ever deleted here: a user removed or disabled in LDAP keeps their row
 *   and mail (no login, no delivery) until the administrator removes it. A user whose
 *   primary address changes gets a new, empty row under the new address; the old row
 *   shows up in `postern user list` as "not in the directory" (docs/ldap.md, renames).
 */
export class AccountRows {
  /** Account id → the quota/display name last written, so a busy user costs no writes. */
  private readonly synced = new LRUCache<number, string>({ max: 10_000 });

  constructor(
    private readonly data: DataStore,
    private readonly log: Logger,
  ) {}

  async ensure(user: DirectoryUser): Promise<{ id: number; email: string }> {
    let row = await this.data.getAccount(user.email);
    if (!row) {
      try {
        row = await this.data.addAccount(user.email, null, null);
        this.log.info({ user: user.email, dn: user.dn }, 'account created for directory user');
      } catch (err) {
        if (err instanceof MailError && err.code === 'ALREADY_EXISTS') row = await this.data.getAccount(user.email);
        else if (err instanceof MailError && err.code === 'INVALID') {
          // The user's primary address is in a domain we do not serve: a configuration problem, not the client's.
          throw new Error(`directory user ${user.email} (${user.dn ?? 'store'}): ${err.message}`);
        } else throw err;
      }
      if (!row) throw new Error(`account ${user.email} vanished while being created`);
    }
    const want = JSON.stringify([user.quotaBytes, user.displayName]);
    if (this.synced.get(row.id) !== want) {
      await this.data.setAccountProfile(row.id, user.quotaBytes, user.displayName);
      this.synced.set(row.id, want);
    }
    return { id: row.id, email: row.email };
  }
}
