import addressparser from 'nodemailer/lib/addressparser';
import type { Context } from '../core/context.ts';
import { splitAddress } from '../directory/directory.ts';

export interface SubmittingAccount {
  id: number;
  email: string;
}

/**
 * Whether an authenticated user may send as `address` (envelope MAIL FROM or a From
 * header address): their own address (with any +tag), an alias or catch-all that
 * delivers to them, or any address in a domain they administer (`postern domain
 * admin`). This is what stops the forged-sender problem of plain SMTP (Postfix's
 * reject_sender_login_mismatch). The null sender is allowed (RFC 5321 §4.5.5:
 * notifications such as MDNs use it).
 */
export async function ownsAddress(ctx: Context, account: SubmittingAccount, address: string): Promise<boolean> {
  const a = address.trim().toLowerCase();
  if (!a || a === account.email) return true;
  const { domain } = splitAddress(a);
  if (!domain) return false;
  if ((await ctx.data.adminDomains(account.id)).includes(domain)) return true;
  const r = await ctx.directory.resolve(a);
  return r.kind === 'deliver' && r.accounts.some((x) => x.id === account.id);
}

/** Addresses in From (and Sender) header values; group syntax is flattened. */
export function headerAddresses(value: string): string[] {
  const out: string[] = [];
  const walk = (list: ReturnType<typeof addressparser>) => {
    for (const item of list) {
      if ('group' in item && item.group) walk(item.group);
      else if ('address' in item && item.address) out.push(item.address);
    }
  };
  walk(addressparser(value));
  return out;
}
