import type { Logger } from 'pino';
import type { Config } from '../../config/schema.ts';
import type { BlobStore } from '../../store/blob-store.ts';
import type { DataStore } from '../../store/data-store.ts';
import { Bayes } from './bayes.ts';
import { learnMessage } from './learn.ts';

/** Whether the server learns from Junk moves: the builtin filter with Bayes on (read at each round: reloadable). */
export function bayesLearning(config: Pick<Config, 'policy'>): boolean {
  const s = config.policy.spam;
  return s.enabled && s.filter === 'builtin' && s.bayes;
}

/** The cursor's name in bayes_cursor. */
export const CURSOR = 'training_signals';

export interface TrainerDeps {
  data: DataStore;
  blobs: BlobStore;
  log: Logger;
  /** How often to look for new signals (default 5 s). */
  intervalMs?: number;
  /** Only the first this many bytes of a message are learned (policy.spam.max_size). */
  maxSize?: number;
  /** Whether to learn now (the config may change on reload); signals wait meanwhile. */
  active?: () => boolean;
}

/**
 * Learning from users: consumes the training signals IMAP records (a message moved into Junk
 * is spam, out of it ham; data-store.ts recordTraining) and teaches them to the classifier in
 * the user's scope and the global one. Moving a message into Junk and back out unlearns the
 * spam lesson and learns it as ham (bayes_seen remembers what each message was learned as).
 *
 * Several nodes may run a trainer on one PostgreSQL store: each signal is claimed by moving
 * the shared cursor past it (compare-and-set) before it is learned, so it is learned once. A
 * node that dies between the claim and the lesson loses that one lesson: harmless.
 */
export class BayesTrainer {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  private stopped = false;
  private readonly bayes: Bayes;

  constructor(private deps: TrainerDeps) {
    this.bayes = new Bayes(deps.data, 0);
  }

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  /** Stops the timer and waits for a round in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      if (this.deps.active && !this.deps.active()) return void this.schedule();
      this.running = this.runOnce()
        .catch((err: unknown) => this.deps.log.warn({ err }, 'spam filter training: round failed; retrying'))
        .finally(() => {
          this.running = null;
          this.schedule();
        });
    }, this.deps.intervalMs ?? 5000);
    this.timer.unref();
  }

  /** Learns every signal not learned yet; returns how many were learned. */
  async runOnce(): Promise<number> {
    const { data, log } = this.deps;
    let learned = 0;
    for (;;) {
      const cursor = await data.bayesCursor(CURSOR);
      const signals = await data.trainingSignals(cursor, 100);
      if (!signals.length) return learned;
      for (const s of signals) {
        if (this.stopped) return learned;
        const from = await data.bayesCursor(CURSOR);
        if (from >= s.id) continue;
        // Another node claimed it first: that node learns it.
        if (!(await data.bayesAdvanceCursor(CURSOR, from, s.id))) continue;
        const user = await data.accountEmail(s.accountId);
        if (!user) continue; // the account is gone
        let message: Buffer;
        try {
          message = await this.read(s.blobHash);
        } catch (err) {
          log.warn({ err, blob: s.blobHash, user }, 'spam filter training: message unreadable; skipped');
          continue;
        }
        const before = await learnMessage(this.bayes, user, s.blobHash, message, s.verdict);
        learned++;
        log.info({ user, verdict: s.verdict, source: s.source, blob: s.blobHash, before }, before && before !== s.verdict ? `spam filter: relearned as ${s.verdict}` : `spam filter: learned as ${s.verdict}`);
      }
    }
  }

  private async read(hash: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.deps.blobs.read(hash, 0, this.deps.maxSize ?? 1024 * 1024)) parts.push(c as Buffer);
    return Buffer.concat(parts);
  }
}
