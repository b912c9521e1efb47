import type { Pop3Session } from '../session.ts';
import type { CommandSpec } from './index.ts';

/**
 * RFC 2449 §5 CAPA, in every state. What may log in is listed only where it may be
 * used (RFC 2595 §4: no USER or SASL before TLS unless the loopback exemption
 * applies); STLS only on a plain connection before login.
 */
export function capabilities(s: Pop3Session): string[] {
  const caps = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'];
  const expire = s.cfg.expire;
  caps.push(`EXPIRE ${expire === 'never' ? 'NEVER' : expire}`);
  if (s.cfg.login_delay > 0) caps.push(`LOGIN-DELAY ${Math.ceil(s.cfg.login_delay / 1000)}`);
  // RFC 6856 §2: UTF-8 is accepted in USER/PASS (and AUTH), messages are sent as stored.
  caps.push('UTF8 USER');
  if (s.state === 'authorization') {
    if (!s.secure && s.opts.starttls) caps.push('STLS');
    if (s.authAllowed) caps.push('USER', `SASL ${s.ctx.security.auth.mechanisms.join(' ')}`);
  }
  caps.push('IMPLEMENTATION Postern');
  return caps;
}

export const capa: CommandSpec = {
  states: ['authorization', 'transaction'],
  async run(s) {
    s.write(`+OK Capability list follows\r\n${capabilities(s).join('\r\n')}\r\n.\r\n`);
  },
};
