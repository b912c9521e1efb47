import type { DataStore } from '../store/data-store.ts';

/**
 * Where mail for an address goes. The internal backend reads the store; an LDAP
 * backend will implement the same interface.
 */
export type Resolution =
  | { kind: 'non-local' }
  | { kind: 'unknown' }
  | { kind: 'deliver'; accounts: Array<{ id: number; email: string }>; remote: string[] };

export interface Directory {
  isLocalDomain(domain: string): Promise<boolean>;
  resolve(address: string): Promise<Resolution>;
}

/** Alias chains deeper than this are a configuration loop. */
const MAX_ALIAS_DEPTH = 10;

export function splitAddress(address: string): { local: string; domain: string } {
  const at = address.lastIndexOf('@');
  if (at < 0) return { local: address, domain: '' };
  return { local: address.slice(0, at), domain: address.slice(at + 1).toLowerCase() };
}

export class InternalDirectory implements Directory {
  constructor(private data: DataStore) {}

  isLocalDomain(domain: string): Promise<boolean> {
    return this.data.isLocalDomain(domain);
  }

  /**
   * Resolution order for local domains, like Postfix virtual(5) with Dovecot:
   * account → alias → the same without "+tag" (plus-addressing) → "@domain"
   * catch-all. Alias targets resolve recursively; remote targets are returned
   * for the outbound queue.
   */
  async resolve(address: string): Promise<Resolution> {
    const accounts = new Map<number, string>();
    const remote = new Set<string>();
    const seen = new Set<string>();
    const found = await this.expand(address.toLowerCase(), 0, accounts, remote, seen);
    if (found === 'non-local') return { kind: 'non-local' };
    if (found === 'unknown') return { kind: 'unknown' };
    return { kind: 'deliver', accounts: [...accounts].map(([id, email]) => ({ id, email })), remote: [...remote] };
  }

  private async expand(
    address: string,
    depth: number,
    accounts: Map<number, string>,
    remote: Set<string>,
    seen: Set<string>,
  ): Promise<'ok' | 'unknown' | 'non-local'> {
    const { local, domain } = splitAddress(address);
    if (!domain || !(await this.data.isLocalDomain(domain))) {
      if (depth === 0) return 'non-local';
      remote.add(address);
      return 'ok';
    }
    if (seen.has(address) || depth > MAX_ALIAS_DEPTH) return 'ok';
    seen.add(address);
    const plus = local.indexOf('+');
    const candidates = [address];
    if (plus > 0) candidates.push(`${local.slice(0, plus)}@${domain}`);
    for (const candidate of candidates) {
      const account = await this.data.getAccount(candidate);
      if (account && account.enabled) {
        accounts.set(account.id, account.email);
        return 'ok';
      }
      const targets = await this.data.aliasTargets(candidate);
      if (targets.length) {
        for (const t of targets) await this.expand(t, depth + 1, accounts, remote, seen);
        return 'ok';
      }
    }
    const catchAll = await this.data.aliasTargets(`@${domain}`);
    if (catchAll.length) {
      for (const t of catchAll) await this.expand(t, depth + 1, accounts, remote, seen);
      return 'ok';
    }
    return 'unknown';
  }
}
