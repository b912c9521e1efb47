import { badCommand, err } from '../errors.ts';
import type { CommandSpec } from './index.ts';

/** RFC 2595 §4 STLS: only in the AUTHORIZATION state, before any login, on a plain connection. */
export const stls: CommandSpec = {
  states: ['authorization'],
  async run(s) {
    if (s.secure) throw badCommand('Command not permitted when TLS active');
    if (!s.opts.starttls) throw err('TLS is not available here', 'SYS/PERM');
    // The +OK goes out in cleartext, then the handshake; see session.startTls for what is discarded.
    s.write('+OK Begin TLS negotiation\r\n');
    await s.startTls();
  },
};
