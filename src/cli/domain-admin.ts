import type { Command, Option } from 'commander';
import { CliError, withStores } from './io.ts';

/**
 * `postern domain admin`: who administers a domain. An administrator may send as any
 * address of the domain (e.g. noreply@, a departed colleague's address) through
 * submission; everyone else only as their own addresses and aliases.
 */
export function registerDomainAdmin(program: Command, configOption: () => Option): void {
  const domain = program.commands.find((c) => c.name() === 'domain');
  if (!domain) throw new Error('register the domain command first');
  domain
    .command('admin <domain> [user]')
    .description('make USER an administrator of DOMAIN (may send as any address in it); without USER, list the administrators')
    .option('--remove', 'remove USER from the administrators of DOMAIN')
    .addOption(configOption())
    .action((name: string, user: string | undefined, opts: { config?: string; remove?: boolean }) =>
      withStores(opts, async ({ data }) => {
        const d = name.toLowerCase();
        if (!user) {
          if (opts.remove) throw new CliError('--remove needs the USER to remove');
          const admins = (await data.listDomainAdmins()).filter((a) => a.domain === d);
          console.log(admins.length ? admins.map((a) => a.email).join('\n') : `no administrators of ${d}`);
          return;
        }
        await data.setDomainAdmin(d, user, !opts.remove);
        console.log(opts.remove ? `${user.toLowerCase()} no longer administers ${d}` : `${user.toLowerCase()} administers ${d}`);
      }),
    );
}
