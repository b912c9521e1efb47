import { decodeMutf7, encodeMutf7 } from './mutf7.ts';
import { tokenText, type Command, type Token } from './parser.ts';
import { bad } from './errors.ts';
import { normalizeMailboxName } from '../store/imap-model.ts';
import type { ImapSession } from './session.ts';

/** Argument helpers: a wrong argument is a BAD with a message naming what was expected. */

export function argCount(cmd: Command, min: number, max = min): void {
  if (cmd.args.length < min || cmd.args.length > max) throw bad(`${cmd.name}: expected ${min === max ? min : `${min} to ${max}`} argument(s)`);
}

/** An astring (atom, quoted or literal) as UTF-8 text. */
export function astring(cmd: Command, i: number, what: string): string {
  const t = cmd.args[i];
  if (!t || t.kind === 'list' || t.kind === 'stream') throw bad(`${cmd.name}: expected ${what}`);
  const s = tokenText(t);
  if (s === null) throw bad(`${cmd.name}: expected ${what}`);
  return s;
}

/**
 * A mailbox name argument (RFC 9051 §5.1): modified UTF-7 from IMAP4rev1 clients
 * (RFC 3501 §5.1.3), UTF-8 once UTF8=ACCEPT or IMAP4rev2 is enabled; INBOX in any case.
 */
export function mailboxName(session: ImapSession, cmd: Command, i: number): string {
  const raw = astring(cmd, i, 'a mailbox name');
  let name = raw;
  if (!session.utf8) {
    const d = decodeMutf7(raw);
    if (!d.ok) throw bad(`${cmd.name}: mailbox name is not valid modified UTF-7 (${d.error})`);
    name = d.value;
  }
  try {
    return normalizeMailboxName(name);
  } catch (err) {
    throw bad(`${cmd.name}: ${(err as Error).message}`);
  }
}

/** A mailbox name as the client expects it back. */
export function encodeName(session: ImapSession, name: string): string {
  return session.utf8 ? name : encodeMutf7(name);
}

export function isList(t: Token | undefined): t is Extract<Token, { kind: 'list' }> {
  return !!t && t.kind === 'list';
}

/** An atom's upper-case text, or null. */
export function atomUpper(t: Token | undefined): string | null {
  return t && t.kind === 'atom' && !t.section && !t.partial ? t.value.toUpperCase() : null;
}
