import net from 'node:net';
import ipaddr from 'ipaddr.js';
import type { DnsResolver } from '../net/dns.ts';
import { isNotFound } from '../net/dns.ts';
import { TrustedProxies as AddressSet } from '../net/proxy-protocol.ts';
import type { Check } from './pipeline.ts';
import type { Verdict } from './verdict.ts';

/**
 * DNS blocklists and allowlists of client addresses (Postfix's reject_rbl_client /
 * permit_dnswl_client; RFC 5782). Every configured zone is asked at once, when the client
 * connects; the decision is taken at RCPT (like Postfix's smtpd_delay_reject), so the log line
 * names the sender and recipient. A zone lists the client when it answers an A record that
 * counts: one of the zone's `answers`, or by default any address in 127.0.0.0/8 except
 * 127.255.255.0/24, which Spamhaus and others use to say "query refused" (an open resolver, over
 * quota) — never a listing. A lookup that fails or times out counts as not listed: a broken
 * blocklist must not stop mail (it is logged).
 */
export interface DnsblZone {
  zone: string;
  weight: number;
  /** The answers that count; null: 127.0.0.0/8 without 127.255.255.0/24. */
  answers: AddressSet | null;
}

export interface DnsblHit {
  zone: string;
  answer: string;
  weight: number;
}

export interface DnsblResult {
  listed: DnsblHit[];
  /** Sum of the weights of the zones that listed the client. */
  score: number;
  /** Zones that did not answer usably (timeout, SERVFAIL …): not counted. */
  failed: Array<{ zone: string; error: string }>;
}

const DEFAULT_COUNTS = new AddressSet(['127.0.0.0/8']);
const REFUSED = new AddressSet(['127.255.255.0/24']);

export function dnsblZones(cfg: { zones: Array<string | { zone: string; weight: number; answers: string[] }> }): DnsblZone[] {
  return cfg.zones.map((z) =>
    typeof z === 'string'
      ? { zone: z.replace(/\.$/, '').toLowerCase(), weight: 1, answers: null }
      : { zone: z.zone.replace(/\.$/, '').toLowerCase(), weight: z.weight, answers: z.answers.length ? new AddressSet(z.answers) : null },
  );
}

/** The name to look up for `ip` in `zone`: reversed octets (IPv4) or nibbles (IPv6), RFC 5782 §2.1, §2.4. */
export function dnsblName(ip: string, zone: string): string | null {
  if (!net.isIP(ip)) return null;
  const addr = ipaddr.process(ip);
  if (addr.kind() === 'ipv4') return `${addr.toByteArray().reverse().join('.')}.${zone}`;
  const nibbles: string[] = [];
  for (const b of addr.toByteArray()) nibbles.push((b >> 4).toString(16), (b & 15).toString(16));
  return `${nibbles.reverse().join('.')}.${zone}`;
}

function counts(zone: DnsblZone, answer: string): boolean {
  if (REFUSED.matches(answer)) return false;
  return (zone.answers ?? DEFAULT_COUNTS).matches(answer);
}

/** Asks every zone about `ip` in parallel. */
export async function lookupDnsbl(resolver: DnsResolver, zones: readonly DnsblZone[], ip: string, timeoutMs: number): Promise<DnsblResult> {
  const result: DnsblResult = { listed: [], score: 0, failed: [] };
  await Promise.all(
    zones.map(async (z) => {
      const name = dnsblName(ip, z.zone);
      if (!name) return;
      let timer: NodeJS.Timeout | undefined;
      try {
        const answers = await Promise.race([
          resolver.resolve4(name),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEOUT' })), timeoutMs);
          }),
        ]);
        const hit = answers.find((a) => counts(z, a));
        if (hit) {
          result.listed.push({ zone: z.zone, answer: hit, weight: z.weight });
          result.score += z.weight;
        } else if (answers.some((a) => REFUSED.matches(a))) result.failed.push({ zone: z.zone, error: `query refused (${answers.join(', ')})` });
      } catch (err) {
        if (!isNotFound(err)) result.failed.push({ zone: z.zone, error: (err as { code?: string }).code ?? (err as Error).message });
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  result.listed.sort((a, b) => zones.findIndex((z) => z.zone === a.zone) - zones.findIndex((z) => z.zone === b.zone));
  return result;
}

/**
 * The RCPT-stage check: refuses the client when the listed zones' weights reach `threshold`
 * (554 5.7.1, Postfix's wording). `lookup` gives the connection's lookup, started at connect.
 */
export function dnsblCheck(lookup: (ip: string) => Promise<DnsblResult>, threshold: number): Check {
  return {
    name: 'dnsbl',
    stage: 'rcpt',
    async run(input): Promise<Verdict> {
      const r = await lookup(input.ip);
      const failed = r.failed.length ? `; not answered: ${r.failed.map((f) => `${f.zone} (${f.error})`).join(', ')}` : '';
      const listedBy = r.listed.map((h) => `${h.zone}=${h.answer} (${h.weight})`).join(', ');
      if (r.listed.length && r.score >= threshold) {
        const zone = r.listed.find((h) => h.weight > 0)?.zone ?? r.listed[0]!.zone;
        return {
          kind: 'reject',
          reply: { code: 554, enhanced: '5.7.1', text: `Service unavailable; client [${input.ip}] blocked using ${zone}` },
          reason: `listed by ${listedBy}: score ${r.score} >= ${threshold}${failed}`,
        };
      }
      return { kind: 'continue', reason: r.listed.length ? `listed by ${listedBy}: score ${r.score} < ${threshold}${failed}` : `not listed${failed}` };
    },
  };
}
