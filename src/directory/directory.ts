import type { DataStore } from '../store/data-store.ts';

/**
 * Where mail for an address goes and who may log in: one interface, two backends —
 * the internal one (the store: `postern user add`, `postern alias add`) and LDAP
 * (ldap/directory.ts). Lookups that cannot be answered throw
 * DirectoryUnavailableError (errors.ts): a temporary failure, never "unknown".
 */
export type Resolution =
  | { kind: 'non-local' }
  | { kind: 'unknown' }
  | { kind: 'deliver'; accounts: Array<{ id: number; email: string }>; remote: string[] };

/** A user as the directory describes them (an LDAP entry, or a store account). */
export interface DirectoryUser {
  /** The primary address, lower case: the name of the user's account (mailboxes) in the store. */
  email: string;
  /** Alternate addresses delivered to the same user (LDAP attributes.alias). */
  aliases: string[];
  /** Login name besides the address (LDAP attributes.uid), if any. */
  uid: string | null;
  displayName: string | null;
  /** Storage limit in bytes; null: none. */
  quotaBytes: number | null;
  /** Disabled users can neither log in nor receive mail. */
  enabled: boolean;
  /** The LDAP entry's DN; null for store users. */
  dn: string | null;
  /** Schemes of the password hashes the directory holds (e.g. "SSHA"), never the hashes; [] when none is readable. */
  passwordSchemes: string[];
}

/** A distribution list (LDAP group_filter) and the member values it names. */
export interface DirectoryGroup {
  dn: string;
  members: string[];
}

/** The directory's verdict on a login name and password (backends that check passwords themselves). */
export type LoginVerdict =
  | { kind: 'ok'; user: DirectoryUser }
  | { kind: 'unknown' }
  /** The login name matches more than one entry: refused (a directory problem, logged). */
  | { kind: 'ambiguous'; count: number }
  | { kind: 'disabled'; user: DirectoryUser }
  | { kind: 'bad-password'; user: DirectoryUser }
  /** The entry has no password the server can check (compare mode: none readable by bind_dn). */
  | { kind: 'no-password'; user: DirectoryUser };

export interface Directory {
  readonly backend: 'internal' | 'ldap';
  /**
   * Null when users are managed by Postern; else the config key that makes the user
   * list read-only here (`postern user add/del/passwd` name it).
   */
  readonly readOnlyKey: string | null;
  isLocalDomain(domain: string): Promise<boolean>;
  resolve(address: string): Promise<Resolution>;
  /** The users an address belongs to (as primary or alternate address), for `postern directory test`. */
  findUsers(address: string): Promise<DirectoryUser[]>;
  /** Distribution lists at an address (LDAP group_filter); [] where there are none. */
  findGroups(address: string): Promise<DirectoryGroup[]>;
  /** Every user (`postern user list`). */
  listUsers(): Promise<DirectoryUser[]>;
  /**
   * Password check by the directory itself (LDAP bind or compare). Absent on the
   * internal backend: its hashes are in the store and the Authenticator checks them.
   */
  authenticate?(login: string, password: string): Promise<LoginVerdict>;
  /** The store account (mailboxes) of a user, created on first delivery or login where the directory is external. */
  account(user: DirectoryUser): Promise<{ id: number; email: string }>;
  /** One line for logs and `postern directory test`: backend and where. */
  describe(): string;
  close(): Promise<void>;
}

/** Alias chains deeper than this are a configuration loop. */
export const MAX_ALIAS_DEPTH = 10;

export function splitAddress(address: string): { local: string; domain: string } {
  const at = address.lastIndexOf('@');
  if (at < 0) return { local: address, domain: '' };
  return { local: address.slice(0, at), domain: address.slice(at + 1).toLowerCase() };
}

/** The address and, for "user+tag@domain", "user@domain" (plus-addressing), in the order they are tried. */
export function addressCandidates(address: string): string[] {
  const { local, domain } = splitAddress(address);
  const plus = local.indexOf('+');
  return plus > 0 ? [address, `${local.slice(0, plus)}@${domain}`] : [address];
}

export class InternalDirectory implements Directory {
  readonly backend = 'internal' as const;
  readonly readOnlyKey = null;

  constructor(private data: DataStore) {}

  isLocalDomain(domain: string): Promise<boolean> {
    return this.data.isLocalDomain(domain);
  }

  /**
   * Resolution order for local domains, like Postfix virtual(5) with Dovecot:
   * account → alias → the same without "+tag" (plus-addressing) → "@domain"
   * catch-all. Alias targets resolve recursively; remote targets are returned
   * for the outbound queue.
   */
  async resolve(address: string): Promise<Resolution> {
    const accounts = new Map<number, string>();
    const remote = new Set<string>();
    const seen = new Set<string>();
    const found = await this.expand(address.toLowerCase(), 0, accounts, remote, seen);
    if (found === 'non-local') return { kind: 'non-local' };
    if (found === 'unknown') return { kind: 'unknown' };
    return { kind: 'deliver', accounts: [...accounts].map(([id, email]) => ({ id, email })), remote: [...remote] };
  }

  private async expand(
    address: string,
    depth: number,
    accounts: Map<number, string>,
    remote: Set<string>,
    seen: Set<string>,
  ): Promise<'ok' | 'unknown' | 'non-local'> {
    const { domain } = splitAddress(address);
    if (!domain || !(await this.data.isLocalDomain(domain))) {
      if (depth === 0) return 'non-local';
      remote.add(address);
      return 'ok';
    }
    if (seen.has(address) || depth > MAX_ALIAS_DEPTH) return 'ok';
    seen.add(address);
    for (const candidate of addressCandidates(address)) {
      const account = await this.data.getAccount(candidate);
      if (account && account.enabled) {
        accounts.set(account.id, account.email);
        return 'ok';
      }
      const targets = await this.data.aliasTargets(candidate);
      if (targets.length) {
        for (const t of targets) await this.expand(t, depth + 1, accounts, remote, seen);
        return 'ok';
      }
    }
    const catchAll = await this.data.aliasTargets(`@${domain}`);
    if (catchAll.length) {
      for (const t of catchAll) await this.expand(t, depth + 1, accounts, remote, seen);
      return 'ok';
    }
    return 'unknown';
  }

  async findUsers(address: string): Promise<DirectoryUser[]> {
    const a = await this.data.getAccount(address.trim().toLowerCase());
    if (!a) return [];
    return [
      {
        email: a.email,
        aliases: [],
        uid: null,
        displayName: a.displayName,
        quotaBytes: await this.data.accountQuotaBytes(a.id),
        enabled: a.enabled,
        dn: null,
        passwordSchemes: a.passwordHash ? [a.passwordHash.startsWith('$argon2id$') ? 'ARGON2ID' : 'imported'] : [],
      },
    ];
  }

  async findGroups(): Promise<DirectoryGroup[]> {
    return [];
  }

  async listUsers(): Promise<DirectoryUser[]> {
    const out: DirectoryUser[] = [];
    for (const row of await this.data.listAccounts()) out.push(...(await this.findUsers(row.email)));
    return out;
  }

  async account(user: DirectoryUser): Promise<{ id: number; email: string }> {
    const a = await this.data.getAccount(user.email);
    if (!a) throw new Error(`no account ${user.email}`);
    return { id: a.id, email: a.email };
  }

  describe(): string {
    return 'internal (users, aliases and passwords in the store)';
  }

  async close(): Promise<void> {}
}
