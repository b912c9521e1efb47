import type { DataStore } from '../../store/data-store.ts';
import type { ScoreHit } from './types.ts';
import { hashToken } from './tokenize.ts';

/**
 * The Bayesian classifier of the builtin filter: Paul Graham's idea ("A Plan for Spam", 2002)
 * with Gary Robinson's improvements as SpamBayes and SpamAssassin use them — a smoothed
 * probability per token, the most telling tokens only, and Fisher's chi-squared combining,
 * which answers near 0.5 when the evidence is mixed instead of jumping to 0 or 1.
 *
 * Statistics live per scope: '' is global, an account's address is that user's. Every lesson
 * goes to both the user's scope and the global one (the trainer, `postern spam train --user`).
 * Scoring a message for exactly one local recipient adds that user's counts to the global ones —
 * so the user's own judgements weigh twice — once the global scope has learned at least
 * bayes_min_learned spam and ham messages; a message for several users is scored on the global
 * statistics alone. Before that the classifier stays silent (no BAYES_* rule).
 */

/** Robinson's strength of the prior (s) and its value (x); SpamBayes' defaults. */
const S = 0.45;
const X = 0.5;
/** Tokens closer to 0.5 than this say nothing and are left out (SpamBayes' minimum_prob_strength). */
const MIN_STRENGTH = 0.1;
/** At most this many tokens, the strongest, are combined (SpamAssassin's N_SIGNIFICANT_TOKENS). */
const MAX_TOKENS = 150;

export interface BayesResult {
  /** 0 (ham) … 1 (spam). */
  probability: number;
  /** Tokens that counted. */
  used: number;
}

/** SpamAssassin's BAYES_* rules: probability bands and their default scores (50_scores.cf). */
export const BAYES_RULES: ReadonlyArray<{ rule: string; min: number; max: number; score: number }> = [
  { rule: 'BAYES_00', min: 0, max: 0.01, score: -1.9 },
  { rule: 'BAYES_05', min: 0.01, max: 0.05, score: -0.5 },
  { rule: 'BAYES_20', min: 0.05, max: 0.2, score: -0.001 },
  { rule: 'BAYES_40', min: 0.2, max: 0.4, score: -0.001 },
  { rule: 'BAYES_50', min: 0.4, max: 0.6, score: 0.8 },
  { rule: 'BAYES_60', min: 0.6, max: 0.8, score: 1.5 },
  { rule: 'BAYES_80', min: 0.8, max: 0.95, score: 2.0 },
  { rule: 'BAYES_95', min: 0.95, max: 0.99, score: 3.0 },
  { rule: 'BAYES_99', min: 0.99, max: 1.0001, score: 3.5 },
];
/** Added on top of BAYES_99 above 0.999. */
const BAYES_999 = { rule: 'BAYES_999', min: 0.999, score: 0.2 };

/** The rules a probability maps to (one band, plus BAYES_999 at the very top). */
export function bayesHits(r: BayesResult): ScoreHit[] {
  const p = r.probability;
  const band = BAYES_RULES.find((b) => p >= b.min && p < b.max) ?? BAYES_RULES[BAYES_RULES.length - 1]!;
  const describe = (lo: number, hi: number) => `Bayes spam probability is ${(lo * 100).toFixed(0)} to ${(Math.min(hi, 1) * 100).toFixed(0)}% (${p.toFixed(4)}, ${r.used} tokens)`;
  const hits: ScoreHit[] = [{ rule: band.rule, score: band.score, description: describe(band.min, band.max) }];
  if (p >= BAYES_999.min) hits.push({ rule: BAYES_999.rule, score: BAYES_999.score, description: describe(BAYES_999.min, 1) });
  return hits;
}

const TOTALS_TTL_MS = 10_000;

export class Bayes {
  constructor(
    private data: DataStore,
    private minLearned: number,
  ) {}

  /** The scopes whose statistics score a message for these recipients. */
  static scopes(recipients: string[]): string[] {
    const users = [...new Set(recipients.map((r) => r.toLowerCase()))];
    return users.length === 1 ? ['', users[0]!] : [''];
  }

  /**
   * Learned-message counts per scope, read at most every TOTALS_TTL_MS: they change slowly and
   * the classifier only needs them roughly, while reading them for every message on the MX
   * port was one query per message (most of an untrained filter's cost).
   */
  private totalsCache = new Map<string, { at: number; spam: number; ham: number }>();

  private async totals(scopes: string[]): Promise<Map<string, { spam: number; ham: number }>> {
    const now = Date.now();
    const missing = scopes.filter((s) => {
      const c = this.totalsCache.get(s);
      return !c || now - c.at > TOTALS_TTL_MS;
    });
    if (missing.length) {
      const read = await this.data.bayesTotals(missing);
      if (this.totalsCache.size > 10_000) this.totalsCache.clear(); // bounded: one entry per recipient seen
      for (const s of missing) this.totalsCache.set(s, { at: now, ...(read.get(s) ?? { spam: 0, ham: 0 }) });
    }
    const out = new Map<string, { spam: number; ham: number }>();
    for (const s of scopes) {
      const c = this.totalsCache.get(s)!;
      if (c.spam || c.ham) out.set(s, { spam: c.spam, ham: c.ham });
    }
    return out;
  }

  /** The spam probability of a message's tokens, or null while too little has been learned. */
  async classify(tokens: string[], recipients: string[]): Promise<BayesResult | null> {
    const scopes = Bayes.scopes(recipients);
    const totals = await this.totals(scopes);
    const global = totals.get('') ?? { spam: 0, ham: 0 };
    if (global.spam < Math.max(1, this.minLearned) || global.ham < Math.max(1, this.minLearned)) return null;
    let nSpam = 0;
    let nHam = 0;
    for (const t of totals.values()) {
      nSpam += t.spam;
      nHam += t.ham;
    }
    const hashed = new Map(tokens.map((t) => [hashToken(t), t]));
    const counts = new Map<string, { spam: number; ham: number }>();
    for (const r of await this.data.bayesCounts(scopes, [...hashed.keys()])) {
      const c = counts.get(r.token) ?? { spam: 0, ham: 0 };
      c.spam += r.spam;
      c.ham += r.ham;
      counts.set(r.token, c);
    }
    const probs: number[] = [];
    for (const c of counts.values()) {
      const f = tokenProbability(c.spam, c.ham, nSpam, nHam);
      if (Math.abs(f - 0.5) >= MIN_STRENGTH) probs.push(f);
    }
    probs.sort((a, b) => Math.abs(b - 0.5) - Math.abs(a - 0.5));
    const used = probs.slice(0, MAX_TOKENS);
    return { probability: chiSquaredCombine(used), used: used.length };
  }

  /** Learns a message (by blob hash or file hash) as spam or ham, or forgets it (null), in each scope. */
  async learn(scopes: string[], id: string, tokens: string[], verdict: 'spam' | 'ham' | null): Promise<Array<'spam' | 'ham' | null>> {
    const hashed = [...new Set(tokens.map(hashToken))];
    this.totalsCache.clear();
    const before: Array<'spam' | 'ham' | null> = [];
    for (const scope of new Set(scopes)) before.push(await this.data.bayesLearn(scope, id, hashed, verdict));
    return before;
  }
}

/**
 * Robinson's f(w): the token's spam ratio, each kind normalised by how many messages of it were
 * learned, pulled toward X with strength S when the token is rare (Robinson, "A Statistical
 * Approach to the Spam Problem", Linux Journal 2003).
 */
export function tokenProbability(spam: number, ham: number, nSpam: number, nHam: number): number {
  const s = nSpam ? spam / nSpam : 0;
  const h = nHam ? ham / nHam : 0;
  if (s + h === 0) return X;
  const p = s / (s + h);
  const n = spam + ham;
  return (S * X + n * p) / (S + n);
}

/** Fisher's method both ways (spamminess S, hamminess H), then (1 + S - H) / 2; 0.5 without evidence. */
export function chiSquaredCombine(probs: number[]): number {
  if (!probs.length) return 0.5;
  let lnSpam = 0;
  let lnHam = 0;
  for (const f of probs) {
    lnHam += Math.log(f);
    lnSpam += Math.log(1 - f);
  }
  const n = probs.length;
  const spamminess = 1 - chi2Q(-2 * lnSpam, 2 * n);
  const hamminess = 1 - chi2Q(-2 * lnHam, 2 * n);
  return (1 + spamminess - hamminess) / 2;
}

/** P(chi² with v (even) degrees of freedom ≥ x2), the series SpamBayes uses. */
export function chi2Q(x2: number, v: number): number {
  const m = x2 / 2;
  let term = Math.exp(-m);
  let sum = term;
  for (let i = 1; i < v / 2; i++) {
    term *= m / i;
    sum += term;
  }
  return Math.min(sum, 1);
}
