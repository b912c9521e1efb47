import { bad } from '../errors.ts';
import { tokenText } from '../parser.ts';
import { quoted } from '../writer.ts';
import { argCount, atomUpper } from '../args.ts';
import type { CommandSpec } from './index.ts';

const ANY = ['not-authenticated', 'authenticated', 'selected'] as const;

/** CAPABILITY (RFC 9051 §6.1.1), NOOP (§6.1.2), LOGOUT (§6.1.3), ID (RFC 2971), ENABLE (RFC 5161; CONDSTORE and QRESYNC, RFC 7162), NAMESPACE (RFC 2342). */
export const anyState: CommandSpec[] = [
  {
    name: 'CAPABILITY',
    states: [...ANY],
    async run(s, cmd) {
      argCount(cmd, 0);
      s.untagged(`* CAPABILITY ${s.capabilities().join(' ')}`);
    },
  },
  {
    name: 'NOOP',
    states: [...ANY],
    async run(s, cmd) {
      argCount(cmd, 0);
      // Pending updates go out as the command completes (session.flushUpdates).
    },
  },
  {
    name: 'LOGOUT',
    states: [...ANY],
    async run(s, cmd) {
      argCount(cmd, 0);
      s.untagged('* BYE Logging out');
      s.state = 'logout';
      s.selected = null;
      s.write('');
      setImmediate(() => s.close());
      return 'LOGOUT completed';
    },
  },
  {
    name: 'ID',
    states: [...ANY],
    async run(s, cmd) {
      argCount(cmd, 1);
      const a = cmd.args[0]!;
      if (a.kind === 'list') {
        const fields: string[] = [];
        for (let i = 0; i + 1 < a.items.length && i < 60; i += 2) fields.push(`${tokenText(a.items[i])}=${tokenText(a.items[i + 1])}`);
        s.log.info({ id: fields.join(' ').slice(0, 300) }, 'client ID');
      } else if (a.kind !== 'nil') throw bad('ID: expected a parameter list or NIL');
      // RFC 2971 §3.3: no version details that would help an attacker.
      s.untagged(`* ID ("name" "Postern" "vendor" ${quoted('Postern')!.toString()})`);
    },
  },
  {
    name: 'ENABLE',
    states: ['authenticated', 'selected'],
    async run(s, cmd) {
      if (!cmd.args.length) throw bad('ENABLE: expected capability names');
      const known = new Set(['IMAP4REV2', 'UTF8=ACCEPT', 'CONDSTORE', 'QRESYNC']);
      const hadCondstore = s.enabled.has('CONDSTORE');
      const now: string[] = [];
      for (const t of cmd.args) {
        const c = atomUpper(t);
        if (!c) throw bad('ENABLE: expected capability names');
        if (known.has(c) && !s.enabled.has(c)) {
          s.enabled.add(c);
          now.push(c === 'IMAP4REV2' ? 'IMAP4rev2' : c);
        }
      }
      // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
      if (s.enabled.has('QRESYNC')) s.enabled.add('CONDSTORE');
      s.untagged(`* ENABLED${now.map((c) => ` ${c}`).join('')}`);
      // RFC 7162 §3.1: CONDSTORE enabled while a mailbox is selected: tell its HIGHESTMODSEQ now.
      if (!hadCondstore && s.enabled.has('CONDSTORE') && s.selected) {
        // The value of the last sync: never above what the client has been told (pending changes follow).
        s.untagged(`* OK [HIGHESTMODSEQ ${s.selected.highestModseq}] Highest`);
      }
    },
  },
  {
    name: 'NAMESPACE',
    states: ['authenticated', 'selected'],
    async run(s, cmd) {
      argCount(cmd, 0);
      s.untagged('* NAMESPACE (("" "/")) NIL NIL');
    },
  },
];
