import type { Command, Option } from 'commander';
import { config } from './io.ts';

export function registerServe(program: Command, configOption: () => Option): void {
  program
    .command('serve')
    .description('start the mail server (every service configured under [listen])')
    .addOption(configOption())
    .action(async (opts: { config?: string }) => {
      const loaded = config(opts);
      // Loaded here, not at the top: the other commands (every `postern user …`) need none of the servers.
      const { startServer } = await import('../server.ts');
      const server = await startServer(loaded.config);
      const log = server.ctx.log;
      const source = loaded.file ?? 'embedded defaults (no config file found)';
      const lines = [
        `postern ready: hostname ${loaded.config.hostname}, config ${source}, data ${loaded.config.data_dir}`,
        ...server.endpoints.map((e) => `  ${e.service.padEnd(11)} ${e.address}`),
        `  domains: ${(await server.ctx.data.listDomains()).join(', ') || '(none: add one with `postern domain add example.org`)'}`,
      ];
      if ((await server.ctx.data.listAccounts()).length === 0) {
        const d = (await server.ctx.data.listDomains())[0] ?? 'example.org';
        const cfg = loaded.file ? ` --config ${loaded.file}` : '';
        lines.push(`  no users yet: add one with \`echo 'secret' | npx postern user add alice@${d} --password-stdin${cfg}\``);
      }
      process.stdout.write(lines.join('\n') + '\n');
      log.info({ endpoints: server.endpoints }, 'started');
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'stopping');
        server.stop().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      // `systemctl reload` / kill -HUP: re-read the config file; [policy] and [dns] apply to new
      // connections at once, other changes are named as needing a restart.
      process.on('SIGHUP', () => {
        let next;
        try {
          next = config(opts).config;
        } catch (err) {
          log.error({ err: (err as Error).message }, `configuration not reloaded: ${(err as Error).message}`);
          return;
        }
        const r = server.reload(next);
        log.info(
          { applied: r.applied, restart: r.restart },
          `configuration reloaded${r.applied.length ? `: ${r.applied.join(', ')} applied` : ': nothing to apply'}${r.restart.length ? `; restart to apply ${r.restart.join(', ')}` : ''}`,
        );
      });
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
