import dns from 'node:dns';

/**
 * The part of node:dns/promises' Resolver that mail needs (MX routing, address
 * lookups, SPF/DKIM/DMARC TXT records). Code takes this interface so tests can pass
 * a fake object instead of a real DNS server.
 */
export interface DnsResolver {
  resolveMx(name: string): Promise<Array<{ exchange: string; priority: number }>>;
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
  resolveTxt(name: string): Promise<string[][]>;
  /** Reverse lookups (SPF's ptr mechanism, RFC 7208 §5.5); resolvers without it answer "no such name". */
  resolvePtr?(name: string): Promise<string[]>;
}

/**
 * A resolver talking to the system's DNS servers (/etc/resolv.conf), or to `servers`
 * when given: entries "192.0.2.53", "192.0.2.53:5353", "2001:db8::53" or
 * "[2001:db8::53]:5353". `timeoutMs` is per try; each query is tried twice.
 * Note that, unlike dns.lookup, this does not read /etc/hosts.
 */
export function systemResolver(servers?: string[], timeoutMs = 5000): DnsResolver {
  const resolver = new dns.promises.Resolver({ timeout: timeoutMs, tries: 2 });
  if (servers && servers.length > 0) resolver.setServers(servers.map((s) => s.trim()));
  return {
    resolveMx: (name) => resolver.resolveMx(name),
    resolve4: (name) => resolver.resolve4(name),
    resolve6: (name) => resolver.resolve6(name),
    resolveTxt: (name) => resolver.resolveTxt(name),
    resolvePtr: (name) => resolver.resolvePtr(name),
  };
}

/** The `code` of a DNS error (node's Resolver sets e.g. "ENOTFOUND", "ESERVFAIL", "ETIMEOUT"), or undefined. */
export function dnsErrorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Whether a DNS error is an authoritative "does not exist": the name does not exist
 * (ENOTFOUND, i.e. NXDOMAIN) or it has no record of the asked type (ENODATA). Those
 * are permanent answers; everything else (ESERVFAIL, ETIMEOUT, ECONNREFUSED,
 * EREFUSED, …) is temporary and must be retried later.
 */
export function isNotFound(err: unknown): boolean {
  const code = dnsErrorCode(err);
  return code === dns.NOTFOUND || code === dns.NODATA;
}
