import type { Context } from '../core/context.ts';
import { TrustedProxies as AddressSet } from '../net/proxy-protocol.ts';
import { accessCheck } from './access.ts';
import { dnsblCheck, dnsblZones, lookupDnsbl, type DnsblResult, type DnsblZone } from './dnsbl.ts';
import { greylistCheck } from './greylist.ts';
import { runStage, type Check, type PolicyInput } from './pipeline.ts';
import type { CheckResult, Verdict } from './verdict.ts';
import { contentFilter } from './content/filters.ts';
import type { ContentFilter } from './content/types.ts';

/** A check that does not answer within this is a temporary failure (the DNSBL's own lookups time out sooner). */
const CHECK_TIMEOUT_MS = 20_000;

/**
 * The inbound policy of the MX port: mail from unauthenticated clients outside
 * `policy.trusted_networks`. One per listener; each SMTP connection gets a PolicyConnection
 * (checks built from the configuration of that moment, so a reload applies to new
 * connections) that starts its DNS lookups at connect.
 *
 * Checks, in order (RCPT stage): access lists (src/policy/access.ts), DNSBL/DNSWL
 * (src/policy/dnsbl.ts), greylisting (src/policy/greylist.ts). SPF/DKIM/DMARC and content
 * scoring run at DATA (src/policy/content/data-stage.ts).
 */
export class InboundPolicy {
  /** Derived from `ctx.config.policy`; rebuilt when a reload (SIGHUP) replaced that object. */
  private built: { source: Context['config']['policy']; trusted: AddressSet; zones: DnsblZone[]; filter: ContentFilter | null } | null = null;

  constructor(private readonly ctx: Pick<Context, 'config' | 'data' | 'dns' | 'now'>) {}

  private current() {
    const p = this.ctx.config.policy;
    if (this.built?.source !== p) this.built = { source: p, trusted: new AddressSet(p.trusted_networks), zones: dnsblZones(p.dnsbl), filter: contentFilter(p.spam, this.ctx.data) };
    return this.built;
  }

  /** Clients in policy.trusted_networks skip the inbound checks and may relay. */
  trusts(ip: string): boolean {
    return this.current().trusted.matches(ip);
  }

  /** Per connection: the DNSBL lookups start now, while the client says EHLO and MAIL. */
  connection(ip: string): PolicyConnection {
    const { source: p, zones, filter } = this.current();
    const lookup = () => lookupDnsbl(this.ctx.dns, zones, ip, p.dnsbl.timeout);
    const started = zones.length ? lookup() : null;
    const checks: Check[] = [accessCheck(this.ctx.data)];
    if (zones.length) checks.push(dnsblCheck(() => started ?? lookup(), p.dnsbl.threshold));
    // Last: only mail nothing else refused is delayed (and its triplet remembered).
    if (p.greylist.enabled) checks.push(greylistCheck(this.ctx.data, p.greylist, () => this.ctx.now()));
    return new PolicyConnection(checks, started, filter);
  }
}

export class PolicyConnection {
  constructor(
    private readonly checks: Check[],
    private readonly lookup: Promise<DnsblResult> | null,
    /** The DATA stage's content filter (policy.spam), as configured when the client connected. */
    readonly filter: ContentFilter | null,
  ) {
    // Never an unhandled rejection while nobody awaits it yet (lookupDnsbl does not throw; belt and braces).
    lookup?.catch(() => undefined);
  }

  /** Zones that listed the client without reaching the rejection threshold: evidence for the content score. */
  async dnsblEvidence(): Promise<string[]> {
    if (!this.lookup) return [];
    const r = await this.lookup.catch(() => null);
    return r ? r.listed.map((h) => h.zone) : [];
  }

  /** The RCPT stage for one recipient: the first check that decides, and every check's result. */
  rcpt(input: PolicyInput): Promise<{ verdict: Verdict; results: CheckResult[] }> {
    return runStage(this.checks, 'rcpt', input, CHECK_TIMEOUT_MS);
  }
}
