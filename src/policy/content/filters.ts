import type { Config } from '../../config/schema.ts';
import type { DataStore } from '../../store/data-store.ts';
import { builtinFilter } from './builtin.ts';
import { rspamdFilter } from './rspamd.ts';
import { spamdFilter } from './spamd.ts';
import type { ContentFilter } from './types.ts';

/** The content filter policy.spam.filter selects (null when scoring is off). */
export function contentFilter(spam: Config['policy']['spam'], data: DataStore): ContentFilter | null {
  if (!spam.enabled) return null;
  switch (spam.filter) {
    case 'spamd':
      return spamdFilter({ address: spam.spamd, timeoutMs: spam.timeout });
    case 'rspamd':
      return rspamdFilter({ url: spam.rspamd_url, timeoutMs: spam.timeout });
    default:
      return builtinFilter({ data, bayes: spam.bayes, bayesMinLearned: spam.bayes_min_learned });
  }
}
