import type { MailboxInfo, MessageUid } from '../store/imap-model.ts';

/**
 * The maildrop of one POP3 session (RFC 1939 §5): the messages of the configured
 * mailbox as they were at login, numbered 1…n in UID order. The list never changes
 * during the session: messages delivered meanwhile wait for the next session, and a
 * message expunged over IMAP meanwhile keeps its number (its bytes stay readable).
 * DELE only marks; the marks become deletions in the UPDATE state (session.ts).
 */
export interface DropMessage {
  uid: number;
  size: number;
  blobHash: string;
  seen: boolean;
}

export class Maildrop {
  readonly messages: readonly DropMessage[];
  /** Message numbers marked by DELE (RFC 1939 §6). */
  private readonly deleted = new Set<number>();
  /** Message numbers fully retrieved by RETR (\Seen at QUIT; EXPIRE 0 deletes them). */
  readonly retrieved = new Set<number>();

  constructor(
    readonly mailbox: MailboxInfo,
    messages: readonly MessageUid[],
  ) {
    // Copies: the store's shared message lists must never be changed, nor kept alive by a session.
    this.messages = messages.map((m) => ({ uid: m.uid, size: m.size, blobHash: m.blobHash, seen: m.flags.includes('\\Seen') }));
  }

  /** The message numbered `n`, or null when there is none or it is marked deleted (RFC 1939 §5). */
  get(n: number): DropMessage | null {
    if (!Number.isSafeInteger(n) || n < 1 || n > this.messages.length || this.deleted.has(n)) return null;
    return this.messages[n - 1]!;
  }

  isDeleted(n: number): boolean {
    return this.deleted.has(n);
  }

  markDeleted(n: number): void {
    this.deleted.add(n);
  }

  /** RSET (RFC 1939 §5). */
  unmarkAll(): void {
    this.deleted.clear();
  }

  /** STAT (RFC 1939 §5): messages not marked deleted and their total size. */
  stat(): { count: number; size: number } {
    let count = 0;
    let size = 0;
    this.messages.forEach((m, i) => {
      if (this.deleted.has(i + 1)) return;
      count++;
      size += m.size;
    });
    return { count, size };
  }

  /**
   * RFC 1939 §7 UIDL: a unique-id that stays the same across sessions, derived from
   * the IMAP UIDVALIDITY and UID exactly as Dovecot's default pop3_uidl_format
   * (%08Xu%08Xv): mail imported from Dovecot with its UIDs keeps its UIDLs, so
   * clients that leave mail on the server do not download it all again. A new
   * UIDVALIDITY (the mailbox was recreated) changes every UIDL, as it should.
   */
  uidl(m: DropMessage): string {
    return hex8(m.uid) + hex8(this.mailbox.uidvalidity);
  }

  /** UIDs of the messages marked deleted. */
  deletedUids(): number[] {
    return [...this.deleted].sort((a, b) => a - b).map((n) => this.messages[n - 1]!.uid);
  }

  /** UIDs of retrieved messages not yet \Seen (and not deleted). */
  newlySeenUids(): number[] {
    return [...this.retrieved].filter((n) => !this.deleted.has(n) && !this.messages[n - 1]!.seen).map((n) => this.messages[n - 1]!.uid);
  }

  retrievedUids(): number[] {
    return [...this.retrieved].map((n) => this.messages[n - 1]!.uid);
  }
}

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
