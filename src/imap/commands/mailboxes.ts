import { argCount, atomUpper, isList, mailboxName } from '../args.ts';
import { bad, no } from '../errors.ts';
import type { ImapSession } from '../session.ts';
import type { Command } from '../parser.ts';
import { isSelfOrChild, MAILBOX_DELIMITER } from '../../store/imap-model.ts';
import { renamedResponse } from './list.ts';
import type { CommandSpec } from './index.ts';

/**
 * CREATE (RFC 9051 §6.3.4, RFC 6154 §3 CREATE-SPECIAL-USE), DELETE (§6.3.5),
 * RENAME (§6.3.6), SUBSCRIBE (§6.3.7), UNSUBSCRIBE (§6.3.8). The store checks
 * names and existence; its MailError codes become NONEXISTENT / ALREADYEXISTS /
 * CANNOT in the session.
 */

/** RFC 6154 §2 attributes a mailbox can be created with (\All and \Flagged are virtual; we have none). */
const CREATABLE_USES = new Map(['\\Archive', '\\Drafts', '\\Junk', '\\Sent', '\\Trash'].map((u) => [u.toLowerCase(), u]));

/** The special-use of `CREATE name (USE (\Sent))` (RFC 6154 §5, RFC 4466 create-param), or null. */
function createParams(cmd: Command): string | null {
  const t = cmd.args[1];
  if (t === undefined) return null;
  if (!isList(t)) throw bad('CREATE: expected (parameters) after the mailbox name');
  let use: string | null = null;
  for (let i = 0; i < t.items.length; i++) {
    const p = atomUpper(t.items[i]);
    if (p !== 'USE') throw bad(`CREATE: unknown parameter ${p ?? ''}`.trim());
    const v = t.items[++i];
    if (!isList(v)) throw bad('CREATE: expected USE (attributes)');
    for (const a of v.items) {
      const attr = a.kind === 'atom' ? a.value : null;
      if (!attr || !attr.startsWith('\\')) throw bad('CREATE: expected special-use attributes');
      const known = CREATABLE_USES.get(attr.toLowerCase());
      if (!known) throw no(`Special-use attribute ${attr} is not supported`, 'USEATTR');
      // The store keeps one special use per mailbox.
      if (use && use !== known) throw no('Only one special-use attribute per mailbox', 'USEATTR');
      use = known;
    }
  }
  return use;
}

function changed(s: ImapSession, modseq = 0): void {
  // Wakes other sessions (their selected mailbox may have been renamed, deleted or emptied).
  s.ctx.pubsub.publish({ accountId: s.account!.id, mailboxId: null, modseq });
}

/** Leaves the selected state when the selected mailbox went away (or changed UIDVALIDITY). */
function deselect(s: ImapSession, why: string): void {
  s.selected = null;
  s.state = 'authenticated';
  s.untagged(`* OK [CLOSED] ${why}`);
}

export const mailboxCommands: CommandSpec[] = [
  {
    name: 'CREATE',
    states: ['authenticated', 'selected'],
    async run(s, cmd) {
      argCount(cmd, 1, 2);
      const name = mailboxName(s, cmd, 0);
      const use = createParams(cmd);
      const info = await s.ctx.data.createMailbox(s.account!.id, name, use);
      changed(s, info.highestmodseq);
    },
  },
  {
    name: 'DELETE',
    states: ['authenticated', 'selected'],
    async run(s, cmd) {
      argCount(cmd, 1);
      const name = mailboxName(s, cmd, 0);
      if (name === 'INBOX') throw no('INBOX cannot be deleted', 'CANNOT');
      const boxes = await s.ctx.data.listMailboxes(s.account!.id);
      const box = boxes.find((b) => b.name === name);
      if (!box) throw no(`Mailbox does not exist: ${name}`, 'NONEXISTENT');
      // RFC 5530 HASCHILDREN: inferiors must be deleted first (as Dovecot does).
      if (boxes.some((b) => b.name.startsWith(name + MAILBOX_DELIMITER))) throw no(`Mailbox has children; delete them first: ${name}`, 'HASCHILDREN');
      await s.ctx.data.deleteMailbox(s.account!.id, name);
      if (s.selected?.info.id === box.id) deselect(s, 'Selected mailbox deleted');
      changed(s);
    },
  },
  {
    name: 'RENAME',
    states: ['authenticated', 'selected'],
    async run(s, cmd) {
      argCount(cmd, 2);
      const from = mailboxName(s, cmd, 0);
      const to = mailboxName(s, cmd, 1);
      const info = await s.ctx.data.renameMailbox(s.account!.id, from, to);
      const sel = s.selected;
      if (sel && from !== 'INBOX' && isSelfOrChild(sel.info.name, from)) {
        // The store gives a renamed mailbox a new UIDVALIDITY: then the session's UIDs are stale.
        const fresh = await s.ctx.data.getMailboxById(sel.info.id);
        if (!fresh || fresh.uidvalidity !== sel.info.uidvalidity) deselect(s, 'Selected mailbox renamed');
        else sel.info = fresh;
      }
      // RENAME INBOX moves its messages and leaves INBOX (RFC 9051 §6.3.6): no old name went away.
      if (s.rev2 && from !== 'INBOX') s.write(renamedResponse(s, to, from));
      changed(s, info.highestmodseq);
    },
  },
  {
    name: 'SUBSCRIBE',
    states: ['authenticated', 'selected'],
    async run(s, cmd) {
      argCount(cmd, 1);
      // RFC 9051 §6.3.7: any name may be subscribed, existing or not.
      await s.ctx.data.subscribe(s.account!.id, mailboxName(s, cmd, 0));
    },
  },
  {
    name: 'UNSUBSCRIBE',
    states: ['authenticated', 'selected'],
    async run(s, cmd) {
      argCount(cmd, 1);
      // Unsubscribing a name that is not subscribed is not an error (the end state is the one asked for).
      await s.ctx.data.unsubscribe(s.account!.id, mailboxName(s, cmd, 0));
    },
  },
];
