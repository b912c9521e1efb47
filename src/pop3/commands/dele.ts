import { err } from '../errors.ts';
import type { CommandOf } from '../parser.ts';
import type { CommandSpec } from './index.ts';

/**
 * RFC 1939 §5 DELE: marks the message; it is removed only in the UPDATE state after
 * QUIT (quit.ts). A marked message is no longer listed nor retrievable.
 */
export const dele: CommandSpec<CommandOf<'DELE'>> = {
  states: ['transaction'],
  async run(s, cmd) {
    const drop = s.maildrop!;
    if (drop.isDeleted(cmd.msg)) throw err(`Message ${cmd.msg} already deleted`);
    if (!drop.get(cmd.msg)) throw err('No such message');
    drop.markDeleted(cmd.msg);
    s.write(`+OK Message ${cmd.msg} deleted\r\n`);
  },
};
