import { createMechanism, decodeResponse, MECHANISMS, type SaslStep } from '../../auth/sasl.ts';
import { bad, no } from '../errors.ts';
import { argCount, astring, atomUpper } from '../args.ts';
import type { ImapSession } from '../session.ts';
import type { CommandSpec } from './index.ts';

/** STARTTLS (RFC 9051 §6.2.1), LOGIN (§6.2.3), AUTHENTICATE (§6.2.2, SASL-IR RFC 4959). */

function requireAuthAllowed(s: ImapSession): void {
  // RFC 9051 §6.2.3 / RFC 8314: no passwords in cleartext.
  if (!s.authAllowed) throw no('Log in over TLS: use STARTTLS or the IMAPS port', 'PRIVACYREQUIRED');
}

async function finishLogin(s: ImapSession, result: { ok: true; account: { id: number; email: string } } | { ok: false; banned: boolean }): Promise<string> {
  if (!result.ok) {
    if (result.banned) {
      s.untagged('* BYE Too many failed logins from your address; try again later');
      setImmediate(() => s.close());
    }
    throw no('Authentication failed', 'AUTHENTICATIONFAILED');
  }
  s.loggedIn(result.account);
  return `[CAPABILITY ${s.capabilities().join(' ')}] Logged in`;
}

export const authCommands: CommandSpec[] = [
  {
    name: 'STARTTLS',
    states: ['not-authenticated'],
    async run(s, cmd) {
      argCount(cmd, 0);
      if (s.secure) throw bad('Already inside TLS');
      if (!s.opts.starttls) throw no('TLS is not available here');
      // The OK goes out in cleartext, then the handshake (RFC 9051 §6.2.1).
      s.write(`${cmd.tag} OK Begin TLS negotiation now\r\n`);
      await s.startTls();
      return null;
    },
  },
  {
    name: 'LOGIN',
    states: ['not-authenticated'],
    async run(s, cmd) {
      argCount(cmd, 2);
      requireAuthAllowed(s);
      const username = astring(cmd, 0, 'a user name');
      const password = astring(cmd, 1, 'a password');
      return finishLogin(s, await s.ctx.security.auth.login({ username, password, address: s.opts.remoteAddress, protocol: 'imap' }));
    },
  },
  {
    name: 'AUTHENTICATE',
    states: ['not-authenticated'],
    async run(s, cmd) {
      argCount(cmd, 1, 2);
      requireAuthAllowed(s);
      const name = atomUpper(cmd.args[0]);
      const mech = name && (MECHANISMS as readonly string[]).includes(name) ? createMechanism(name, (u) => s.ctx.security.auth.scramSecret(u)) : null;
      if (!mech) throw no(`Unsupported mechanism; use one of ${MECHANISMS.join(' ')}`, 'CANNOT');
      let initial: Buffer | null = null;
      if (cmd.args.length === 2) {
        const r = decodeResponse(astring(cmd, 1, 'an initial response'), true);
        if (r === 'abort') throw bad('AUTHENTICATE aborted');
        if (r === null) throw bad('Invalid base64 in the initial response');
        initial = r;
      }
      let step: SaslStep = await mech.start(initial);
      for (;;) {
        if (step.kind === 'error') throw bad(step.message);
        if (step.kind === 'credentials') {
          return finishLogin(s, await s.ctx.security.auth.login({ username: step.username, password: step.password, address: s.opts.remoteAddress, protocol: 'imap' }));
        }
        if (step.kind === 'verified') {
          const r = await s.ctx.security.auth.scramOutcome({ username: step.username, address: s.opts.remoteAddress, protocol: 'imap' }, step.ok);
          if (r.ok && step.final) {
            // RFC 5802 §5: the server-final-message, then success.
            s.write(`+ ${step.final.toString('base64')}\r\n`);
            const ack = await s.readLine();
            if (ack === null) throw bad('connection closed');
          }
          return finishLogin(s, r);
        }
        s.write(`+ ${step.data.toString('base64')}\r\n`);
        const line = await s.readLine();
        if (line === null) throw bad('connection closed');
        if (line === 'too-long') throw bad('Response too long');
        const resp = decodeResponse(line.toString('latin1'));
        if (resp === 'abort') throw bad('AUTHENTICATE aborted');
        if (resp === null) throw bad('Invalid base64 in the response');
        step = await mech.next(resp);
      }
    },
  },
];
