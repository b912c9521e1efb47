import fs from 'node:fs';
import { Readable } from 'node:stream';
import type { Command, Option } from 'commander';
import { pino } from 'pino';
import { CliError, isEmail, withStores } from './io.ts';
import { systemResolver } from '../net/dns.ts';
import { createDirectory } from '../directory/create.ts';
import { InboundPolicy } from '../policy/inbound.ts';
import { greylistPeek } from '../policy/greylist.ts';
import { runDataStage } from '../policy/content/data-stage.ts';
import { contentFilter } from '../policy/content/filters.ts';
import { AccessRuleError, normalizeRuleValue, type AccessAction, type AccessKind } from '../policy/access.ts';

/**
 * `postern access …`: the access lists (src/policy/access.ts) — Postfix's access maps and the
 * per-user sender blocks of the classic setup — and `postern policy test`, a dry run of the
 * inbound checks that prints every check's verdict.
 */
export function registerPolicy(program: Command, configOption: () => Option): void {
  const access = program.command('access').description('reject or always accept client addresses, senders and recipients, for everyone or for one user');
  const kinds = (opts: Record<string, string | undefined>, verb: 'add' | 'del'): Array<{ kind: AccessKind; action: AccessAction; value: string }> => {
    const out: Array<{ kind: AccessKind; action: AccessAction; value: string }> = [];
    for (const action of ['reject', 'accept'] as const) {
      for (const kind of ['client', 'sender', 'recipient'] as const) {
        const v = opts[`${action}${kind[0]!.toUpperCase()}${kind.slice(1)}`];
        if (v !== undefined) out.push({ kind, action, value: v });
      }
    }
    if (out.length !== 1) throw new CliError(`access ${verb}: give exactly one of --reject-client, --reject-sender, --reject-recipient, --accept-client, --accept-sender, --accept-recipient`);
    return out;
  };
  const scopeOf = (user: string | undefined): string => {
    if (user === undefined) return '';
    if (!isEmail(user)) throw new CliError(`--user: "${user}" is not an email address`);
    return user.toLowerCase();
  };
  const withRuleOptions = (c: Command) =>
    c
      .option('--user <email>', "the rule applies to mail for this user only (default: everyone's mail)")
      .option('--reject-client <ip|cidr>', 'refuse mail from this client address or network (550 5.7.1)')
      .option('--reject-sender <address|@domain>', 'refuse mail from this sender or domain ("<>": bounces)')
      .option('--reject-recipient <address|@domain>', 'refuse mail to this address or domain')
      .option('--accept-client <ip|cidr>', 'always accept from this client: skip the DNSBL and later checks')
      .option('--accept-sender <address|@domain>', 'always accept from this sender or domain')
      .option('--accept-recipient <address|@domain>', 'always accept mail to this address or domain')
      .addOption(configOption());
  type RuleOpts = Record<string, string | undefined> & { config?: string; user?: string };

  withRuleOptions(access.command('add').description('add a rule, e.g. postern access add --user alice@example.org --reject-sender spammer@example.net')).action((opts: RuleOpts) =>
    withStores(opts, async ({ data }) => {
      const [r] = kinds(opts, 'add');
      const scope = scopeOf(opts.user);
      const value = normalize(r!.kind, r!.value);
      const added = await data.addAccessRule({ scope, kind: r!.kind, value, action: r!.action });
      console.log(`${added ? 'added' : 'updated'}: ${r!.action} ${r!.kind} ${value} for ${scope || 'everyone'}`);
    }),
  );
  withRuleOptions(access.command('del').description('remove a rule (the same options as add)')).action((opts: RuleOpts) =>
    withStores(opts, async ({ data }) => {
      const [r] = kinds(opts, 'del');
      const scope = scopeOf(opts.user);
      const value = normalize(r!.kind, r!.value);
      if (!(await data.deleteAccessRule(scope, r!.kind, value))) throw new CliError(`no rule for ${r!.kind} ${value} (${scope || 'everyone'}); see postern access list`);
      console.log(`removed: ${r!.kind} ${value} for ${scope || 'everyone'}`);
    }),
  );
  access
    .command('list')
    .description('list the rules (everyone\'s and every user\'s, or one user\'s with --user)')
    .option('--user <email>', "only this user's rules")
    .option('--json', 'one JSON object per line')
    .addOption(configOption())
    .action((opts: { config?: string; user?: string; json?: boolean }) =>
      withStores(opts, async ({ data }) => {
        const rules = await data.accessRules(opts.user === undefined ? null : [scopeOf(opts.user)]);
        if (opts.json) return void rules.forEach((r) => console.log(JSON.stringify(r)));
        if (!rules.length) return void console.log('no access rules');
        for (const r of rules) console.log(`${(r.scope || 'everyone').padEnd(32)} ${r.action.padEnd(6)} ${r.kind.padEnd(9)} ${r.value}`);
      }),
    );

  const policy = program.command('policy').description('the inbound checks of the MX port (docs/antispam.md)');
  policy
    .command('test')
    .description('dry run: what the inbound checks say about a client, sender and recipient (nothing is stored, no mail is sent)')
    .requiredOption('--ip <address>', "the client's IP address")
    .option('--helo <name>', 'the name the client gives in EHLO/HELO')
    .option('--from <address>', 'MAIL FROM (empty for a bounce)', '')
    .requiredOption('--to <address>', 'RCPT TO')
    .option('--message <file>', 'a message (RFC 5322 file): also run the DATA stage (SPF/DKIM/DMARC, content score)')
    .addOption(configOption())
    .action((opts: { config?: string; ip: string; helo?: string; from: string; to: string; message?: string }) =>
      withStores(opts, async ({ data }, loaded) => {
        const config = loaded.config;
        if (opts.message && !fs.existsSync(opts.message)) throw new CliError(`--message: no such file ${opts.message}`);
        const log = pino({ level: 'silent' });
        const directory = createDirectory(config, data, log);
        try {
          // A dry run must not record greylisting triplets: the greylist is reported, not consulted.
          const inbound = new InboundPolicy({ config: { ...config, policy: { ...config.policy, greylist: { ...config.policy.greylist, enabled: false } } }, data, dns: systemResolver(config.dns.servers, config.dns.timeout), now: () => Date.now() });
          const to = opts.to.toLowerCase();
          const from = opts.from.toLowerCase().replace(/^<|>$/g, '');
          console.log(`client [${opts.ip}]${opts.helo ? ` helo ${opts.helo}` : ''} from <${from}> to <${to}>`);
          if (inbound.trusts(opts.ip)) return void console.log(`  ${opts.ip} is in policy.trusted_networks: no inbound checks; decision: accept`);
          const resolution = await directory.resolve(to);
          if (resolution.kind !== 'deliver') {
            console.log(`  recipient: ${resolution.kind === 'unknown' ? 'unknown user (550 5.1.1)' : 'not a local domain (554 5.7.1 relay access denied)'}`);
            return void console.log('decision: reject');
          }
          console.log(`  recipient: delivers to ${[...resolution.accounts.map((a) => a.email), ...resolution.remote].join(', ') || '(nobody)'}`);
          const { verdict, results } = await inbound.connection(opts.ip).rcpt({ ip: opts.ip, helo: opts.helo, from, to, users: resolution.accounts.map((a) => a.email) });
          for (const r of results) console.log(`  ${r.check.padEnd(8)} ${r.verdict.kind}${r.verdict.reason ? `: ${r.verdict.reason}` : ''} (${r.ms} ms)`);
          let decision = verdict.kind === 'continue' || verdict.kind === 'accept' ? 'accept' : verdict.kind;
          if (config.policy.greylist.enabled && verdict.kind === 'continue') {
            // Looked at, not recorded: a dry run must not start the triplet's delay.
            const g = await greylistPeek(data, config.policy.greylist, opts.ip, from, to, Date.now());
            console.log(`  greylist ${g === 'pass' ? 'continue: passes (known triplet, auto-whitelisted client or whitelisted domain)' : 'tempfail: a new triplet, its first try gets 451 4.7.1'}`);
            if (g === 'greylist') decision = 'tempfail';
          }
          let reply = verdict.kind === 'reject' || verdict.kind === 'tempfail' || verdict.kind === 'disconnect' ? ` (${verdict.reply.code} ${verdict.reply.enhanced} ${verdict.reply.text})` : '';
          if (opts.message && decision === 'accept') {
            // The DATA stage, as the MX port runs it (src/policy/content/data-stage.ts).
            const raw = crlf(fs.readFileSync(opts.message));
            const dns = systemResolver(config.dns.servers, config.dns.timeout);
            const outcome = await runDataStage(
              { config, dns, filter: contentFilter(config.policy.spam, data), log },
              { message: () => Readable.from([raw]), buffer: raw.length <= config.policy.spam.max_size ? raw : null, trace: Buffer.alloc(0), ip: opts.ip, helo: opts.helo ?? '', from, recipients: resolution.accounts.map((a) => a.email), dnsblHits: [] },
            );
            for (const line of outcome.reasons) console.log(`  content  ${line}`);
            if (outcome.headers) console.log(`  headers added:\n${outcome.headers.replace(/\r\n$/, '').split('\r\n').map((l) => `    ${l}`).join('\n')}`);
            if (outcome.tagSubject) console.log(`  subject tagged with "${config.policy.spam.subject_tag}"`);
            if (outcome.reject) reply = ` (${outcome.reject.code} ${outcome.reject.enhanced} ${outcome.reject.text})`;
            decision = outcome.reject ? 'reject' : outcome.junk ? 'accept, to Junk' : 'accept';
          }
          console.log(`decision: ${decision}${reply}`);
        } finally {
          await directory.close();
        }
      }),
    );
}

function normalize(kind: AccessKind, value: string): string {
  try {
    return normalizeRuleValue(kind, value);
  } catch (err) {
    if (err instanceof AccessRuleError) throw new CliError(err.message);
    throw err;
  }
}

/** A message file as SMTP would carry it: CRLF line ends (files on disk usually have LF). */
function crlf(b: Buffer): Buffer {
  return Buffer.from(b.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
}
