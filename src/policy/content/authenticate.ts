import type { Readable } from 'node:stream';
import { authenticate, type AuthenticateResult, type DNSResolver } from 'mailauth';
import type { DnsResolver } from '../../net/dns.ts';
import type { AuthSummary } from './types.ts';

/**
 * SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and ARC (RFC 8617) verification of an
 * inbound message with mailauth, through the server's own resolver (`[dns] servers`), and
 * the Authentication-Results header (RFC 8601) and Received-SPF header (RFC 7208 §9.1) that
 * record the outcome for the user's client and for the content scorer. BIMI is not checked
 * (no client of ours shows logos).
 */
export interface AuthOutcome {
  summary: AuthSummary;
  /** "Received-SPF: …\r\nAuthentication-Results: …\r\n", ready to put in front of the message. */
  headers: string;
}

export interface AuthParams {
  ip: string;
  helo: string;
  /** MAIL FROM; '' for the null sender (SPF then checks the HELO name, RFC 7208 §2.4). */
  sender: string;
  /** Our host name: the authserv-id of the header (RFC 8601 §2.5). */
  hostname: string;
  dns: DnsResolver;
}

export async function authenticateMessage(message: Readable | Buffer, p: AuthParams): Promise<AuthOutcome> {
  const res = await authenticate(message, {
    ip: p.ip,
    helo: p.helo,
    sender: p.sender || undefined,
    mta: p.hostname,
    resolver: mailauthResolver(p.dns),
    disableBimi: true,
    trustReceived: false,
  });
  return { summary: summarize(res), headers: res.headers };
}

function summarize(res: AuthenticateResult): AuthSummary {
  const dmarc = res.dmarc || null;
  const fromDomain = (res.dkim.headerFrom ?? []).length === 1 ? String(res.dkim.headerFrom[0]).split('@').pop()!.toLowerCase() : '';
  const dmarcResult = dmarc ? normal(dmarc.status.result) : 'none';
  return {
    spf: res.spf ? normal(res.spf.status.result) : 'none',
    dkim: (res.dkim.results ?? []).filter((r) => r.status.result !== 'none').map((r) => ({ result: normal(r.status.result), domain: (r.signingDomain ?? '').toLowerCase(), aligned: !!r.status.aligned })),
    dmarc: dmarcResult,
    // The policy that applies to this From domain (sp= for a subdomain, RFC 7489 §6.3), when it failed.
    dmarcPolicy: dmarc && dmarcResult === 'fail' ? dmarc.policy || dmarc.p || 'none' : null,
    arc: res.arc ? normal(res.arc.status.result) : 'none',
    fromDomain,
  };
}

/** mailauth says "temperr" in places; RFC 8601 §2.7 spells it "temperror". */
function normal(result: string): string {
  return result === 'temperr' ? 'temperror' : result;
}

/** mailauth calls resolver(name, rrtype) like dns.promises.resolve; ours has one method per type. */
function mailauthResolver(dns: DnsResolver): DNSResolver {
  return async (name: string, rrtype: string) => {
    switch (rrtype) {
      case 'TXT':
        return dns.resolveTxt(name);
      case 'A':
        return dns.resolve4(name);
      case 'AAAA':
        return dns.resolve6(name);
      case 'MX':
        // mailauth's SPF "mx" mechanism reads { exchange, priority } objects, as node returns them.
        return (await dns.resolveMx(name)) as unknown as string[];
      case 'PTR':
        if (dns.resolvePtr) return dns.resolvePtr(name);
        throw Object.assign(new Error(`no reverse lookups: ${name}`), { code: 'ENOTFOUND' });
      default:
        throw Object.assign(new Error(`unsupported record type ${rrtype}`), { code: 'ENOTIMP' });
    }
  };
}
