import crypto from 'node:crypto';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import { LRUCache } from 'lru-cache';
import { NoSuchObjectError, type Entry } from 'ldapts';
import type { LdapConfig } from '../../config/directory.ts';
import type { DataStore } from '../../store/data-store.ts';
import { verifyPassword } from '../../auth/password.ts';
import { AccountRows } from '../account-rows.ts';
import { addressCandidates, MAX_ALIAS_DEPTH, splitAddress, type Directory, type DirectoryGroup, type DirectoryUser, type LoginVerdict, type Resolution } from '../directory.ts';
import { DirectoryUnavailableError } from '../errors.ts';
import { LookupCache } from './cache.ts';
import { FailureLog } from './failure-log.ts';
import { expandFilter, isSearchableName, wildcardFilter, escapeFilterValue } from './filter.ts';
import { LdapPool } from './pool.ts';
import { first, looksLikeDn, publicUser, toUser, values, type LdapUser } from './entry.ts';

export interface LdapDirectoryOptions {
  config: LdapConfig;
  /** bind_dn's password (read from bind_password_file by the caller). */
  bindPassword: string | null;
  /** TLS options for ldaps:// and StartTLS (CA from tls_ca_file, tls_verify). */
  tlsOptions: tls.ConnectionOptions;
  data: DataStore;
  log: Logger;
  now: () => number;
}

/** Entries one address or login name may match before the answer is "ambiguous". */
const LOOKUP_SIZE_LIMIT = 20;

type Found = { kind: 'ok' | 'unknown' | 'non-local' };

/**
 * Users, alternate addresses and distribution lists from LDAP, the way Postfix's
 * ldap_table(5) and Dovecot's LDAP passdb/userdb read them:
 *
 * - recipients: `user_filter` (primary address) or `alias_filter` (alternate
 *   addresses, attributes.alias) finds the user; else `group_filter` finds a group whose
 *   members (DNs, addresses or uids) receive the mail; else the store's aliases
 *   (`postern alias add`, "@domain" catch-alls) apply as with the internal backend.
 *   Local domains are the store's (`domains`, `postern domain add`).
 * - logins by address, or by whatever `login_filter` matches (uid), checked by binding
 *   as the user (auth = "bind") or by verifying the entry's userPassword hash here
 *   (auth = "compare": {SSHA}, {CRYPT}, {ARGON2}, … via auth/hash-schemes.ts).
 * - answers are cached (cache_ttl, negative_cache_ttl); failures are not, and throw
 *   DirectoryUnavailableError, logged once per failure_log_interval.
 * - every value put into a filter is escaped (RFC 4515).
 */
export class LdapDirectory implements Directory {
  readonly backend = 'ldap' as const;
  readonly readOnlyKey = 'directory.backend = "ldap"';
  private readonly cfg: LdapConfig;
  private readonly pool: LdapPool;
  private readonly lookups: LookupCache<Entry[]>;
  /** Successful binds (auth = "bind"): HMAC(dn, password) → expiry, so reconnecting clients cost no bind each time. */
  private readonly binds: LRUCache<string, number>;
  private readonly bindKey = crypto.randomBytes(32);
  private readonly failures: FailureLog;
  private readonly rows: AccountRows;
  private readonly userAttributes: string[];
  private readonly aliasFilter: string | null;
  private readonly data: DataStore;
  private readonly log: Logger;
  private readonly now: () => number;
  /** Warned once: entries without a primary address, no readable password. */
  private readonly warned = new Set<string>();

  constructor(opts: LdapDirectoryOptions) {
    this.cfg = opts.config;
    this.data = opts.data;
    this.log = opts.log.child({ directory: 'ldap' });
    this.now = opts.now;
    this.pool = new LdapPool({
      url: this.cfg.url,
      starttls: this.cfg.starttls,
      tlsOptions: opts.tlsOptions,
      timeout: this.cfg.timeout,
      connectTimeout: this.cfg.connect_timeout,
      bindDn: this.cfg.bind_dn ?? null,
      bindPassword: opts.bindPassword,
      size: this.cfg.pool_size,
    });
    this.lookups = new LookupCache(this.cfg.cache_ttl, this.cfg.negative_cache_ttl, this.cfg.cache_size, this.now);
    this.binds = new LRUCache({ max: this.cfg.cache_size });
    this.failures = new FailureLog(this.log, this.cfg.failure_log_interval, this.now, this.cfg.url);
    this.rows = new AccountRows(this.data, this.log);
    const a = this.cfg.attributes;
    this.userAttributes = [a.mail, a.alias, a.uid, a.display_name, a.quota, a.enabled, ...(this.cfg.auth === 'compare' ? [a.password] : [])].filter(Boolean);
    this.aliasFilter = !a.alias ? null : (this.cfg.alias_filter ?? defaultAliasFilter(this.cfg.user_filter, a.mail, a.alias));
  }

  describe(): string {
    return `ldap ${this.cfg.url}${this.cfg.starttls ? ' (StartTLS)' : ''}, base ${this.cfg.base_dn}, auth = "${this.cfg.auth}"`;
  }

  isLocalDomain(domain: string): Promise<boolean> {
    return this.data.isLocalDomain(domain);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  // ---- LDAP operations: every failure becomes DirectoryUnavailableError ----

  private async search(base: string, filter: string, attributes: string[], scope: 'base' | 'one' | 'sub', sizeLimit: number, during: string): Promise<Entry[]> {
    try {
      const r = await this.pool.run((c) => c.search(base, { scope, filter, attributes: attributes.length ? attributes : ['1.1'], sizeLimit, derefAliases: 'never', timeLimit: Math.ceil(this.cfg.timeout / 1000) }));
      this.failures.success();
      return r.searchEntries;
    } catch (err) {
      // A base-scope read of a DN that is gone (a group member deleted): nothing there, not a failure.
      if (err instanceof NoSuchObjectError && scope === 'base') {
        this.failures.success();
        return [];
      }
      this.failures.failure(err, during);
      throw new DirectoryUnavailableError(err);
    }
  }

  private async cached(key: string, load: () => Promise<Entry[]>, fresh = false): Promise<{ value: Entry[]; cached: boolean }> {
    return this.lookups.get(key, load, (v) => v.length === 0, fresh);
  }

  private users(entries: Entry[]): LdapUser[] {
    const out: LdapUser[] = [];
    for (const e of entries) {
      const u = toUser(e, this.cfg);
      if (u) out.push(u);
      else this.warnOnce(`nomail:${e.dn}`, { dn: e.dn, attribute: this.cfg.attributes.mail }, 'LDAP entry matched but has no usable primary address (attributes.mail): ignored');
    }
    return out;
  }

  private warnOnce(key: string, fields: object, msg: string): void {
    if (this.warned.has(key) || this.warned.size > 10_000) return;
    this.warned.add(key);
    this.log.warn(fields, msg);
  }

  /** Users whose primary or alternate address is `address`. */
  private async usersAt(address: string, fresh = false): Promise<{ users: LdapUser[]; cached: boolean }> {
    const a = address.trim().toLowerCase();
    if (!isSearchableName(a)) return { users: [], cached: false };
    const primary = expandFilter(this.cfg.user_filter, a);
    const filter = this.aliasFilter ? `(|${primary}${expandFilter(this.aliasFilter, a)})` : primary;
    const r = await this.cached(`a:${a}`, () => this.search(this.cfg.base_dn, filter, this.userAttributes, this.cfg.scope, LOOKUP_SIZE_LIMIT, 'recipient lookup'), fresh);
    return { users: this.users(r.value), cached: r.cached };
  }

  /** Users a login name refers to: login_filter, else user_filter for full addresses. */
  private async usersByLogin(login: string, fresh = false): Promise<{ users: LdapUser[]; cached: boolean }> {
    const name = login.trim().toLowerCase();
    if (!isSearchableName(name)) return { users: [], cached: false };
    const template = this.cfg.login_filter ?? (name.includes('@') ? this.cfg.user_filter : null);
    if (!template) return { users: [], cached: false };
    const filter = expandFilter(template, name);
    const r = await this.cached(`l:${name}`, () => this.search(this.cfg.base_dn, filter, this.userAttributes, this.cfg.scope, LOOKUP_SIZE_LIMIT, 'login lookup'), fresh);
    return { users: this.users(r.value), cached: r.cached };
  }

  private async groupsAt(address: string): Promise<Entry[]> {
    const a = address.trim().toLowerCase();
    if (!this.cfg.group_filter || !isSearchableName(a)) return [];
    const filter = expandFilter(this.cfg.group_filter, a);
    const base = this.cfg.group_base_dn ?? this.cfg.base_dn;
    return (await this.cached(`g:${a}`, () => this.search(base, filter, [this.cfg.group_member_attribute, this.cfg.attributes.mail], 'sub', LOOKUP_SIZE_LIMIT, 'group lookup'))).value;
  }

  /** One entry by DN (a group member): its address, flag and own members (nested groups). */
  private async entryAt(dn: string): Promise<Entry | null> {
    const attrs = [...this.userAttributes, this.cfg.group_member_attribute];
    const r = await this.cached(`d:${dn.toLowerCase()}`, () => this.search(dn, '(objectClass=*)', attrs, 'base', 1, 'group member lookup'));
    return r.value[0] ?? null;
  }

  /** Users whose uid attribute is `uid` (memberUid groups). */
  private async usersWithUid(uid: string): Promise<LdapUser[]> {
    const u = this.cfg.attributes.uid;
    if (!u || !isSearchableName(uid)) return [];
    const filter = `(&${wildcardFilter(this.cfg.user_filter)}(${u}=${escapeFilterValue(uid)}))`;
    return this.users((await this.cached(`u:${uid.toLowerCase()}`, () => this.search(this.cfg.base_dn, filter, this.userAttributes, this.cfg.scope, LOOKUP_SIZE_LIMIT, 'group member lookup'))).value);
  }

  // ---- Directory ----

  async resolve(address: string): Promise<Resolution> {
    const accounts = new Map<number, string>();
    const remote = new Set<string>();
    const seen = new Set<string>();
    const found = await this.expand(address.trim().toLowerCase(), 0, accounts, remote, seen);
    if (found.kind === 'non-local') return { kind: 'non-local' };
    if (found.kind === 'unknown') return { kind: 'unknown' };
    return { kind: 'deliver', accounts: [...accounts].map(([id, email]) => ({ id, email })), remote: [...remote] };
  }

  private async expand(address: string, depth: number, accounts: Map<number, string>, remote: Set<string>, seen: Set<string>): Promise<Found> {
    const { domain } = splitAddress(address);
    if (!domain || !(await this.data.isLocalDomain(domain))) {
      if (depth === 0) return { kind: 'non-local' };
      remote.add(address);
      return { kind: 'ok' };
    }
    if (seen.has(address) || depth > MAX_ALIAS_DEPTH) return { kind: 'ok' };
    seen.add(address);
    for (const candidate of addressCandidates(address)) {
      const enabled = (await this.usersAt(candidate)).users.filter((u) => u.enabled);
      if (enabled.length) {
        for (const u of enabled) {
          const row = await this.rows.ensure(u);
          accounts.set(row.id, row.email);
        }
        return { kind: 'ok' };
      }
      const groups = await this.groupsAt(candidate);
      if (groups.length) {
        for (const g of groups) await this.expandMembers(g, depth + 1, accounts, remote, seen);
        return { kind: 'ok' };
      }
      const targets = await this.data.aliasTargets(candidate);
      if (targets.length) {
        for (const t of targets) await this.expand(t, depth + 1, accounts, remote, seen);
        return { kind: 'ok' };
      }
    }
    const catchAll = await this.data.aliasTargets(`@${domain}`);
    if (catchAll.length) {
      for (const t of catchAll) await this.expand(t, depth + 1, accounts, remote, seen);
      return { kind: 'ok' };
    }
    return { kind: 'unknown' };
  }

  /** A group's members: DNs (read; their address resolves as a recipient, or nested members), addresses, or uids. */
  private async expandMembers(group: Entry, depth: number, accounts: Map<number, string>, remote: Set<string>, seen: Set<string>): Promise<void> {
    if (depth > MAX_ALIAS_DEPTH) return;
    for (const v of values(group, this.cfg.group_member_attribute)) {
      const member = v.trim();
      if (looksLikeDn(member)) {
        const key = `dn:${member.toLowerCase()}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const e = await this.entryAt(member);
        if (!e) continue;
        const mail = first(e, this.cfg.attributes.mail);
        if (mail) await this.expand(mail.trim().toLowerCase(), depth + 1, accounts, remote, seen);
        else await this.expandMembers(e, depth + 1, accounts, remote, seen);
      } else if (member.includes('@')) {
        await this.expand(member.toLowerCase(), depth + 1, accounts, remote, seen);
      } else {
        for (const u of await this.usersWithUid(member)) {
          if (!u.enabled) continue;
          const row = await this.rows.ensure(u);
          accounts.set(row.id, row.email);
        }
      }
    }
  }

  async findUsers(address: string): Promise<DirectoryUser[]> {
    const byAddress = (await this.usersAt(address, true)).users;
    const byLogin = address.includes('@') && !this.cfg.login_filter ? [] : (await this.usersByLogin(address, true)).users;
    const seen = new Set<string>();
    return [...byAddress, ...byLogin].filter((u) => !seen.has(u.dn) && seen.add(u.dn)).map(publicUser);
  }

  async findGroups(address: string): Promise<DirectoryGroup[]> {
    return (await this.groupsAt(address)).map((g) => ({ dn: g.dn, members: values(g, this.cfg.group_member_attribute) }));
  }

  async listUsers(): Promise<DirectoryUser[]> {
    const filter = wildcardFilter(this.cfg.user_filter);
    let entries: Entry[] = [];
    try {
      const r = await this.pool.run(async (c) => {
        const all: Entry[] = [];
        for await (const page of c.searchPaginated(this.cfg.base_dn, { scope: this.cfg.scope, filter, attributes: this.userAttributes, paged: { pageSize: 500 } })) all.push(...page.searchEntries);
        return all;
      });
      this.failures.success();
      entries = r;
    } catch (err) {
      this.failures.failure(err, 'user list');
      throw new DirectoryUnavailableError(err);
    }
    return this.users(entries).map(publicUser).sort((a, b) => a.email.localeCompare(b.email));
  }

  async account(user: DirectoryUser): Promise<{ id: number; email: string }> {
    return this.rows.ensure(user);
  }

  /**
   * A login: the user the name refers to, then their password — by binding as them
   * (auth = "bind"; a success is remembered for cache_ttl) or by verifying the
   * entry's password hash (auth = "compare"; a mismatch against a cached entry
   * re-reads it once, so a new password works at once while the old one keeps
   * working until the cache entry expires, as with Dovecot's auth cache).
   */
  async authenticate(login: string, password: string): Promise<LoginVerdict> {
    if (!password) return { kind: 'unknown' };
    const { users, cached } = await this.usersByLogin(login);
    if (!users.length) return { kind: 'unknown' };
    if (users.length > 1) {
      this.log.warn({ login: login.slice(0, 100), entries: users.map((u) => u.dn).slice(0, 5) }, 'login name matches several LDAP entries: refused (make login_filter/user_filter unique)');
      return { kind: 'ambiguous', count: users.length };
    }
    const user = users[0]!;
    if (!user.enabled) return { kind: 'disabled', user: publicUser(user) };
    if (this.cfg.auth === 'bind') return this.checkByBind(user, password);
    if (await verifyAny(user.hashes, password)) return { kind: 'ok', user: publicUser(user) };
    if (cached) {
      const again = (await this.usersByLogin(login, true)).users;
      const u2 = again.length === 1 && again[0]!.dn === user.dn ? again[0]! : null;
      if (u2 && u2.hashes.join('\n') !== user.hashes.join('\n')) {
        if (!u2.enabled) return { kind: 'disabled', user: publicUser(u2) };
        if (await verifyAny(u2.hashes, password)) return { kind: 'ok', user: publicUser(u2) };
      }
    }
    if (!user.hashes.length) {
      this.warnOnce(`nopw:${user.dn}`, { dn: user.dn, attribute: this.cfg.attributes.password }, 'auth = "compare" but the entry has no password bind_dn can read (check the LDAP ACL, or use auth = "bind")');
      return { kind: 'no-password', user: publicUser(user) };
    }
    return { kind: 'bad-password', user: publicUser(user) };
  }

  private async checkByBind(user: LdapUser, password: string): Promise<LoginVerdict> {
    const key = crypto.createHmac('sha256', this.bindKey).update(user.dn).update('\0').update(password).digest('base64');
    const until = this.binds.get(key);
    if (until !== undefined && until > this.now()) return { kind: 'ok', user: publicUser(user) };
    let ok: boolean;
    try {
      ok = await this.pool.bindAs(user.dn, password);
      this.failures.success();
    } catch (err) {
      this.failures.failure(err, 'password check (bind as the user)');
      throw new DirectoryUnavailableError(err);
    }
    if (!ok) {
      this.binds.delete(key);
      return { kind: 'bad-password', user: publicUser(user) };
    }
    if (this.cfg.cache_ttl > 0) this.binds.set(key, this.now() + this.cfg.cache_ttl);
    return { kind: 'ok', user: publicUser(user) };
  }

  /** Drops every cached answer (tests; `postern directory test` starts without one anyway). */
  clearCache(): void {
    this.lookups.clear();
    this.binds.clear();
  }
}

async function verifyAny(hashes: string[], password: string): Promise<boolean> {
  for (const h of hashes) if (await verifyPassword(h, password)) return true;
  return false;
}

/**
 * alias_filter when not configured: user_filter with its "(mail=%s)" term (attributes.mail)
 * turned into "(mailAlternateAddress=%s)" (attributes.alias), so both search the same
 * kind of entries; without such a term, just "(mailAlternateAddress=%s)".
 */
export function defaultAliasFilter(userFilter: string, mailAttr: string, aliasAttr: string): string {
  const term = new RegExp(`\\(${mailAttr.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')}=%s\\)`, 'i');
  return term.test(userFilter) ? userFilter.replace(term, `(${aliasAttr}=%s)`) : `(${aliasAttr}=%s)`;
}
