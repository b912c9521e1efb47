import type { Command } from '../parser.ts';
import type { ImapSession } from '../session.ts';
import { anyState } from './any-state.ts';
import { authCommands } from './auth.ts';
import { selectCommands } from './select.ts';
import { fetchCommands } from './fetch.ts';
import { storeCommands } from './store.ts';
import { copyMoveCommands } from './copy-move.ts';
import { expungeCommands } from './expunge.ts';
import { listCommands } from './list.ts';
import { statusCommands } from './status.ts';
import { mailboxCommands } from './mailboxes.ts';
import { searchCommands } from './search.ts';
import { appendCommands } from './append.ts';
import { idleCommands } from './idle.ts';
import { sortThreadCommands } from './sort-thread.ts';
import { quotaCommands } from './quota.ts';
import { compressCommands } from './compress.ts';

/** RFC 9051 §3: the connection states. */
export type ImapState = 'not-authenticated' | 'authenticated' | 'selected' | 'logout';

export interface CommandSpec {
  name: string;
  /** The states the command is valid in; elsewhere it is answered BAD. */
  states: ImapState[];
  /**
   * Whether EXPUNGE responses may follow it (RFC 9051 §7.5.1: not while answering
   * FETCH, STORE or SEARCH, whose sequence numbers the client is still using).
   */
  expungeSafe?: boolean;
  /** Writes untagged responses; returns the text of the tagged OK (null: it wrote its own), or throws ImapError. */
  run(session: ImapSession, cmd: Command): Promise<string | void | null>;
}

export const ANY: ImapState[] = ['not-authenticated', 'authenticated', 'selected'];
export const AUTHED: ImapState[] = ['authenticated', 'selected'];
export const SELECTED: ImapState[] = ['selected'];

/** The command table. Later groups (fetch, store, search, mailboxes, append, idle) register here too. */
export const COMMANDS = new Map<string, CommandSpec>();

export function register(...specs: CommandSpec[]): void {
  for (const s of specs) COMMANDS.set(s.name, s);
}

register(...anyState, ...authCommands, ...selectCommands, ...fetchCommands, ...listCommands, ...statusCommands, ...mailboxCommands, ...storeCommands, ...copyMoveCommands, ...expungeCommands, ...searchCommands, ...appendCommands, ...idleCommands, ...sortThreadCommands, ...quotaCommands, ...compressCommands);
