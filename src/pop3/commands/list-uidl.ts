import { err } from '../errors.ts';
import type { CommandOf } from '../parser.ts';
import type { Pop3Session } from '../session.ts';
import type { DropMessage } from '../maildrop.ts';
import type { CommandSpec } from './index.ts';

/**
 * RFC 1939 §5 LIST ("scan listing": number and octets) and §7 UIDL ("unique-id
 * listing"): for one message, or multi-line for every message not marked deleted.
 */
function listing(s: Pop3Session, msg: number | null, item: (m: DropMessage) => string, head: string): void {
  const drop = s.maildrop!;
  if (msg !== null) {
    const m = drop.get(msg);
    if (!m) throw err(drop.isDeleted(msg) ? `Message ${msg} is deleted` : 'No such message');
    s.write(`+OK ${msg} ${item(m)}\r\n`);
    return;
  }
  const lines = [head];
  drop.messages.forEach((m, i) => {
    if (!drop.isDeleted(i + 1)) lines.push(`${i + 1} ${item(m)}`);
  });
  lines.push('.', '');
  s.write(lines.join('\r\n'));
}

export const list: CommandSpec<CommandOf<'LIST'>> = {
  states: ['transaction'],
  async run(s, cmd) {
    const { count, size } = s.maildrop!.stat();
    listing(s, cmd.msg, (m) => String(m.size), `+OK ${count} messages (${size} octets)`);
  },
};

export const uidl: CommandSpec<CommandOf<'UIDL'>> = {
  states: ['transaction'],
  async run(s, cmd) {
    const drop = s.maildrop!;
    listing(s, cmd.msg, (m) => drop.uidl(m), '+OK Unique-ID listing follows');
  },
};
