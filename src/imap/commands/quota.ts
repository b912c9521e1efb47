import { argCount, astring, encodeName, mailboxName } from '../args.ts';
import { no } from '../errors.ts';
import { untagged } from '../writer.ts';
import type { DataStore } from '../../store/data-store.ts';
import { accountQuota, overQuota, type QuotaUsage } from '../../core/quota.ts';
import type { ImapSession } from '../session.ts';
import type { CommandSpec } from './index.ts';

/**
 * QUOTA (RFC 9208): GETQUOTAROOT, GETQUOTA and SETQUOTA.
 *
 * Model: one quota root per user, named "" (the empty string), holding every
 * mailbox of the account. Its limit is accounts.quota_bytes; NULL means no limit,
 * and then the account has no quota root at all: GETQUOTAROOT lists none and
 * GETQUOTA "" is NO [NONEXISTENT] (RFC 9208 §5.1: a QUOTA response must carry at
 * least one resource with a limit, so "no limit" cannot be written as one).
 * Resources (RFC 9208 §5.1):
 *  - STORAGE: the sum of message sizes, in units of 1024 octets (usage rounded up,
 *    limit rounded down);
 *  - MESSAGE: the number of messages; the store has no message-count limit yet, so
 *    it is never reported and QUOTA=RES-MESSAGE is not advertised.
 * SETQUOTA is refused (NO [NOPERM]): limits are set by the administrator.
 * RFC 9208 §5.1: a server with the STORAGE resource MUST also support the STATUS
 * item DELETED-STORAGE (status.ts).
 *
 * `assertQuota` is the check the commands that add messages call before they add
 * them (APPEND, COPY): NO [OVERQUOTA] (RFC 9208 §4.2, RFC 5530).
 */

/** Quota roots per account: the empty name (RFC 9208 §3.2 allows "" as a root name). */
export const QUOTA_ROOT = '';

/** Throws NO [OVERQUOTA] when adding `addBytes` octets would take the account over its limit (core/quota.ts). */
export async function assertQuota(data: DataStore, accountId: number, addBytes: number, addMessages = 1): Promise<void> {
  if (addBytes <= 0 && addMessages <= 0) return;
  const q = await overQuota(data, accountId, addBytes);
  if (q) throw no(`Quota exceeded: ${kib(q.bytes)} of ${Math.floor(q.limitBytes! / 1024)} KiB used, ${kib(addBytes)} KiB more do not fit`, 'OVERQUOTA');
}

function kib(bytes: number): number {
  return Math.ceil(bytes / 1024);
}

/** `* QUOTA "" (STORAGE used limit)` (RFC 9208 §5.1). */
function quotaLine(q: QuotaUsage): Buffer {
  return untagged(['QUOTA', { string: QUOTA_ROOT }, `(STORAGE ${kib(q.bytes)} ${Math.floor(q.limitBytes! / 1024)})`]);
}

/** RFC 9208 §4.3.2: GETQUOTAROOT mailbox → QUOTAROOT mailbox root…, then QUOTA for each root. */
async function getQuotaRoot(s: ImapSession, cmd: Parameters<CommandSpec['run']>[1]): Promise<string> {
  argCount(cmd, 1);
  const name = mailboxName(s, cmd, 0);
  const account = s.account!;
  const info = await s.ctx.data.getMailbox(account.id, name);
  if (!info) throw no(`Mailbox does not exist: ${name}`, 'NONEXISTENT');
  const q = await accountQuota(s.ctx.data, account.id);
  const roots = q.limitBytes === null ? [] : [{ string: QUOTA_ROOT }];
  s.write(untagged(['QUOTAROOT', { astring: encodeName(s, info.name) }, ...roots], { utf8: s.utf8 }));
  if (q.limitBytes !== null) s.write(quotaLine(q));
  return 'GETQUOTAROOT completed';
}

/** RFC 9208 §4.3.1: GETQUOTA root → QUOTA root (resources). */
async function getQuota(s: ImapSession, cmd: Parameters<CommandSpec['run']>[1]): Promise<string> {
  argCount(cmd, 1);
  const root = astring(cmd, 0, 'a quota root name');
  const q = await accountQuota(s.ctx.data, s.account!.id);
  if (root !== QUOTA_ROOT || q.limitBytes === null) throw no(`No such quota root: "${root.slice(0, 40)}"`, 'NONEXISTENT');
  s.write(quotaLine(q));
  return 'GETQUOTA completed';
}

/** RFC 9208 §4.3.3: SETQUOTA is for administrators; users may not change their limits. */
async function setQuota(s: ImapSession, cmd: Parameters<CommandSpec['run']>[1]): Promise<string> {
  argCount(cmd, 2);
  throw no('Quota limits are set by the administrator', 'NOPERM');
}

/** Capabilities to advertise after login (RFC 9208 §3.1). */
export const QUOTA_CAPABILITIES = ['QUOTA', 'QUOTA=RES-STORAGE'];

export const quotaCommands: CommandSpec[] = [
  { name: 'GETQUOTAROOT', states: ['authenticated', 'selected'], run: getQuotaRoot },
  { name: 'GETQUOTA', states: ['authenticated', 'selected'], run: getQuota },
  { name: 'SETQUOTA', states: ['authenticated', 'selected'], run: setQuota },
];
