import type { Command, Option } from 'commander';
import { CliError, withStores } from './io.ts';
import type { QueueRow } from '../store/data-store.ts';

/** One queued message: its recipients grouped under the queue id. */
interface QueuedMessage {
  queueId: string;
  sender: string;
  size: number | null;
  createdAt: number;
  recipients: Array<{ address: string; status: string; attempts: number; nextAttempt: number; lastError: string | null }>;
}

function group(rows: QueueRow[]): QueuedMessage[] {
  const byId = new Map<string, QueuedMessage>();
  for (const r of rows) {
    let m = byId.get(r.queueId);
    if (!m) byId.set(r.queueId, (m = { queueId: r.queueId, sender: r.sender, size: r.size, createdAt: r.createdAt, recipients: [] }));
    m.recipients.push({ address: r.recipient, status: state(r), attempts: r.attempts, nextAttempt: r.nextAttempt, lastError: r.lastError });
  }
  return [...byId.values()];
}

/** The states an administrator reads: active (never tried yet), deferred (tried, will retry), sending, hold, bounce (returned by `queue bounce`, DSN pending). */
function state(r: QueueRow): string {
  return r.status === 'active' && r.attempts > 0 ? 'deferred' : r.status;
}

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

/**
 * `postern queue`: the outbound queue, like Postfix's mailq / postqueue / postsuper.
 * Mail waits here for remote recipients (relayed by authenticated users, sent by
 * local programs, forwarded by aliases).
 */
export function registerQueue(program: Command, configOption: () => Option): void {
  const queue = program.command('queue').description('inspect and steer the outbound queue (mail for other domains)');

  queue
    .command('list')
    .description('queued messages: id, age, size, sender, and each recipient with its state and last error (like mailq)')
    .option('--json', 'one JSON array of messages')
    .addOption(configOption())
    .action((opts: { config?: string; json?: boolean }) =>
      withStores(opts, async ({ data }) => {
        const messages = group(await data.listQueue());
        if (opts.json) return void console.log(JSON.stringify(messages));
        if (!messages.length) return void console.log('queue is empty');
        const now = Date.now();
        for (const m of messages) {
          console.log(`${m.queueId}  ${age(now - m.createdAt).padStart(4)}  ${String(m.size ?? '?').padStart(8)}  <${m.sender}>`);
          for (const r of m.recipients) {
            const when = r.status === 'deferred' || r.status === 'active' ? `, next try in ${age(r.nextAttempt - now)}` : '';
            console.log(`    ${r.address}  ${r.status}${r.attempts ? ` after ${r.attempts} attempt(s)` : ''}${when}${r.lastError ? `\n      (${r.lastError})` : ''}`);
          }
        }
        const n = messages.reduce((a, m) => a + m.recipients.length, 0);
        console.log(`-- ${messages.length} message(s), ${n} recipient(s)`);
      }),
    );

  queue
    .command('show <id>')
    .description('one queued message: its recipients and states, then the message itself')
    .addOption(configOption())
    .action((id: string, opts: { config?: string }) =>
      withStores(opts, async ({ data, blobs }) => {
        const rows = await data.listQueue(id);
        if (!rows.length) throw new CliError(`no queued message ${id} (see \`postern queue list\`)`);
        const [m] = group(rows);
        console.log(`queue id: ${m!.queueId}\nsender:   <${m!.sender}>\nqueued:   ${new Date(m!.createdAt).toISOString()}`);
        for (const r of m!.recipients) console.log(`to:       ${r.address} (${r.status}${r.lastError ? `: ${r.lastError}` : ''})`);
        console.log('');
        process.stdout.write(await blobs.readAll(rows[0]!.blobHash));
      }),
    );

  const steer = (name: 'hold' | 'release' | 'flush', description: string, verb: string) =>
    queue
      .command(`${name} ${name === 'flush' ? '[id]' : '<id>'}`)
      .description(description)
      .addOption(configOption())
      .action((id: string | undefined, opts: { config?: string }) =>
        withStores(opts, async ({ data }) => {
          const n = await data.steerQueue(id ?? null, name);
          if (id && !n && !(await data.listQueue(id)).length) throw new CliError(`no queued message ${id} (see \`postern queue list\`)`);
          console.log(`${n} recipient(s) ${verb}`);
        }),
      );
  steer('hold', 'keep a message in the queue without trying to deliver it (postsuper -h)', 'put on hold');
  steer('release', 'let a held message be delivered again (postsuper -H)', 'released');
  steer('flush', 'try waiting messages (all, or one) now instead of at their next retry time (postqueue -f / -i)', 'due now');

  queue
    .command('delete [id]')
    .description('remove a message (or with --all-deferred every deferred recipient) from the queue without delivering or bouncing it (postsuper -d)')
    .option('--all-deferred', 'every recipient that was tried and is waiting to retry (postsuper -d ALL deferred)')
    .addOption(configOption())
    .action((id: string | undefined, opts: { config?: string; allDeferred?: boolean }) =>
      withStores(opts, async ({ data }) => {
        if (opts.allDeferred) {
          if (id) throw new CliError('give a queue id or --all-deferred, not both');
          console.log(`${await data.deleteDeferred()} deferred recipient(s) deleted`);
          return;
        }
        if (!id) throw new CliError('which message? give a queue id (see `postern queue list`) or --all-deferred');
        const n = await data.deleteQueued(id);
        if (!n) throw new CliError(`no queued message ${id} that is not being sent right now (see \`postern queue list\`)`);
        console.log(`${n} recipient(s) of ${id} deleted`);
      }),
    );

  queue
    .command('bounce <id>')
    .description('give up on a message: its waiting recipients fail now and the sender gets a bounce (DSN) saying so')
    .addOption(configOption())
    .action((id: string, opts: { config?: string }) =>
      withStores(opts, async ({ data }) => {
        const n = await data.markQueuedForBounce(id);
        if (!n) throw new CliError(`no waiting or held recipient of ${id} (see \`postern queue list\`)`);
        console.log(`${n} recipient(s) of ${id} will be returned to the sender by the running server`);
      }),
    );
}
