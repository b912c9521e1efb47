import { createMechanism, decodeResponse, MECHANISMS, type SaslStep } from '../../auth/sasl.ts';
import type { LoginResult } from '../../auth/authenticator.ts';
import { badCommand, err } from '../errors.ts';
import type { CommandOf } from '../parser.ts';
import type { Pop3Session } from '../session.ts';
import type { CommandSpec } from './index.ts';
import { finishLogin, requireAuthAllowed } from './login.ts';

/**
 * RFC 5034 AUTH over the shared SASL mechanisms (auth/sasl.ts): an optional initial
 * response ("=" for an empty one), challenges as "+ base64", "*" from the client
 * aborts. Without arguments it lists the mechanisms (the RFC 1734 form older
 * clients probe with).
 */
async function nextResponse(s: Pop3Session): Promise<Buffer> {
  const ev = await s.readLine();
  if (ev === null) throw err('Connection closed');
  if (ev.kind === 'too-long') throw badCommand('Response too long');
  const r = decodeResponse(ev.line.toString('latin1'));
  if (r === 'abort') throw err('Authentication aborted');
  if (r === null) throw badCommand('Invalid base64 in the response');
  return r;
}

async function exchange(s: Pop3Session, step: SaslStep, next: (r: Buffer) => SaslStep | Promise<SaslStep>): Promise<LoginResult> {
  const auth = s.ctx.security.auth;
  const address = s.opts.remoteAddress;
  for (;;) {
    if (step.kind === 'error') throw badCommand(step.message);
    if (step.kind === 'credentials') {
      // Acting for another user (RFC 4616 authzid) is not supported.
      if (step.authzid && step.authzid.toLowerCase() !== step.username.toLowerCase()) throw err('Authorization identity not permitted', 'AUTH');
      return auth.login({ username: step.username, password: step.password, address, protocol: 'pop3' });
    }
    if (step.kind === 'verified') {
      const r = await auth.scramOutcome({ username: step.username, address, protocol: 'pop3' }, step.ok);
      if (r.ok && step.final) {
        // RFC 5034 §4: additional data with success is a last challenge, answered with an empty line.
        s.write(`+ ${step.final.toString('base64')}\r\n`);
        const ack = await nextResponse(s);
        if (ack.length) throw badCommand('Expected an empty response');
      }
      return r;
    }
    s.write(`+ ${step.data.toString('base64')}\r\n`);
    step = await next(await nextResponse(s));
  }
}

export const auth: CommandSpec<CommandOf<'AUTH'>> = {
  states: ['authorization'],
  async run(s, cmd) {
    if (cmd.mechanism === null) {
      // Without SCRAM-SHA-256 when LDAP checks passwords (no SCRAM secret there): Authenticator.mechanisms.
      s.write(`+OK\r\n${s.ctx.security.auth.mechanisms.join('\r\n')}\r\n.\r\n`);
      return;
    }
    requireAuthAllowed(s);
    const name = cmd.mechanism;
    const offered = s.ctx.security.auth.mechanisms;
    const mech = offered.includes(name) && (MECHANISMS as readonly string[]).includes(name) ? createMechanism(name, (u) => s.ctx.security.auth.scramSecret(u)) : null;
    if (!mech) throw err(`Unsupported mechanism; use one of ${offered.join(' ')}`);
    let initial: Buffer | null = null;
    if (cmd.initial !== null) {
      const r = decodeResponse(cmd.initial, true);
      if (r === 'abort') throw err('Authentication aborted');
      if (r === null) throw badCommand('Invalid base64 in the initial response');
      initial = r;
    }
    s.user = null;
    await finishLogin(s, async () => exchange(s, await mech.start(initial), (r) => mech.next(r)));
  },
};
