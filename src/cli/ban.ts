import net from 'node:net';
import type { Command, Option } from 'commander';
import { pino } from 'pino';
import { CliError, withStores } from './io.ts';
import { BanGuard } from '../auth/bans.ts';
import { duration, type Config } from '../config/schema.ts';
import type { DataStore } from '../store/data-store.ts';

/** "10m", "2h", "7d" → ms, with an error that says what is expected. */
function parseDuration(value: string): number {
  const r = duration.safeParse(value);
  if (!r.success || r.data <= 0) throw new CliError(`--for: expected a duration like "30m", "2h" or "7d", got "${value}"`);
  return r.data;
}

function checkAddress(ip: string): string {
  if (!net.isIP(ip)) throw new CliError(`"${ip}" is not an IP address (IPv6 addresses are banned by their /64)`);
  return ip;
}

/** `postern ban list|add|del`: the fail2ban-client of Postern. Bans live in the store, so every node sees them at once. */
export function registerBan(program: Command, configOption: () => Option): void {
  const ban = program.command('ban').description('list, add and lift bans of client IPs (automatic after failed logins, see [bans])');
  // No notices from the CLI: a ban by hand is the administrator's own doing.
  const guard = (data: DataStore, cfg: Config) => new BanGuard(data, cfg.bans, pino({ level: 'silent' }), async () => undefined);

  ban
    .command('list')
    .description('list banned clients (IPv4 addresses, IPv6 /64s) and when their bans end')
    .option('--json', 'machine-readable output')
    .addOption(configOption())
    .action((opts: { config?: string; json?: boolean }) =>
      withStores(opts, async ({ data }, loaded) => {
        const entries = await guard(data, loaded.config).list();
        if (opts.json) return void console.log(JSON.stringify(entries.map((e) => ({ client: e.key, until: new Date(e.until).toISOString(), failures: e.failures }))));
        if (!entries.length) return void console.log('no bans');
        for (const e of entries) {
          console.log(`${e.key.padEnd(40)} until ${new Date(e.until).toISOString()}  ${e.failures ? `${e.failures} failed logins` : 'added by hand'}`);
        }
      }),
    );

  ban
    .command('add <ip>')
    .description('ban a client IP on every port (an IPv6 address bans its /64)')
    .option('--for <duration>', 'how long, e.g. 30m, 12h, 7d (default: bans.ban_time)')
    .addOption(configOption())
    .action((ip: string, opts: { config?: string; for?: string }) =>
      withStores(opts, async ({ data }, loaded) => {
        const g = guard(data, loaded.config);
        if (g.isTrusted(checkAddress(ip))) throw new CliError(`${ip} is in bans.trusted_networks and is never banned; remove it from there first`);
        const ms = opts.for ? parseDuration(opts.for) : loaded.config.bans.ban_time;
        const r = await g.ban(ip, ms);
        console.log(`banned ${r.key} until ${new Date(r.until).toISOString()}`);
      }),
    );

  ban
    .command('del <ip>')
    .description('lift the ban of a client IP (and forget its failed logins)')
    .addOption(configOption())
    .action((ip: string, opts: { config?: string }) =>
      withStores(opts, async ({ data }, loaded) => {
        const lifted = await guard(data, loaded.config).unban(checkAddress(ip));
        console.log(lifted ? `ban of ${ip} lifted` : `${ip} was not banned (its failure count is reset)`);
      }),
    );
}
