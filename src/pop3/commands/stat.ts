import type { CommandSpec } from './index.ts';

/** RFC 1939 §5 STAT: "+OK nn mm", messages not marked deleted and their octets. */
export const stat: CommandSpec = {
  states: ['transaction'],
  async run(s) {
    const { count, size } = s.maildrop!.stat();
    s.write(`+OK ${count} ${size}\r\n`);
  },
};
