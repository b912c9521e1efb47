import { Command, Option } from 'commander';
import { fail } from './io.ts';
import { registerServe } from './serve.ts';
import { registerAdmin } from './admin.ts';
import { registerMail } from './mail.ts';
import { registerSend } from './send.ts';
import { registerMigrate } from './migrate.ts';
import { registerBan } from './ban.ts';
import { registerQueue } from './queue.ts';
import { registerDkim } from './dkim.ts';
import { registerDomainAdmin } from './domain-admin.ts';
import { registerDirectory } from './directory.ts';
import { registerPolicy } from './policy.ts';
import { registerSpam } from './spam.ts';

/** `postern`: one command for the server and its administration. */
export function buildProgram(): Command {
  const program = new Command('postern')
    .description('Postern mail server: SMTP, submission, LMTP and local submission, with its administration commands.')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)');
  const configOption = () => new Option('-c, --config <file>', 'config file (default: $POSTERN_CONFIG, ./postern.toml, /etc/postern/postern.toml, else embedded defaults)');
  registerServe(program, configOption);
  registerAdmin(program, configOption);
  registerDomainAdmin(program, configOption);
  registerMail(program, configOption);
  registerSend(program, configOption);
  registerBan(program, configOption);
  registerQueue(program, configOption);
  registerDkim(program, configOption);
  registerDirectory(program, configOption);
  registerPolicy(program, configOption);
  registerSpam(program, configOption);
  registerMigrate(program);
  return program;
}

const isMain = process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/').split('/').pop() ?? '');
if (isMain) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((err: unknown) => fail(err));
}
