import { bad } from '../errors.ts';
import { argCount } from '../args.ts';
import type { ImapSession } from '../session.ts';
import type { CommandSpec } from './index.ts';

/**
 * IDLE (RFC 2177, RFC 9051 §6.3.13): `+ idling`, then the selected mailbox's
 * changes (EXISTS, EXPUNGE, FETCH FLAGS) are pushed as they happen — the session's
 * pub/sub listener calls `session.idling` — until the client sends "DONE" on a line
 * of its own. Anything else ends IDLE with BAD. EXPUNGE may be sent while idling
 * (RFC 2177 §3). Valid in the authenticated state too (nothing to push then).
 */

async function idle(s: ImapSession): Promise<string | null> {
  // Changes that happened before IDLE are reported first.
  await s.flushUpdates(true);
  let pushing: Promise<void> = Promise.resolve();
  // One sync at a time, in order: two overlapping syncs could both report one message.
  const push = () => {
    pushing = pushing.then(() => s.flushUpdates(true)).catch((err: unknown) => s.log.warn({ err }, 'IDLE update failed'));
  };
  s.idling = push;
  s.write('+ idling\r\n');
  // A change published between the flush above and setting `idling` must not be lost.
  if (s.selected?.dirty) push();
  let line: Buffer | 'too-long' | null;
  try {
    line = await s.readLine();
  } finally {
    s.idling = null;
    await pushing;
  }
  if (line === null) return null; // connection closed
  if (line === 'too-long' || line.toString('latin1').trim().toUpperCase() !== 'DONE') throw bad('IDLE: expected DONE');
  return 'IDLE terminated';
}

export const idleCommands: CommandSpec[] = [
  {
    name: 'IDLE',
    states: ['authenticated', 'selected'],
    run: (s, cmd) => {
      argCount(cmd, 0);
      return idle(s);
    },
  },
];
