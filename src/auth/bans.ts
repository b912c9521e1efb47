import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { DataStore } from '../store/data-store.ts';
import { TrustedProxies } from '../net/proxy-protocol.ts';
import { clientKey } from '../net/ip.ts';

/** What the administrator is told about a new ban (never a password). */
export interface BanNotice {
  key: string;
  address: string;
  protocol: string;
  usernames: string[];
  failures: number;
  until: number;
  repeat: boolean;
}

export interface BanEntry {
  key: string;
  until: number;
  /** Failed logins that led to it (0 for a ban added by hand). */
  failures: number;
}

// policy_state kinds (shared by every node through the store, so bans hold cluster-wide and survive restarts).
const BAN = 'ban';
const FAILURES = 'authfail';
const TRIED = 'authuser';
const HISTORY = 'banhist';

/** Usernames in notices are shortened and stripped of control characters (they are attacker-chosen). */
function cleanUsername(u: string): string {
  return u.replace(/[\x00-\x1f\x7f]/g, '?').slice(0, 100);
}

/**
 * fail2ban built in: failed logins are counted per client (IPv4 address or IPv6 /64)
 * across every protocol; `max_retry` failures within `find_time` ban the client for
 * `ban_time` (`repeat_ban_time` when it was banned before within that time). Trusted
 * networks are never banned. State lives in the store's policy_state table.
 */
export class BanGuard {
  private readonly trusted: TrustedProxies;

  constructor(
    private readonly data: DataStore,
    private readonly cfg: Config['bans'],
    private readonly log: Logger,
    private readonly notify: (n: BanNotice) => Promise<void>,
    private readonly now: () => number = Date.now,
  ) {
    this.trusted = new TrustedProxies(cfg.trusted_networks);
  }

  isTrusted(address: string | undefined): boolean {
    return !!address && this.trusted.matches(address);
  }

  /** The live ban for this client, or null. */
  async banned(address: string): Promise<BanEntry | null> {
    if (!this.cfg.enabled || this.isTrusted(address)) return null;
    const key = clientKey(address);
    const s = await this.data.getState(BAN, key, this.now());
    return s ? { key, until: s.expiresAt, failures: s.value } : null;
  }

  /**
   * Counts one failed login. Returns the client's failures in the current window (the
   * caller grows its reply delay with it) and whether this failure started a ban.
   */
  async recordFailure(address: string, protocol: string, username: string): Promise<{ failures: number; banned: boolean }> {
    const key = clientKey(address);
    const at = this.now();
    const failures = await this.data.bumpCounter(FAILURES, key, this.cfg.find_time, at);
    if (username) await this.data.putState(TRIED, `${key} ${cleanUsername(username)}`, 1, at + this.cfg.find_time);
    // bumpCounter is atomic: exactly one caller (on any node) sees the count reach max_retry, so one ban and one notice.
    if (!this.cfg.enabled || this.isTrusted(address) || failures !== this.cfg.max_retry) return { failures, banned: false };
    const usernames = (await this.data.listState(TRIED, at)).filter((e) => e.key.startsWith(`${key} `)).map((e) => e.key.slice(key.length + 1));
    const { until, repeat } = await this.ban(key, null, failures);
    this.log.warn({ client: address, ban: key, protocol, failures, usernames, until: new Date(until).toISOString(), repeat }, 'client banned after failed logins');
    this.notify({ key, address, protocol, usernames, failures, until, repeat }).catch((err: unknown) => this.log.error({ err }, 'could not send the ban notice'));
    return { failures, banned: true };
  }

  /**
   * Bans a client for `durationMs`, or by the configured times when null (a repeat
   * offender — banned before, within repeat_ban_time — gets repeat_ban_time).
   */
  async ban(addressOrKey: string, durationMs: number | null, failures = 0): Promise<{ key: string; until: number; repeat: boolean }> {
    const key = addressOrKey.endsWith('/64') ? addressOrKey : clientKey(addressOrKey);
    const at = this.now();
    const repeat = (await this.data.getState(HISTORY, key, at)) !== null;
    const length = durationMs ?? (repeat ? this.cfg.repeat_ban_time : this.cfg.ban_time);
    const until = at + length;
    await this.data.putState(BAN, key, failures, until);
    await this.data.putState(HISTORY, key, 1, until + this.cfg.repeat_ban_time);
    await this.data.deleteState(FAILURES, key);
    return { key, until, repeat };
  }

  /** Lifts a ban and forgets the client's failure count; false when it was not banned. */
  async unban(addressOrKey: string): Promise<boolean> {
    const key = addressOrKey.endsWith('/64') ? addressOrKey : clientKey(addressOrKey);
    const was = (await this.data.getState(BAN, key, this.now())) !== null;
    await this.data.deleteState(BAN, key);
    await this.data.deleteState(FAILURES, key);
    await this.data.deleteState(HISTORY, key);
    return was;
  }

  async list(): Promise<BanEntry[]> {
    return (await this.data.listState(BAN, this.now())).map((e) => ({ key: e.key, until: e.expiresAt, failures: e.value }));
  }
}
