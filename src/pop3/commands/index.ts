import type { Command, CommandName, CommandOf } from '../parser.ts';
import type { Pop3Session, Pop3State } from '../session.ts';
import { capa } from './capa.ts';
import { stls } from './stls.ts';
import { user, pass } from './user-pass.ts';
import { auth } from './auth.ts';
import { utf8 } from './utf8.ts';
import { stat } from './stat.ts';
import { list, uidl } from './list-uidl.ts';
import { retr, top } from './retr-top.ts';
import { dele } from './dele.ts';
import { rset } from './rset.ts';
import { noop } from './noop.ts';
import { quit } from './quit.ts';

/** One command: the states it is allowed in (RFC 1939 §4–§7, RFC 2449, RFC 2595, RFC 5034, RFC 6856). */
export interface CommandSpec<C = Command> {
  states: readonly Pop3State[];
  run(s: Pop3Session, cmd: C): Promise<void>;
}

type Table = { [N in CommandName]: CommandSpec<CommandOf<N>> };

export const COMMANDS: Table = {
  CAPA: capa,
  STLS: stls,
  USER: user,
  PASS: pass,
  AUTH: auth,
  UTF8: utf8,
  STAT: stat,
  LIST: list,
  UIDL: uidl,
  RETR: retr,
  TOP: top,
  DELE: dele,
  RSET: rset,
  NOOP: noop,
  QUIT: quit,
};
