import type { Context } from '../core/context.ts';
import { TrustedProxies as AddressSet } from '../net/proxy-protocol.ts';
import { accessCheck } from './access.ts';
import { dnsblCheck, dnsblZones, lookupDnsbl, type DnsblResult } from './dnsbl.ts';
import { greylistCheck } from './greylist.ts';
import { runStage, type Check, type PolicyInput } from './pipeline.ts';
import type { CheckResult, Verdict } from './verdict.ts';

/** A check that does not answer within this is a temporary failure (the DNSBL's own lookups time out sooner). */
const CHECK_TIMEOUT_MS = 20_000;

/**
 * The inbound policy of the MX port: mail from unauthenticated clients outside
 * `policy.trusted_networks`. Built once per server from the config; each SMTP connection gets a
 * PolicyConnection that starts its DNS lookups at connect.
 *
 * Checks, in order (RCPT stage): access lists (src/policy/access.ts), DNSBL/DNSWL
 * (src/policy/dnsbl.ts), greylisting (src/policy/greylist.ts). SPF/DKIM/DMARC and content
 * scoring come next (issue #9).
 */
export class InboundPolicy {
  private readonly trusted: AddressSet;
  private readonly zones;
  private readonly threshold: number;
  private readonly timeoutMs: number;

  constructor(private readonly ctx: Pick<Context, 'config' | 'data' | 'dns' | 'now'>) {
    const p = ctx.config.policy;
    this.trusted = new AddressSet(p.trusted_networks);
    this.zones = dnsblZones(p.dnsbl);
    this.threshold = p.dnsbl.threshold;
    this.timeoutMs = p.dnsbl.timeout;
  }

  /** Clients in policy.trusted_networks skip the inbound checks and may relay. */
  trusts(ip: string): boolean {
    return this.trusted.matches(ip);
  }

  /** Per connection: the DNSBL lookups start now, while the client says EHLO and MAIL. */
  connection(ip: string): PolicyConnection {
    return new PolicyConnection(this.checksFor(ip), this.zones.length ? this.lookup(ip) : null);
  }

  private lookup(ip: string): Promise<DnsblResult> {
    return lookupDnsbl(this.ctx.dns, this.zones, ip, this.timeoutMs);
  }

  private checksFor(ip: string): (lookup: Promise<DnsblResult> | null) => Check[] {
    return (lookup) => {
      const checks: Check[] = [accessCheck(this.ctx.data)];
      if (this.zones.length) checks.push(dnsblCheck(() => lookup ?? this.lookup(ip), this.threshold));
      // Last: only mail nothing else refused is delayed (and its triplet remembered).
      const grey = this.ctx.config.policy.greylist;
      if (grey.enabled) checks.push(greylistCheck(this.ctx.data, grey, () => this.ctx.now()));
      return checks;
    };
  }
}

export class PolicyConnection {
  private readonly checks: Check[];
  constructor(build: (lookup: Promise<DnsblResult> | null) => Check[], lookup: Promise<DnsblResult> | null) {
    // Never an unhandled rejection while nobody awaits it yet (lookupDnsbl does not throw; belt and braces).
    lookup?.catch(() => undefined);
    this.checks = build(lookup);
  }

  /** The RCPT stage for one recipient: the first check that decides, and every check's result. */
  rcpt(input: PolicyInput): Promise<{ verdict: Verdict; results: CheckResult[] }> {
    return runStage(this.checks, 'rcpt', input, CHECK_TIMEOUT_MS);
  }
}
