import type { CommandSpec } from './index.ts';

/**
 * RFC 6856 §2 UTF8, in the AUTHORIZATION state: the client accepts UTF-8 in
 * responses and messages. Postern never downgrades a message and accepts UTF-8
 * in USER, PASS and AUTH in any case, so it only records the fact.
 */
export const utf8: CommandSpec = {
  states: ['authorization'],
  async run(s) {
    s.utf8 = true;
    s.write('+OK UTF8 enabled\r\n');
  },
};
