import fs from 'node:fs/promises';
import net from 'node:net';
import { domainToASCII } from 'node:url';
import type { Config } from '../config/schema.ts';
import { splitHostPort } from '../config/load.ts';
import { dnsErrorCode, isNotFound, type DnsResolver } from '../net/dns.ts';

/**
 * Routing for outbound delivery (RFC 5321 §5.1): where to connect for a recipient
 * domain. Order: the first matching [[transport]], then queue.relayhost, then DNS
 * (address literal, MX, implicit MX). Pure apart from DNS queries through the given
 * resolver and reading password files.
 */

export type TlsPolicy = 'may' | 'required' | 'none';

/** One address to try, in order. A host name with several addresses appears once per address. */
export interface RouteHost {
  /** The MX exchange, relay host or literal this address belongs to (for logs and DSNs). */
  name: string;
  /** An IPv4 or IPv6 address to connect to. */
  address: string;
  port: number;
  tls: TlsPolicy;
  auth?: { user: string; pass: string };
  /** Speak LMTP (RFC 2033) instead of SMTP. */
  lmtp: boolean;
  /** MX preference (0 for relays, literals and implicit MX). */
  preference: number;
}

export type Route =
  | { kind: 'hosts'; hosts: RouteHost[]; via: 'transport' | 'relayhost' | 'mx' | 'implicit-mx' | 'literal' }
  | { kind: 'fail'; permanent: boolean; /** RFC 3463 enhanced status, e.g. "5.1.2". */ status: string; message: string };

export interface RouteOptions {
  /** Source of randomness for shuffling equal-preference MX records ([0, 1), like Math.random). */
  random?: () => number;
}

/** At most this many addresses are returned (Postfix smtp_mx_address_limit-like). */
export const MAX_ROUTE_HOSTS = 20;

type Fail = Extract<Route, { kind: 'fail' }>;

const temp = (status: string, message: string): Fail => ({ kind: 'fail', permanent: false, status, message });
const perm = (status: string, message: string): Fail => ({ kind: 'fail', permanent: true, status, message });

export async function resolveRoute(domain: string, config: Config, resolver: DnsResolver, opts: RouteOptions = {}): Promise<Route> {
  const random = opts.random ?? Math.random;
  const raw = domain.trim();

  // Address literal (RFC 5321 §4.1.3): deliver to that address, no DNS.
  if (raw.startsWith('[')) {
    const literal = parseAddressLiteral(raw);
    if (!literal) return perm('5.1.2', `invalid address literal ${raw}`);
    const matched = matchTransport(raw.toLowerCase(), config);
    if (matched || config.queue.relayhost) return routeRelay(raw.toLowerCase(), config, resolver);
    return {
      kind: 'hosts',
      via: 'literal',
      hosts: [{ name: raw, address: literal, port: config.queue.mx_port, tls: tlsFor(raw.toLowerCase(), config), lmtp: false, preference: 0 }],
    };
  }

  const name = normalizeDomain(raw);
  if (!name) return perm('5.1.2', `invalid domain name "${raw}"`);
  if (matchTransport(name, config) || config.queue.relayhost) return routeRelay(name, config, resolver);
  return routeDns(name, config, resolver, random);
}

/** Lower-case A-label form without a trailing dot; '' when not a valid domain. */
function normalizeDomain(domain: string): string {
  const d = domain.trim().replace(/\.$/, '');
  if (!d || d.includes('..')) return '';
  return domainToASCII(d).toLowerCase();
}

/** "[192.0.2.1]" → "192.0.2.1", "[IPv6:2001:db8::1]" → "2001:db8::1"; null if malformed. */
export function parseAddressLiteral(literal: string): string | null {
  const m = /^\[(.*)\]$/.exec(literal.trim());
  if (!m) return null;
  const inner = m[1];
  if (/^ipv6:/i.test(inner)) {
    const v6 = inner.slice(5);
    return net.isIPv6(v6) ? v6 : null;
  }
  return net.isIPv4(inner) ? inner : null;
}

/** "example.org" matches itself; ".example.org" matches its subdomains only; "*" everything. */
function domainMatches(pattern: string, domain: string): boolean {
  const p = pattern.trim().toLowerCase();
  if (p === '*') return true;
  if (p.startsWith('.')) {
    const parent = normalizeDomain(p.slice(1));
    return parent !== '' && domain.endsWith(`.${parent}`);
  }
  if (p.startsWith('[')) return p === domain;
  return normalizeDomain(p) === domain;
}

function matchTransport(domain: string, config: Config): Config['transport'][number] | undefined {
  return config.transport.find((t) => domainMatches(t.domain, domain));
}

function tlsFor(domain: string, config: Config): TlsPolicy {
  return config.queue.tls_required_domains.some((d) => domainMatches(d, domain)) ? 'required' : 'may';
}

/** First line of a password file, trimmed; a temporary failure naming the config key otherwise. */
async function readPassword(file: string, key: string): Promise<string | Fail> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    return temp('4.3.5', `${key}: cannot read password file ${file} (${code})`);
  }
  const pass = (text.split(/\r?\n/, 1)[0] ?? '').trim();
  if (!pass) return temp('4.3.5', `${key}: password file ${file} is empty`);
  return pass;
}

/** A [[transport]] entry or queue.relayhost: one configured host, resolved to its addresses. */
async function routeRelay(domain: string, config: Config, resolver: DnsResolver): Promise<Route> {
  const t = matchTransport(domain, config);
  let relay: string;
  let key: string;
  let tls: TlsPolicy;
  let lmtp = false;
  let auth: RouteHost['auth'];
  let via: 'transport' | 'relayhost';
  if (t) {
    via = 'transport';
    key = `transport "${t.domain}"`;
    relay = t.relay;
    lmtp = t.lmtp;
    // tls_required_domains upgrades "may"; an explicit "none" on a transport is the admin's choice.
    tls = t.tls === 'may' ? tlsFor(domain, config) : t.tls;
    if (t.username || t.password_file) {
      if (!t.username || !t.password_file) return temp('4.3.5', `${key}: username and password_file must be given together`);
      const pass = await readPassword(t.password_file, `${key} password_file`);
      if (typeof pass !== 'string') return pass;
      auth = { user: t.username, pass };
    }
  } else {
    via = 'relayhost';
    key = 'queue.relayhost';
    relay = config.queue.relayhost as string;
    tls = 'required';
    const q = config.queue;
    if (q.relay_username || q.relay_password_file) {
      if (!q.relay_username || !q.relay_password_file) return temp('4.3.5', 'queue.relay_username and queue.relay_password_file must be given together');
      const pass = await readPassword(q.relay_password_file, 'queue.relay_password_file');
      if (typeof pass !== 'string') return pass;
      auth = { user: q.relay_username, pass };
    }
  }
  const { host, port } = splitHostPort(relay);
  const r = await resolveHost(host, resolver);
  if (r.kind !== 'ok') {
    // A relay that does not resolve is a local configuration problem: defer, never bounce.
    return temp('4.4.3', `${key}: relay host ${host} ${r.kind === 'notfound' ? 'not found in DNS' : `lookup failed (${r.code})`}`);
  }
  const hosts = r.addresses.slice(0, MAX_ROUTE_HOSTS).map((address) => ({ name: host, address, port, tls, lmtp, preference: 0, ...(auth ? { auth } : {}) }));
  return { kind: 'hosts', via, hosts };
}

type HostLookup = { kind: 'ok'; addresses: string[] } | { kind: 'notfound'; nxdomain: boolean } | { kind: 'temp'; code: string };

/**
 * A host's addresses: IPv4 then IPv6 (A and AAAA asked in parallel). IP literals are
 * used as they are; "localhost" is loopback (RFC 6761; the DNS resolver does not read
 * /etc/hosts). If one family fails temporarily but the other answers, the answer is used.
 */
async function resolveHost(host: string, resolver: DnsResolver): Promise<HostLookup> {
  const h = host.replace(/^\[|\]$/g, '');
  if (net.isIP(h)) return { kind: 'ok', addresses: [h] };
  const name = normalizeDomain(h);
  if (name === 'localhost') return { kind: 'ok', addresses: ['127.0.0.1', '::1'] };
  if (!name) return { kind: 'notfound', nxdomain: true };
  const [a, aaaa] = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
  const addresses: string[] = [];
  for (const r of [a, aaaa]) if (r.status === 'fulfilled') for (const addr of r.value) if (net.isIP(addr) && !addresses.includes(addr)) addresses.push(addr);
  if (addresses.length > 0) return { kind: 'ok', addresses };
  const errors = [a, aaaa].filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
  const tempErr = errors.find((e) => !isNotFound(e));
  if (tempErr !== undefined) return { kind: 'temp', code: dnsErrorCode(tempErr) ?? String(tempErr) };
  return { kind: 'notfound', nxdomain: errors.some((e) => dnsErrorCode(e) === 'ENOTFOUND') };
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const a = items.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(random() * (i + 1)));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** MX records in preference order, equal preferences shuffled (RFC 5321 §5.1). */
function orderMx(records: Array<{ exchange: string; priority: number }>, random: () => number) {
  const byPref = new Map<number, Array<{ exchange: string; priority: number }>>();
  for (const r of records) {
    const list = byPref.get(r.priority) ?? [];
    list.push(r);
    byPref.set(r.priority, list);
  }
  return [...byPref.keys()].sort((x, y) => x - y).flatMap((p) => shuffle(byPref.get(p)!, random));
}

async function routeDns(domain: string, config: Config, resolver: DnsResolver, random: () => number): Promise<Route> {
  const port = config.queue.mx_port;
  const tls = tlsFor(domain, config);

  let records: Array<{ exchange: string; priority: number }> = [];
  let mxNxdomain = false;
  try {
    records = await resolver.resolveMx(domain);
  } catch (err) {
    if (!isNotFound(err)) return temp('4.4.3', `DNS lookup of MX for ${domain} failed (${dnsErrorCode(err) ?? String(err)}), will retry`);
    mxNxdomain = dnsErrorCode(err) === 'ENOTFOUND';
  }

  const exchangeOf = (r: { exchange: string }) => r.exchange.trim().replace(/\.$/, '');
  if (records.length > 0 && records.every((r) => exchangeOf(r) === '')) return perm('5.1.10', 'domain does not accept mail (null MX, RFC 7505)');
  // A null MX mixed with real ones is malformed (RFC 7505 §3); ignore the null records.
  records = records.filter((r) => exchangeOf(r) !== '');

  if (records.length === 0) {
    // Implicit MX (RFC 5321 §5.1): the domain's own addresses, preference 0.
    const r = await resolveHost(domain, resolver);
    if (r.kind === 'temp') return temp('4.4.3', `DNS lookup of ${domain} failed (${r.code}), will retry`);
    if (r.kind === 'notfound') {
      if (mxNxdomain || r.nxdomain) return perm('5.1.2', 'domain not found');
      return perm('5.1.2', 'domain has no MX or address records');
    }
    return {
      kind: 'hosts',
      via: 'implicit-mx',
      hosts: r.addresses.slice(0, MAX_ROUTE_HOSTS).map((address) => ({ name: domain, address, port, tls, lmtp: false, preference: 0 })),
    };
  }

  const ordered = orderMx(records, random);
  // MX exchanges must be names (RFC 5321 §5.1); IP literals are used only when nothing else works.
  const named = ordered.filter((r) => !net.isIP(exchangeOf(r).replace(/^\[|\]$/g, '')));
  const literals = ordered.filter((r) => net.isIP(exchangeOf(r).replace(/^\[|\]$/g, '')));

  const seenNames = new Set<string>();
  const unique = named.filter((r) => {
    const n = normalizeDomain(exchangeOf(r));
    if (seenNames.has(n)) return false;
    seenNames.add(n);
    return true;
  });
  const lookups = await Promise.all(unique.map((r) => resolveHost(exchangeOf(r), resolver)));

  const hosts: RouteHost[] = [];
  const seenAddr = new Set<string>();
  const add = (name: string, address: string, preference: number) => {
    if (seenAddr.has(address) || hosts.length >= MAX_ROUTE_HOSTS) return;
    seenAddr.add(address);
    hosts.push({ name, address, port, tls, lmtp: false, preference });
  };
  let tempCode: string | undefined;
  unique.forEach((r, i) => {
    const l = lookups[i];
    if (l.kind === 'ok') for (const address of l.addresses) add(normalizeDomain(exchangeOf(r)), address, r.priority);
    else if (l.kind === 'temp') tempCode ??= l.code;
  });
  if (hosts.length > 0) return { kind: 'hosts', via: 'mx', hosts };

  if (tempCode !== undefined) return temp('4.4.3', `DNS lookup of MX hosts for ${domain} failed (${tempCode}), will retry`);
  if (literals.length > 0) {
    for (const r of literals) add(exchangeOf(r), exchangeOf(r).replace(/^\[|\]$/g, ''), r.priority);
    return { kind: 'hosts', via: 'mx', hosts };
  }
  return perm('5.4.4', 'no usable MX host');
}
