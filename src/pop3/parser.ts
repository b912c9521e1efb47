import { badCommand, err } from './errors.ts';

/**
 * Turns a command line into a typed command (RFC 1939 §3, RFC 2449 §3): a keyword
 * of 3 or 4 letters, case-insensitive, then arguments separated by spaces. Handlers
 * never see raw tokens. Syntax errors are thrown as bad commands (they count toward
 * the session's limit).
 */
interface Arguments {
  CAPA: object;
  STLS: object;
  QUIT: object;
  STAT: object;
  NOOP: object;
  RSET: object;
  UTF8: object;
  USER: { user: string };
  PASS: { password: string };
  /** `mechanism` null: the RFC 1734 form without arguments (lists the mechanisms). */
  AUTH: { mechanism: string | null; initial: string | null };
  LIST: { msg: number | null };
  UIDL: { msg: number | null };
  RETR: { msg: number };
  DELE: { msg: number };
  TOP: { msg: number; lines: number };
}

export type CommandName = keyof Arguments;
/** One command with its typed arguments. */
export type CommandOf<N extends CommandName> = { name: N } & Arguments[N];
export type Command = { [N in CommandName]: CommandOf<N> }[CommandName];

/** Message numbers and line counts: decimal, at most 10 digits (anything larger names no message). */
function number(arg: string | undefined, what: string, min: number): number {
  if (arg === undefined || !/^\d{1,10}$/.test(arg)) throw badCommand(`Invalid ${what}: expected a number`);
  const n = Number(arg);
  if (n < min) throw err(min === 1 ? 'No such message' : `Invalid ${what}`);
  return n;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function utf8(line: Buffer): string {
  try {
    return strictUtf8.decode(line);
  } catch {
    throw badCommand('Invalid UTF-8 in the command');
  }
}

export function parseCommand(line: Buffer): Command {
  // No control characters anywhere (NUL, CR, ESC … would forge log lines or confuse the SASL layer).
  for (const b of line) if (b < 0x20 || b === 0x7f) throw badCommand('Invalid characters in the command');
  const text = utf8(line);
  const sp = text.indexOf(' ');
  const keyword = (sp < 0 ? text : text.slice(0, sp)).toUpperCase();
  const rest = sp < 0 ? '' : text.slice(sp + 1);
  const args = rest.split(' ').filter(Boolean);
  const none = (name: 'CAPA' | 'STLS' | 'QUIT' | 'STAT' | 'NOOP' | 'RSET' | 'UTF8'): Command => {
    if (args.length) throw badCommand(`${name} takes no arguments`);
    return { name };
  };
  switch (keyword) {
    case 'CAPA':
    case 'STLS':
    case 'QUIT':
    case 'STAT':
    case 'NOOP':
    case 'RSET':
    case 'UTF8':
      return none(keyword);
    case 'USER': {
      // RFC 1939 §7: one argument, the mailbox name; RFC 6856 allows UTF-8 in it.
      if (args.length !== 1) throw badCommand('Syntax: USER name');
      return { name: 'USER', user: args[0]! };
    }
    case 'PASS':
      // RFC 1939 §7: "a POP3 server may treat spaces in the argument as part of the password".
      if (!rest) throw badCommand('Syntax: PASS password');
      return { name: 'PASS', password: rest };
    case 'AUTH':
      if (args.length > 2) throw badCommand('Syntax: AUTH mechanism [initial-response]');
      return { name: 'AUTH', mechanism: args[0]?.toUpperCase() ?? null, initial: args[1] ?? null };
    case 'LIST':
    case 'UIDL':
      if (args.length > 1) throw badCommand(`Syntax: ${keyword} [msg]`);
      return { name: keyword, msg: args.length ? number(args[0], 'message number', 1) : null };
    case 'RETR':
    case 'DELE':
      if (args.length !== 1) throw badCommand(`Syntax: ${keyword} msg`);
      return { name: keyword, msg: number(args[0], 'message number', 1) };
    case 'TOP':
      if (args.length !== 2) throw badCommand('Syntax: TOP msg n');
      return { name: 'TOP', msg: number(args[0], 'message number', 1), lines: number(args[1], 'line count', 0) };
    case 'APOP':
      // RFC 1939 §7 APOP (MD5 over a shared secret) is not offered: passwords are stored hashed.
      throw badCommand('APOP is not supported; use USER/PASS or AUTH over TLS');
    default:
      throw badCommand('Unknown command');
  }
}
