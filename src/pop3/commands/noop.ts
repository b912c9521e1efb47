import type { CommandSpec } from './index.ts';

/** RFC 1939 §5 NOOP. */
export const noop: CommandSpec = {
  states: ['transaction'],
  async run(s) {
    s.write('+OK\r\n');
  },
};
