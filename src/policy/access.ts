import net from 'node:net';
import ipaddr from 'ipaddr.js';
import type { AccessRule, DataStore } from '../store/data-store.ts';
import { isAddressOrCidr, TrustedProxies as AddressSet } from '../net/proxy-protocol.ts';
import type { Check } from './pipeline.ts';
import type { Verdict } from './verdict.ts';

/**
 * Access lists: what Postfix's check_client_access / check_sender_access /
 * check_recipient_access maps do, plus per-user sender blocks (the "alias ACL" of the
 * classic setup). Rules live in the store (`access_rules`): scope '' is the administrator's
 * (everyone), a user's address scopes a rule to mail for that user.
 *
 * Precedence, most specific decision last to be overridden:
 *   1. the administrator's reject rules (nobody can opt back in),
 *   2. the recipient's own reject rules,
 *   3. the recipient's own accept rules,
 *   4. the administrator's accept rules;
 * an accept ends the checks for that recipient (no DNSBL, later no greylisting) — an allowlist.
 */
export type AccessKind = AccessRule['kind'];
export type AccessAction = AccessRule['action'];

export class AccessRuleError extends Error {}

/**
 * The stored form of a rule's value: a client address or CIDR; a sender or recipient address,
 * "@domain" for a whole domain ("domain" alone means the same), or "<>" for the null sender.
 */
export function normalizeRuleValue(kind: AccessKind, value: string): string {
  const v = value.trim();
  if (kind === 'client') {
    if (!isAddressOrCidr(v)) throw new AccessRuleError(`"${value}" is not an IP address or CIDR (e.g. 192.0.2.7 or 198.51.100.0/24)`);
    const [addr, bits] = v.split('/');
    return bits === undefined ? ipaddr.process(addr!).toString() : `${ipaddr.parse(addr!).toString()}/${bits}`;
  }
  if (kind === 'sender' && v === '<>') return v;
  const lower = v.toLowerCase().replace(/^<|>$/g, '');
  const at = lower.lastIndexOf('@');
  const domain = at >= 0 ? lower.slice(at + 1) : lower;
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/.test(domain) || (at > 0 && /\s/.test(lower.slice(0, at)))) {
    throw new AccessRuleError(`"${value}" is not an address, "@domain" or domain`);
  }
  return at > 0 ? lower : `@${domain}`;
}

/** Whether an address (lower case; '' is the null sender) matches a stored rule value. */
export function addressMatches(rule: string, address: string): boolean {
  if (rule === '<>') return address === '';
  if (!address) return false;
  if (rule.startsWith('@')) return address.endsWith(rule);
  if (rule === address) return true;
  // alice+news@x is alice@x (subaddressing, RFC 5233).
  const at = address.lastIndexOf('@');
  const plus = address.indexOf('+');
  return plus > 0 && plus < at && rule === address.slice(0, plus) + address.slice(at);
}

function clientMatches(rule: string, ip: string): boolean {
  return net.isIP(ip) > 0 && new AddressSet([rule]).matches(ip);
}

const REJECT = { code: 550, enhanced: '5.7.1' } as const;

function ruleMatches(r: AccessRule, ip: string, from: string | undefined, to: string | undefined): boolean {
  if (r.kind === 'client') return clientMatches(r.value, ip);
  if (r.kind === 'sender') return from !== undefined && addressMatches(r.value, from);
  return to !== undefined && addressMatches(r.value, to);
}

function rejection(r: AccessRule, ip: string, from: string | undefined, to: string | undefined, personal: boolean): Verdict {
  const who = personal ? ` (rule of ${r.scope})` : '';
  const reason = `access rule: reject ${r.kind} ${r.value}${who}`;
  if (r.kind === 'client') return { kind: 'reject', reply: { ...REJECT, text: `Client host [${ip}] rejected: Access denied` }, reason };
  if (r.kind === 'sender') return { kind: 'reject', reply: { ...REJECT, text: `<${from || ''}>: Sender address rejected: ${personal ? 'not accepted by the recipient' : 'Access denied'}` }, reason };
  return { kind: 'reject', reply: { ...REJECT, text: `<${to}>: Recipient address rejected: Access denied` }, reason };
}

/** The RCPT-stage access check: one indexed read of the global and the recipients' rules. */
export function accessCheck(data: DataStore): Check {
  return {
    name: 'access',
    stage: 'rcpt',
    async run(input): Promise<Verdict> {
      const users = input.users ?? [];
      const rules = await data.accessRules(['', ...users]);
      const global = rules.filter((r) => r.scope === '');
      const personal = rules.filter((r) => r.scope !== '');
      const hit = (list: AccessRule[], action: AccessAction) => list.find((r) => r.action === action && ruleMatches(r, input.ip, input.from, input.to));
      const gr = hit(global, 'reject');
      if (gr) return rejection(gr, input.ip, input.from, input.to, false);
      const pr = hit(personal, 'reject');
      if (pr) return rejection(pr, input.ip, input.from, input.to, true);
      const pa = hit(personal, 'accept') ?? hit(global, 'accept');
      if (pa) return { kind: 'accept', reason: `access rule: accept ${pa.kind} ${pa.value}${pa.scope ? ` (rule of ${pa.scope})` : ''}` };
      return { kind: 'continue' };
    },
  };
}
