import { badCommand } from '../errors.ts';
import type { CommandOf } from '../parser.ts';
import type { CommandSpec } from './index.ts';
import { finishLogin, requireAuthAllowed } from './login.ts';

/** RFC 1939 §7 USER and PASS (only inside TLS, see login.ts). */
export const user: CommandSpec<CommandOf<'USER'>> = {
  states: ['authorization'],
  async run(s, cmd) {
    requireAuthAllowed(s);
    s.user = cmd.user;
    s.write('+OK Send your password\r\n');
  },
};

export const pass: CommandSpec<CommandOf<'PASS'>> = {
  states: ['authorization'],
  async run(s, cmd) {
    requireAuthAllowed(s);
    const username = s.user;
    if (username === null) throw badCommand('No user name given; send USER first');
    // RFC 1939 §7: after a failed PASS the client starts again with USER.
    s.user = null;
    await finishLogin(s, () => s.ctx.security.auth.login({ username, password: cmd.password, address: s.opts.remoteAddress, protocol: 'pop3' }));
  },
};
