import net from 'node:net';
import ipaddr from 'ipaddr.js';
import type { DataStore } from '../store/data-store.ts';
import { clientKey } from '../net/ip.ts';
import type { Check } from './pipeline.ts';
import type { Verdict } from './verdict.ts';

/**
 * Greylisting, as Postgrey does it: the first delivery attempt of a (client network, sender,
 * recipient) triplet is answered 451 4.7.1; a retry after `delay` and within `retry_window`
 * passes, and so does every later message of the triplet for `max_age` after its last one.
 * Real MTAs retry; most spam software does not. Never a 5xx: the worst case is a delay.
 *
 * - The client is taken by its /24 (IPv4) or /64 (IPv6): big senders retry from another
 *   address of the same pool.
 * - A client network whose triplets passed `auto_whitelist` times is let through without
 *   delay from then on (Postgrey's --auto-whitelist-clients), for `max_age`.
 * - Sender domains in `whitelist_domains` (and their subdomains) are never delayed.
 * State is in the store's policy_state (kinds `grey`, `greyawl`), shared by every node.
 */
export interface GreylistConfig {
  delay: number;
  retry_window: number;
  max_age: number;
  auto_whitelist: number;
  whitelist_domains: string[];
}

/** A triplet seen but not yet passed has value = first seen (ms); a passed one has value 0. */
const PASSED = 0;

export function greylistNet(ip: string): string {
  if (!net.isIP(ip)) return ip;
  const a = ipaddr.process(ip);
  if (a.kind() === 'ipv4') return `${a.toByteArray().slice(0, 3).join('.')}.0/24`;
  return clientKey(ip);
}

function domainWhitelisted(domains: readonly string[], from: string): boolean {
  const d = from.slice(from.lastIndexOf('@') + 1);
  return !!d && domains.some((w) => d === w || d.endsWith(`.${w}`));
}

export function greylistCheck(data: DataStore, cfg: GreylistConfig, now: () => number): Check {
  const domains = cfg.whitelist_domains.map((d) => d.toLowerCase().replace(/^@|\.$/g, ''));
  return {
    name: 'greylist',
    stage: 'rcpt',
    async run(input): Promise<Verdict> {
      const from = input.from ?? '';
      if (domainWhitelisted(domains, from)) return { kind: 'continue', reason: 'sender domain in whitelist_domains' };
      const at = now();
      const client = greylistNet(input.ip);
      if (cfg.auto_whitelist > 0) {
        const awl = await data.getState('greyawl', client, at);
        if (awl && awl.value >= cfg.auto_whitelist) return { kind: 'continue', reason: `client ${client} auto-whitelisted (${awl.value} passed)` };
      }
      const key = `${client}|${from}|${input.to ?? ''}`;
      const seen = await data.getState('grey', key, at);
      if (seen && seen.value === PASSED) {
        await data.putState('grey', key, PASSED, at + cfg.max_age);
        return { kind: 'continue', reason: 'triplet passed before' };
      }
      if (!seen) {
        await data.putState('grey', key, at, at + cfg.retry_window);
        return tempfail(input.to, cfg.delay, 'new triplet');
      }
      const waited = at - seen.value;
      if (waited < cfg.delay) return tempfail(input.to, cfg.delay - waited, `retried after ${Math.round(waited / 1000)} s, before the delay`);
      await data.putState('grey', key, PASSED, at + cfg.max_age);
      if (cfg.auto_whitelist > 0) await data.bumpCounter('greyawl', client, cfg.max_age, at);
      return { kind: 'continue', reason: `passed: retried after ${Math.round(waited / 1000)} s` };
    },
  };
}

function tempfail(to: string | undefined, waitMs: number, why: string): Verdict {
  const s = Math.max(1, Math.ceil(waitMs / 1000));
  return {
    kind: 'tempfail',
    reply: { code: 451, enhanced: '4.7.1', text: `<${to ?? ''}>: Recipient address rejected: Greylisted, try again in ${s} seconds` },
    reason: `greylisted: ${why}`,
  };
}

/** What the greylist would say about a triplet, without recording anything (`postern policy test`). */
export async function greylistPeek(data: DataStore, cfg: GreylistConfig, ip: string, from: string, to: string, at: number): Promise<'pass' | 'greylist'> {
  const domains = cfg.whitelist_domains.map((d) => d.toLowerCase().replace(/^@|\.$/g, ''));
  if (domainWhitelisted(domains, from)) return 'pass';
  const client = greylistNet(ip);
  const awl = cfg.auto_whitelist > 0 ? await data.getState('greyawl', client, at) : null;
  if (awl && awl.value >= cfg.auto_whitelist) return 'pass';
  const seen = await data.getState('grey', `${client}|${from}|${to}`, at);
  return seen && (seen.value === PASSED || at - seen.value >= cfg.delay) ? 'pass' : 'greylist';
}
