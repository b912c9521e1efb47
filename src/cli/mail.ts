import type { Command, Option } from 'commander';
import { CliError, withStores } from './io.ts';

export function registerMail(program: Command, configOption: () => Option): void {
  const mail = program.command('mail').description("look into users' mailboxes (the admin's view, like doveadm fetch)");
  mail
    .command('list <email>')
    .description('one line per message: uid, date, from, subject, size, flags')
    .option('-m, --mailbox <name>', 'mailbox', 'INBOX')
    .option('--json', 'one JSON object per line')
    .addOption(configOption())
    .action((email: string, opts: { config?: string; mailbox: string; json?: boolean }) =>
      withStores(opts, async ({ data }) => {
        const account = await data.getAccount(email);
        if (!account) throw new CliError(`no user ${email.toLowerCase()} (see \`postern user list\`)`);
        for (const m of await data.listMessages(account.id, opts.mailbox)) {
          const date = new Date(m.internalDate).toISOString();
          if (opts.json) {
            console.log(JSON.stringify({ uid: m.uid, date, from: m.from, subject: m.subject, size: m.size, flags: m.flags, messageId: m.messageId }));
          } else {
            console.log(`${m.uid}\t${date}\t${m.from}\t${m.subject}\t${m.size}\t${m.flags.join(' ')}`);
          }
        }
      }),
    );
  mail
    .command('count')
    .description('print the number of messages stored in all mailboxes (for scripts and benchmarks)')
    .addOption(configOption())
    .action((opts: { config?: string }) =>
      withStores(opts, async ({ data }) => {
        console.log(String(await data.countMessages()));
      }),
    );
}
