import type { DataStore } from '../../store/data-store.ts';
import { Bayes, bayesHits } from './bayes.ts';
import { scoreRules } from './rules.ts';
import { tokenize } from './tokenize.ts';
import type { ContentFilter, ContentScore } from './types.ts';

export interface BuiltinDeps {
  data: DataStore;
  /** policy.spam.bayes */
  bayes: boolean;
  /** policy.spam.bayes_min_learned */
  bayesMinLearned: number;
  /** Clock for the Date rules (tests). */
  now?: () => number;
}

/**
 * The builtin filter: the rules (rules.ts) plus, when on and trained, the Bayesian classifier's
 * BAYES_* rule. The score is the sum of the hits' points, as in SpamAssassin.
 */
export function builtinFilter(deps: BuiltinDeps): ContentFilter {
  const bayes = deps.bayes ? new Bayes(deps.data, deps.bayesMinLearned) : null;
  return {
    name: 'builtin',
    async score(input): Promise<ContentScore> {
      const { hits, parsed } = await scoreRules(input, deps.now?.() ?? Date.now());
      // GTUBE decides alone; the classifier learns nothing from a test string either.
      if (bayes && !hits.some((h) => h.rule === 'GTUBE')) {
        const r = await bayes.classify(tokenize(parsed), input.recipients);
        if (r) hits.push(...bayesHits(r));
      }
      const score = Math.round(hits.reduce((s, h) => s + h.score, 0) * 1000) / 1000;
      return { score, hits, filter: 'builtin' };
    },
  };
}
