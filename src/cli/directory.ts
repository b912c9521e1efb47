import type { Command, Option } from 'commander';
import { pino } from 'pino';
import { createDirectory } from '../directory/create.ts';
import type { Directory, DirectoryUser } from '../directory/directory.ts';
import { DirectoryUnavailableError } from '../directory/errors.ts';
import { describeError } from '../directory/ldap/failure-log.ts';
import type { Stores } from '../store/open.ts';
import type { LoadedConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { CliError, passwordFromStdin, withStores } from './io.ts';

/** Exit status when the directory cannot be reached (sysexits EX_UNAVAILABLE). */
const EX_UNAVAILABLE = 69;

/** Runs a CLI action with the configured directory (LDAP or the store); directory failures warn on stderr. */
export async function withDirectory(opts: { config?: string }, fn: (directory: Directory, stores: Stores, loaded: LoadedConfig) => Promise<void>): Promise<void> {
  await withStores(opts, async (stores, loaded) => {
    const log = pino({ level: 'warn', base: undefined }, pino.destination(2));
    const directory = createDirectory(loaded.config, stores.data, log);
    try {
      await fn(directory, stores, loaded);
    } catch (err) {
      if (err instanceof DirectoryUnavailableError) {
        process.stderr.write(`postern: the directory did not answer (${directory.describe()}): ${describeError((err as { cause?: unknown }).cause ?? err)}\n`);
        process.exitCode = EX_UNAVAILABLE;
        return;
      }
      throw err;
    } finally {
      await directory.close();
    }
  });
}

function show(u: DirectoryUser): string[] {
  const yesNo = (b: boolean) => (b ? 'yes' : 'no');
  return [
    `  user:      ${u.dn ?? '(store account)'}`,
    `  mail:      ${u.email}`,
    ...(u.aliases.length ? [`  aliases:   ${u.aliases.join(', ')}`] : []),
    ...(u.uid ? [`  uid:       ${u.uid}`] : []),
    ...(u.displayName ? [`  name:      ${u.displayName}`] : []),
    `  quota:     ${u.quotaBytes === null ? 'none' : `${u.quotaBytes} bytes`}`,
    `  enabled:   ${yesNo(u.enabled)}`,
    `  password:  ${u.passwordSchemes.length ? u.passwordSchemes.map((s) => `{${s}}`).join(', ') : u.dn ? '(not read: auth = "bind", or not readable by bind_dn)' : 'none'}`,
  ];
}

export function registerDirectory(program: Command, configOption: () => Option): void {
  const dir = program.command('directory').description('inspect the user directory (the store, or LDAP with [directory] backend = "ldap")');
  dir
    .command('test [email]')
    .description(
      'print what the directory returns for an address or login name (like `postmap -q`): the user, their aliases, quota and flag, groups, and where mail to it goes; without EMAIL, check the connection and count the users. Exit 0: found, 1: not found, 69: directory unreachable',
    )
    .option('--password-stdin', 'also check a password (first line of standard input) as a login would, without counting toward bans')
    .addOption(configOption())
    .action((email: string | undefined, opts: { config?: string; passwordStdin?: boolean }) =>
      withDirectory(opts, async (directory) => {
        console.log(`directory: ${directory.describe()}`);
        if (!email) {
          const users = await directory.listUsers();
          console.log(`connection: ok`);
          console.log(`users: ${users.length}${users.length ? ` (e.g. ${users.slice(0, 3).map((u) => u.email).join(', ')})` : ''}`);
          return;
        }
        const address = email.trim().toLowerCase();
        const users = await directory.findUsers(address);
        const groups = await directory.findGroups(address);
        const resolution = await directory.resolve(address);
        console.log(`${address}:`);
        for (const u of users) console.log(show(u).join('\n'));
        for (const g of groups) console.log(`  group:     ${g.dn}\n  members:   ${g.members.join(', ') || '(none)'}`);
        if (!users.length && !groups.length) console.log('  no user or group in the directory');
        if (!address.includes('@')) {
          // A login name (uid): no delivery to show.
        } else if (resolution.kind === 'non-local') console.log('  delivery:  not a local domain (mail to it is relayed for authenticated users only)');
        else if (resolution.kind === 'unknown' || (!resolution.accounts.length && !resolution.remote.length)) console.log('  delivery:  refused at RCPT (550 5.1.1 user unknown)');
        else console.log(`  delivery:  ${[...resolution.accounts.map((a) => `${a.email} (account ${a.id})`), ...resolution.remote.map((r) => `${r} (forwarded)`)].join(', ')}`);
        if (opts.passwordStdin) {
          const password = await passwordFromStdin();
          if (!directory.authenticate) throw new CliError('the internal directory keeps passwords in the store: test a login with swaks or curl');
          const v = await directory.authenticate(address, password);
          console.log(`  login:     ${v.kind === 'ok' ? `ok (as ${v.user.email})` : `refused: ${v.kind}`}`);
          if (v.kind !== 'ok') process.exitCode = 1;
        }
        if (!users.length && !groups.length && resolution.kind !== 'deliver') process.exitCode = 1;
      }),
    );
}

/** `user add/del/passwd` with LDAP: refused, naming the config key. */
export function readOnlyUsers(config: Config, what: string): void {
  if (config.directory.backend === 'ldap') {
    throw new CliError(`users come from LDAP (directory.backend = "ldap" in the config) and are read-only here: ${what} in the LDAP server instead (docs/ldap.md)`);
  }
}

/**
 * `postern user list`: the store's accounts; with LDAP, the directory's users (with
 * the size of their stored mail, if any yet) followed by stored mailboxes whose
 * address the directory no longer has (renamed or removed users).
 */
export async function listUsers(opts: { config?: string; json?: boolean }): Promise<void> {
  await withDirectory(opts, async (directory, { data }) => {
    const rows = new Map((await data.listAccounts()).map((r) => [r.email, r]));
    const print = (o: Record<string, unknown>, line: string) => console.log(opts.json ? JSON.stringify(o) : line);
    if (directory.backend === 'internal') {
      for (const u of rows.values()) print(u, `${u.email}\t${u.messages} messages\t${u.bytes} bytes`);
      return;
    }
    for (const u of await directory.listUsers()) {
      const r = rows.get(u.email);
      rows.delete(u.email);
      const o = { email: u.email, messages: r?.messages ?? 0, bytes: r?.bytes ?? 0, enabled: u.enabled, aliases: u.aliases, dn: u.dn };
      print(o, `${u.email}\t${o.messages} messages\t${o.bytes} bytes${u.enabled ? '' : '\tdisabled'}${u.aliases.length ? `\taliases: ${u.aliases.join(', ')}` : ''}`);
    }
    for (const r of rows.values()) print({ ...r, orphaned: true }, `${r.email}\t${r.messages} messages\t${r.bytes} bytes\tnot in the directory (renamed or removed in LDAP?)`);
  });
}
