import net from 'node:net';
import type { DnsResolver } from '../../net/dns.ts';
import { TrustedProxies as AddressSet } from '../../net/proxy-protocol.ts';
import { parseContent } from './parse.ts';
import type { ScoreHit } from './types.ts';

/**
 * Domain blocklists (Spamhaus DBL, URIBL, SURBL; RFC 5782 §2.3): the envelope sender's
 * domain, the From domain and the hosts of the links in the body are looked up as
 * `<domain>.<zone>`; a listing is scoring evidence (points added to the content score), not
 * a reason to refuse on its own. Both the host name and its last two labels are asked (the
 * lists hold registered domains and some host names; without a public-suffix list, two
 * labels is the approximation SpamAssassin's URIDNSBL falls back to too). At most
 * MAX_NAMES names per message; a lookup that fails or times out counts as not listed, and
 * 127.255.255.x ("query refused") never counts.
 */
export interface DomainZone {
  zone: string;
  /** Points added to the content score when a domain of the message is listed. */
  score: number;
  answers: AddressSet | null;
}

const MAX_NAMES = 20;
const DEFAULT_COUNTS = new AddressSet(['127.0.0.0/8']);
const REFUSED = new AddressSet(['127.255.255.0/24']);

export function domainZones(cfg: Array<string | { zone: string; score: number; answers: string[] }>): DomainZone[] {
  return cfg.map((z) =>
    typeof z === 'string'
      ? { zone: z.replace(/\.$/, '').toLowerCase(), score: 3, answers: null }
      : { zone: z.zone.replace(/\.$/, '').toLowerCase(), score: z.score, answers: z.answers.length ? new AddressSet(z.answers) : null },
  );
}

/** The names a message gives to look up: sender domains first, then link hosts, each also cut to two labels. */
export async function messageDomains(message: Buffer, envelopeFrom: string): Promise<string[]> {
  const names: string[] = [];
  const add = (host: string) => {
    const h = host.toLowerCase().replace(/\.$/, '');
    if (!h || net.isIP(h) || !h.includes('.') || !/^[a-z0-9.-]+$/.test(h)) return;
    names.push(h, h.split('.').slice(-2).join('.'));
  };
  add(envelopeFrom.split('@')[1] ?? '');
  const parsed = await parseContent(message);
  if (parsed.from) add(parsed.from.address.split('@')[1] ?? '');
  for (const u of parsed.urls) add(u.host);
  return [...new Set(names)].slice(0, MAX_NAMES);
}

export async function lookupDomainLists(dns: DnsResolver, zones: readonly DomainZone[], names: readonly string[], timeoutMs: number): Promise<ScoreHit[]> {
  const hits: ScoreHit[] = [];
  await Promise.all(
    zones.map(async (z) => {
      // One hit per zone: a spam run links the same listed domain many times.
      const listed = await Promise.all(names.map(async (name) => ((await listedIn(dns, z, name, timeoutMs)) ? name : null)));
      const first = listed.find((n) => n !== null);
      if (first) hits.push({ rule: `URIBL_${z.zone.split('.')[0]!.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`, score: z.score, description: `${first} listed in ${z.zone}` });
    }),
  );
  return hits.sort((a, b) => a.rule.localeCompare(b.rule));
}

async function listedIn(dns: DnsResolver, z: DomainZone, name: string, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const answers = await Promise.race([
      dns.resolve4(`${name}.${z.zone}`),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEOUT' })), timeoutMs);
      }),
    ]);
    return answers.some((a) => !REFUSED.matches(a) && (z.answers ?? DEFAULT_COUNTS).matches(a));
  } catch {
    // Not listed (NXDOMAIN), or the list did not answer: never held against the message.
    return false;
  } finally {
    clearTimeout(timer);
  }
}
