import fs from 'node:fs';
import type { Command, Option } from 'commander';
import { CliError, isEmail, withStores } from './io.ts';
import { messageFiles } from './message-files.ts';
import { Bayes } from '../policy/content/bayes.ts';
import { learnMessage, messageId } from '../policy/content/learn.ts';
import { CURSOR } from '../policy/content/trainer.ts';

/**
 * `postern spam …`: the builtin filter's Bayesian classifier (src/policy/content/bayes.ts) —
 * sa-learn's job. Users teach it by moving mail into and out of Junk; this command teaches it
 * from existing mail (a Maildir, a directory of .eml files, an mbox) and shows what it knows.
 */
export function registerSpam(program: Command, configOption: () => Option): void {
  const spam = program.command('spam').description('the builtin spam filter: train its Bayesian classifier, show what it learned (docs/antispam.md)');
  spam
    .command('train')
    .description('learn messages as spam or ham (like sa-learn): Maildirs, directories of .eml files, mbox files')
    .argument('<path...>', 'a Maildir (its cur/ and new/), a directory of message files, a message file, or an mbox file')
    .option('--spam', 'the messages are spam')
    .option('--ham', 'the messages are not spam')
    .option('--forget', 'unlearn the messages (whatever they were learned as)')
    .option('--user <email>', "also learn them into this user's own statistics (besides the global ones)")
    .addOption(configOption())
    .addHelpText(
      'after',
      `
Each message is learned once per kind: training the same message again changes nothing, and
a message learned as spam that is now trained as ham is unlearned as spam first. Messages are
learned from their first policy.spam.max_size bytes. Progress goes to stderr, the summary to
stdout. The classifier scores once policy.spam.bayes_min_learned messages of each kind are
learned (postern spam stats).

Examples:
  postern spam train --spam ~/Maildir/.Junk
  postern spam train --ham --user alice@example.org /srv/mail/alice/Maildir
  postern spam train --spam spam-archive.mbox messages/*.eml`,
    )
    .action((paths: string[], opts: { config?: string; spam?: boolean; ham?: boolean; forget?: boolean; user?: string }) =>
      withStores(opts, async ({ data }, loaded) => {
        if ([opts.spam, opts.ham, opts.forget].filter(Boolean).length !== 1) throw new CliError('spam train: give exactly one of --spam, --ham, --forget');
        if (opts.user !== undefined && !isEmail(opts.user)) throw new CliError(`--user: "${opts.user}" is not an email address`);
        for (const p of paths) if (!fs.existsSync(p)) throw new CliError(`no such file or directory: ${p}`);
        const verdict = opts.spam ? 'spam' : opts.ham ? 'ham' : null;
        const maxSize = loaded.config.policy.spam.max_size;
        const bayes = new Bayes(data, 0);
        const n = { seen: 0, learned: 0, relearned: 0, unchanged: 0, failed: 0 };
        const tty = process.stderr.isTTY;
        const progress = (final = false) => {
          const line = `  ${n.seen} messages: ${n.learned} learned, ${n.relearned} relearned, ${n.unchanged} already known, ${n.failed} unreadable`;
          if (tty) process.stderr.write(`\r${line}${final ? '\n' : ''}`);
          else if (final || n.seen % 500 === 0) process.stderr.write(`${line}\n`);
        };
        for (const p of paths) {
          process.stderr.write(`${p}\n`);
          for await (const m of messageFiles(p)) {
            n.seen++;
            try {
              const data = m.data.length > maxSize ? m.data.subarray(0, maxSize) : m.data;
              const before = await learnMessage(bayes, opts.user ?? null, messageId(m.data), data, verdict);
              if (before === verdict) n.unchanged++;
              else if (before && verdict) n.relearned++;
              else n.learned++;
            } catch (err) {
              n.failed++;
              process.stderr.write(`${tty ? '\n' : ''}  ${m.source}: ${(err as Error).message}\n`);
            }
            if (tty ? n.seen % 25 === 0 : n.seen % 500 === 0) progress();
          }
        }
        progress(true);
        const what = verdict ?? 'forgotten';
        console.log(
          `${verdict ? `learned ${n.learned} messages as ${what}` : `forgot ${n.learned + n.relearned} messages`}` +
            (verdict ? `, relearned ${n.relearned} (were ${verdict === 'spam' ? 'ham' : 'spam'})` : '') +
            `, ${n.unchanged} ${verdict ? `already learned as ${what}` : 'were not learned'}, ${n.failed} unreadable` +
            (opts.user ? ` (global and ${opts.user.toLowerCase()})` : ' (global)'),
        );
        const totals = (await data.bayesTotals(['']).then((t) => t.get(''))) ?? { spam: 0, ham: 0 };
        console.log(`the global statistics now hold ${totals.spam} spam and ${totals.ham} ham messages`);
        if (n.failed) process.exitCode = 1;
      }),
    );
  spam
    .command('stats')
    .description('what the classifier learned: messages of each kind and tokens, globally and per user')
    .option('--json', 'one JSON object per scope')
    .addOption(configOption())
    .action((opts: { config?: string; json?: boolean }) =>
      withStores(opts, async ({ data }, loaded) => {
        const totals = await data.bayesTotals(null);
        const tokens = await data.bayesTokenCounts();
        const rows = [...totals].map(([scope, t]) => ({ scope, spam: t.spam, ham: t.ham, tokens: tokens.get(scope) ?? 0 }));
        if (!rows.some((r) => r.scope === '')) rows.unshift({ scope: '', spam: 0, ham: 0, tokens: 0 });
        if (opts.json) return void rows.forEach((r) => console.log(JSON.stringify(r)));
        console.log(`${'scope'.padEnd(32)} ${'spam'.padStart(8)} ${'ham'.padStart(8)} ${'tokens'.padStart(9)}`);
        for (const r of rows) console.log(`${(r.scope || '(global)').padEnd(32)} ${String(r.spam).padStart(8)} ${String(r.ham).padStart(8)} ${String(r.tokens).padStart(9)}`);
        const s = loaded.config.policy.spam;
        const g = rows.find((r) => r.scope === '')!;
        const ready = g.spam >= s.bayes_min_learned && g.ham >= s.bayes_min_learned;
        const state = !s.enabled || s.filter !== 'builtin' ? `not used (policy.spam ${s.enabled ? `filter = "${s.filter}"` : 'enabled = false'})` : !s.bayes ? 'off (policy.spam.bayes = false)' : ready ? 'scoring' : `learning: scores once ${s.bayes_min_learned} spam and ${s.bayes_min_learned} ham messages are learned (policy.spam.bayes_min_learned)`;
        console.log(`classifier: ${state}`);
        const waiting = (await data.trainingSignals(await data.bayesCursor(CURSOR), 1000)).length;
        if (waiting) console.log(`${waiting === 1000 ? '1000+' : waiting} moves into or out of Junk wait to be learned (the server learns them every few seconds)`);
      }),
    );
}
