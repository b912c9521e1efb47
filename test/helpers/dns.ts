import type { DnsResolver } from '../../src/net/dns.ts';

/** A DNS error shaped like node's (err.code). */
export function dnsError(code: 'ENOTFOUND' | 'ENODATA' | 'ESERVFAIL' | 'ETIMEOUT', name: string): Error {
  return Object.assign(new Error(`${code} ${name}`), { code });
}

export interface FakeZone {
  /** domain → [priority, exchange] */
  mx?: Record<string, Array<[number, string]>>;
  a?: Record<string, string[]>;
  aaaa?: Record<string, string[]>;
  txt?: Record<string, string[][]>;
  /** Names whose every lookup fails temporarily (SERVFAIL). */
  servfail?: string[];
}

/**
 * A fake resolver over a mutable zone: names absent from every table do not exist
 * (ENOTFOUND); a name present in another table has no such record (ENODATA).
 */
export function fakeResolver(zone: FakeZone): DnsResolver & { zone: FakeZone } {
  const known = (n: string) => [zone.mx, zone.a, zone.aaaa, zone.txt].some((t) => t && n in t);
  function look<T>(table: Record<string, T[]> | undefined, name: string): T[] {
    const n = name.toLowerCase().replace(/\.$/, '');
    if (zone.servfail?.includes(n)) throw dnsError('ESERVFAIL', n);
    const v = table?.[n];
    if (v && v.length) return v;
    throw dnsError(known(n) ? 'ENODATA' : 'ENOTFOUND', n);
  }
  return {
    zone,
    async resolveMx(name) {
      return look(zone.mx, name).map(([priority, exchange]) => ({ priority, exchange }));
    },
    async resolve4(name) {
      return look(zone.a, name);
    },
    async resolve6(name) {
      return look(zone.aaaa, name);
    },
    async resolveTxt(name) {
      return look(zone.txt, name);
    },
  };
}

/** Every lookup fails temporarily: queued mail stays deferred and nothing bounces (the test default). */
export const unreachableDns: DnsResolver = {
  async resolveMx(n) {
    throw dnsError('ETIMEOUT', n);
  },
  async resolve4(n) {
    throw dnsError('ETIMEOUT', n);
  },
  async resolve6(n) {
    throw dnsError('ETIMEOUT', n);
  },
  async resolveTxt(n) {
    throw dnsError('ETIMEOUT', n);
  },
};
