import fs from 'node:fs';
import path from 'node:path';
import type { Command, Option } from 'commander';
import MailComposer from 'nodemailer/lib/mail-composer';
import { config, readStdin } from './io.ts';
import { EX, SubmitError, submitLocal } from './local-submit.ts';
import { invokingUser, prepareMessage } from './message-prep.ts';
import type { Config } from '../config/schema.ts';

function qualify(address: string, hostname: string): string {
  return address.includes('@') ? address : `${address}@${hostname}`;
}

/**
 * sendmail(1) compatible entry point (bin postern-sendmail). Mail clients call it
 * with their own options and no --config, so unknown legacy flags are accepted and
 * ignored the way Postfix's sendmail does.
 */
export async function sendmailMain(argv: string[]): Promise<number> {
  let extract = false;
  let ignoreDots = false;
  let from: string | null = null;
  let fullName: string | null = null;
  let configFile: string | undefined;
  const recipients: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (flag: string) => (a.length > flag.length ? a.slice(flag.length) : argv[++i]);
    if (a === '--') {
      recipients.push(...argv.slice(i + 1));
      break;
    } else if (a === '--help' || a === '-h') {
      process.stdout.write(SENDMAIL_HELP);
      return 0;
    } else if (a === '--config' || a === '-C') configFile = argv[++i];
    else if (a === '-t') extract = true;
    else if (a === '-i' || a === '-oi') ignoreDots = true;
    else if (a.startsWith('-f') || a.startsWith('-r')) from = value(a.slice(0, 2)) ?? null;
    else if (a.startsWith('-F')) fullName = value('-F') ?? null;
    else if (a === '-bm' || a === '-v' || a.startsWith('-o') || a.startsWith('-B') || a.startsWith('-N') || a.startsWith('-R') || a.startsWith('-V') || a.startsWith('-X')) {
      // Accepted for compatibility, no effect (Postfix ignores these too).
      if ((a === '-B' || a === '-N' || a === '-R' || a === '-V' || a === '-X') && i + 1 < argv.length) i++;
    } else if (a.startsWith('-b')) {
      process.stderr.write(`postern-sendmail: mode ${a} is not supported (only -bm, the default)\n`);
      return EX.USAGE;
    } else if (a.startsWith('-') && a.length > 1) {
      process.stderr.write(`postern-sendmail: unknown option ${a} (see postern-sendmail --help)\n`);
      return EX.USAGE;
    } else recipients.push(a);
  }
  let cfg: Config;
  try {
    cfg = config({ config: configFile }).config;
  } catch (err) {
    process.stderr.write(`postern-sendmail: ${(err as Error).message}\n`);
    return EX.CONFIG;
  }
  const sender = from === '' || from === '<>' ? '' : qualify(from ?? invokingUser(), cfg.hostname);
  const input = await readStdin();
  if (input.length > cfg.smtp.max_message_size) {
    process.stderr.write(`postern-sendmail: message too large (${input.length} bytes; limit smtp.max_message_size = ${cfg.smtp.max_message_size})\n`);
    return EX.DATAERR;
  }
  const prepared = prepareMessage(input, { extractRecipients: extract, ignoreDots, from: sender || `MAILER-DAEMON@${cfg.hostname}`, fullName, hostname: cfg.hostname });
  const to = [...new Set([...recipients, ...prepared.recipients].map((r) => qualify(r, cfg.hostname)))];
  if (to.length === 0) {
    process.stderr.write('postern-sendmail: no recipients (give them as arguments, or use -t to read To/Cc/Bcc)\n');
    return EX.USAGE;
  }
  return submit(cfg, sender, to, prepared.message, 'postern-sendmail');
}

async function submit(cfg: Config, from: string, to: string[], message: Buffer, prog: string): Promise<number> {
  try {
    await submitLocal(cfg, { from, to }, message);
    return 0;
  } catch (err) {
    process.stderr.write(`${prog}: ${(err as Error).message}\n`);
    return err instanceof SubmitError ? err.exitCode : EX.SOFTWARE;
  }
}

const SENDMAIL_HELP = `Usage: postern-sendmail [options] [--] [recipient ...] < message

Submits a message read from standard input to the running Postern server over
its local socket (listen.local). Compatible with sendmail(1) as mail clients use it.

  -t            also take recipients from the To:, Cc: and Bcc: headers (Bcc: is removed)
  -i, -oi       a line with a single "." does not end the message
  -f ADDR       envelope sender (default: the invoking user @ hostname); -r is the same
  -F NAME       full name for the From: header added when the message has none
  -C, --config FILE   Postern config (default: $POSTERN_CONFIG, ./postern.toml, /etc/postern/postern.toml)
  -o*, -B, -N, -bm, -v  accepted and ignored

Exit status follows sysexits(3): 0 sent, 64 usage, 67 unknown user, 69 refused, 75 try later.
`;

export function registerSend(program: Command, configOption: () => Option): void {
  program
    .command('send <recipients...>')
    .description('send a message (body from standard input), like mailx')
    .requiredOption('-s, --subject <subject>', 'subject')
    .option('-a, --attach <file>', 'attach a file (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('-f, --from <address>', 'sender address (default: the invoking user @ hostname)')
    .addOption(configOption())
    .action(async (recipients: string[], opts: { subject: string; attach: string[]; from?: string; config?: string }) => {
      const cfg = config(opts).config;
      const from = qualify(opts.from ?? invokingUser(), cfg.hostname);
      const to = recipients.map((r) => qualify(r, cfg.hostname));
      for (const f of opts.attach) {
        if (!fs.existsSync(f)) {
          process.stderr.write(`postern send: cannot read attachment ${f}\n`);
          process.exit(EX.USAGE);
        }
      }
      const body = (await readStdin()).toString('utf8');
      const composer = new MailComposer({
        from,
        to,
        subject: opts.subject,
        text: body,
        attachments: opts.attach.map((f) => ({ filename: path.basename(f), path: f })),
      });
      const message = await new Promise<Buffer>((resolve, reject) => composer.compile().build((err, msg) => (err ? reject(err) : resolve(msg))));
      const code = await submit(cfg, from, to, message, 'postern send');
      if (code === 0) console.log(`sent to ${to.join(', ')}`);
      process.exit(code);
    });

  program
    .command('sendmail [args...]')
    .description('sendmail(1) compatible submission (the same as the postern-sendmail command)')
    .allowUnknownOption(true)
    .helpOption(false)
    .action(async (args: string[]) => {
      process.exit(await sendmailMain(args));
    });

  program
    .command('install-sendmail')
    .description('link postern-sendmail as /usr/sbin/sendmail (and /usr/lib/sendmail) so mail(1) and cron use Postern')
    .option('--target <path>', 'where to link it', '/usr/sbin/sendmail')
    .option('--force', 'replace an existing sendmail (it is kept as PATH.postern-orig)')
    .action((opts: { target: string; force?: boolean }) => {
      const self = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../bin/postern-sendmail.js');
      const targets = [opts.target, ...(opts.target === '/usr/sbin/sendmail' ? ['/usr/lib/sendmail'] : [])];
      for (const t of targets) {
        let exists = false;
        try {
          fs.lstatSync(t);
          exists = true;
        } catch {
          /* free */
        }
        if (exists) {
          if (fs.existsSync(t) && fs.realpathSync(t) === fs.realpathSync(self)) {
            console.log(`${t} already points to Postern`);
            continue;
          }
          if (!opts.force) {
            process.stderr.write(`postern: ${t} exists (another MTA's sendmail?); rerun with --force to replace it (kept as ${t}.postern-orig)\n`);
            process.exit(1);
          }
          fs.renameSync(t, `${t}.postern-orig`);
        }
        fs.mkdirSync(path.dirname(t), { recursive: true });
        fs.symlinkSync(self, t);
        console.log(`${t} -> ${self}`);
      }
    });
}
