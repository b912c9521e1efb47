import type { Command, Option } from 'commander';
import { CliError, isEmail, passwordFromStdin, promptPassword, withStores } from './io.ts';
import { passwordSecrets } from '../auth/secrets.ts';
import { registerUserImport } from './user-import.ts';
import { readOnlyUsers, listUsers } from './directory.ts';
import { size } from '../config/schema.ts';

export function registerAdmin(program: Command, configOption: () => Option): void {
  const domain = program.command('domain').description('manage the domains Postern receives mail for');
  domain
    .command('add <domain>')
    .description('receive mail for DOMAIN')
    .addOption(configOption())
    .action((name: string, opts: { config?: string }) =>
      withStores(opts, async ({ data }) => {
        if (!/^[a-z0-9.-]+$/i.test(name) || name.startsWith('.') || name.endsWith('.')) throw new CliError(`"${name}" is not a domain name`);
        await data.addDomain(name);
        console.log(`domain ${name.toLowerCase()} added`);
      }),
    );
  domain
    .command('del <domain>')
    .description('stop receiving mail for DOMAIN (it must have no users left)')
    .addOption(configOption())
    .action((name: string, opts: { config?: string }) =>
      withStores(opts, async ({ data }) => {
        await data.deleteDomain(name);
        console.log(`domain ${name.toLowerCase()} removed`);
      }),
    );
  domain
    .command('list')
    .description('list local domains')
    .addOption(configOption())
    .action((opts: { config?: string }) =>
      withStores(opts, async ({ data }) => {
        for (const d of await data.listDomains()) console.log(d);
      }),
    );

  const user = program.command('user').description('manage mail users (accounts)');
  user
    .command('add <email>')
    .description('create a user with the default mailboxes (INBOX, Drafts, Sent, Junk, Trash, Archive)')
    .option('--password-stdin', 'read the password from standard input (first line)')
    .option('--no-password', 'create the user without a password (it cannot log in until `user passwd`)')
    .addOption(configOption())
    .action((email: string, opts: { config?: string; passwordStdin?: boolean; password: boolean }) =>
      withStores(opts, async ({ data }, loaded) => {
        readOnlyUsers(loaded.config, `add ${email}`);
        if (!isEmail(email)) throw new CliError(`"${email}" is not an email address`);
        let password: string | null = null;
        if (opts.passwordStdin) password = await passwordFromStdin();
        else if (opts.password && process.stdin.isTTY) password = await promptPassword();
        const secrets = password === null ? null : await passwordSecrets(password);
        await data.addAccount(email, secrets?.hash ?? null, secrets?.scram ?? null);
        console.log(`user ${email.toLowerCase()} added${password === null ? ' (no password set: `postern user passwd ' + email + ' --password-stdin`)' : ''}`);
      }),
    );
  user
    .command('del <email>')
    .description('delete a user and all their mail')
    .addOption(configOption())
    .action((email: string, opts: { config?: string }) =>
      withStores(opts, async ({ data }, loaded) => {
        readOnlyUsers(loaded.config, `remove ${email}`);
        await data.deleteAccount(email);
        console.log(`user ${email.toLowerCase()} deleted`);
      }),
    );
  user
    .command('list')
    .description('list users with their message count and size (with LDAP: the directory\'s users, and stored mailboxes of addresses no longer in it)')
    .option('--json', 'one JSON object per line')
    .addOption(configOption())
    .action((opts: { config?: string; json?: boolean }) => listUsers(opts));
  user
    .command('passwd <email>')
    .description("set a user's password")
    .option('--password-stdin', 'read the password from standard input (first line)')
    .addOption(configOption())
    .action((email: string, opts: { config?: string; passwordStdin?: boolean }) =>
      withStores(opts, async ({ data }, loaded) => {
        readOnlyUsers(loaded.config, `change the password of ${email}`);
        const password = opts.passwordStdin ? await passwordFromStdin() : process.stdin.isTTY ? await promptPassword() : null;
        if (!password) throw new CliError('no password given: use --password-stdin or run on a terminal');
        const { hash, scram } = await passwordSecrets(password);
        await data.setPassword(email, hash, scram);
        console.log(`password of ${email.toLowerCase()} changed`);
      }),
    );

  user
    .command('quota <email> <size>')
    .description('set the storage limit of a user: a size like "2G", "500M" or bytes, or "none"; over it, APPEND/COPY get NO [OVERQUOTA] and mail to the user 452 4.2.2')
    .addOption(configOption())
    .action((email: string, limit: string, opts: { config?: string }) =>
      withStores(opts, async ({ data }, loaded) => {
        readOnlyUsers(loaded.config, `set the quota of ${email}`);
        let bytes: number | null = null;
        if (limit.toLowerCase() !== 'none') {
          const parsed = size.safeParse(/^\d+$/.test(limit) ? Number(limit) : limit);
          if (!parsed.success) throw new CliError(`"${limit}" is not a size: give bytes, a size like "2G" or "500M", or "none"`);
          bytes = parsed.data;
        }
        await data.setQuota(email, bytes);
        console.log(bytes === null ? `quota of ${email.toLowerCase()} removed` : `quota of ${email.toLowerCase()} set to ${bytes} bytes`);
      }),
    );

  registerUserImport(user, configOption);

  const alias = program.command('alias').description('manage aliases: ALIAS delivers to one or more TARGETs (local or remote); "@domain" is a catch-all');
  alias
    .command('add <alias> <targets...>')
    .description('make ALIAS deliver to TARGET(s); adds to existing targets')
    .addOption(configOption())
    .action((address: string, targets: string[], opts: { config?: string }) =>
      withStores(opts, async ({ data }) => {
        if (!/^[^\s@]*@[^\s@]+$/.test(address)) throw new CliError(`"${address}" is not an address or "@domain" catch-all`);
        const domainPart = address.slice(address.lastIndexOf('@') + 1);
        if (!(await data.isLocalDomain(domainPart))) throw new CliError(`${domainPart} is not a local domain (add it with \`postern domain add ${domainPart}\`)`);
        for (const t of targets) if (!isEmail(t)) throw new CliError(`target "${t}" is not an email address`);
        await data.addAlias(address, targets);
        console.log(`alias ${address.toLowerCase()} -> ${(await data.aliasTargets(address)).join(', ')}`);
      }),
    );
  alias
    .command('del <alias> [targets...]')
    .description('remove ALIAS, or only the given TARGETs from it')
    .addOption(configOption())
    .action((address: string, targets: string[], opts: { config?: string }) =>
      withStores(opts, async ({ data }) => {
        const n = await data.deleteAlias(address, targets);
        if (!n) throw new CliError(`no alias ${address.toLowerCase()}${targets.length ? ' with those targets' : ''}`);
        console.log(`alias ${address.toLowerCase()}: ${n} target(s) removed`);
      }),
    );
  alias
    .command('list')
    .description('list aliases and their targets')
    .addOption(configOption())
    .action((opts: { config?: string }) =>
      withStores(opts, async ({ data }) => {
        for (const a of await data.listAliases()) console.log(`${a.address}\t${a.targets.join(', ')}`);
      }),
    );
}
