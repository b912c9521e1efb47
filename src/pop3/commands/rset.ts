import type { CommandSpec } from './index.ts';

/** RFC 1939 §5 RSET: unmarks every message marked deleted. */
export const rset: CommandSpec = {
  states: ['transaction'],
  async run(s) {
    s.maildrop!.unmarkAll();
    const { count, size } = s.maildrop!.stat();
    s.write(`+OK Maildrop has ${count} messages (${size} octets)\r\n`);
  },
};
