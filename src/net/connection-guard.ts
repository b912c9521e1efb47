import type { BanGuard } from '../auth/bans.ts';
import { clientKey } from './ip.ts';

export type Admission = { ok: true } | { ok: false; reason: 'banned' | 'too-many' | 'rate'; until?: number };

/**
 * The door every listener (SMTP, submission, LMTP; later IMAP, POP3, web) asks
 * before serving a client: is it banned (store-backed, cluster-wide), does it hold
 * too many connections at once across all listeners (Postfix
 * smtpd_client_connection_count_limit), or open them too fast (Postfix
 * smtpd_client_connection_rate_limit, per node like Postfix's anvil)? Trusted
 * networks (bans.trusted_networks) pass every check.
 */
export class ConnectionGuard {
  private readonly open = new Map<string, number>();
  private readonly rate = new Map<string, { count: number; windowEnds: number }>();
  private lastSweep = 0;

  constructor(
    private readonly bans: BanGuard,
    private readonly limits: { maxPerIp: number; ratePerWindow: number; windowMs: number },
    private readonly now: () => number = Date.now,
  ) {}

  /** On success the caller must call release(address) when the connection closes. */
  async admit(address: string): Promise<Admission> {
    const ban = await this.bans.banned(address);
    if (ban) return { ok: false, reason: 'banned', until: ban.until };
    if (this.bans.isTrusted(address)) {
      this.open.set(address, (this.open.get(address) ?? 0) + 1);
      return { ok: true };
    }
    const key = clientKey(address);
    if (this.limits.ratePerWindow > 0 && !this.countRate(key)) return { ok: false, reason: 'rate' };
    const n = this.open.get(address) ?? 0;
    if (n >= this.limits.maxPerIp) return { ok: false, reason: 'too-many' };
    this.open.set(address, n + 1);
    return { ok: true };
  }

  release(address: string): void {
    const n = (this.open.get(address) ?? 1) - 1;
    if (n <= 0) this.open.delete(address);
    else this.open.set(address, n);
  }

  private countRate(key: string): boolean {
    const at = this.now();
    if (at - this.lastSweep > this.limits.windowMs) {
      for (const [k, v] of this.rate) if (v.windowEnds <= at) this.rate.delete(k);
      this.lastSweep = at;
    }
    let r = this.rate.get(key);
    if (!r || r.windowEnds <= at) {
      r = { count: 0, windowEnds: at + this.limits.windowMs };
      this.rate.set(key, r);
    }
    r.count++;
    return r.count <= this.limits.ratePerWindow;
  }
}
