/**
 * The DATA stage of the inbound policy (issue #9): what the content checks see and what
 * they answer. The SMTP server holds the message back (up to policy.spam.max_size), runs
 * authentication (SPF/DKIM/DMARC/ARC) and then one filter (builtin rules + Bayes, spamd or
 * Rspamd), then writes the headers these produce in front of the message.
 */

/** SPF/DKIM/DMARC/ARC outcome (src/policy/content/authenticate.ts), evidence for the scorers. */
export interface AuthSummary {
  /** RFC 7208 §2.6 results: pass, fail, softfail, neutral, none, temperror, permerror. */
  spf: string;
  /** One per signature: pass, fail, neutral, temperror, permerror, policy; [] when unsigned. */
  dkim: Array<{ result: string; domain: string; aligned: boolean }>;
  /** RFC 7489: pass, fail, none, temperror, permerror. */
  dmarc: string;
  /** The domain's published policy when DMARC failed: none, quarantine, reject. */
  dmarcPolicy: string | null;
  /** RFC 8617: pass, fail, none. */
  arc: string;
  /** The RFC5322.From domain (lower case), '' when missing. */
  fromDomain: string;
}

export interface ContentInput {
  /** The message as the client sent it (CRLF line ends, without our trace headers). */
  message: Buffer;
  /** Client address, HELO name, envelope sender ('' for <>), local recipients (account emails). */
  ip: string;
  helo: string;
  from: string;
  recipients: string[];
  /** null when authentication checks are off. */
  auth: AuthSummary | null;
  /** DNSBL zones that listed the client below the rejection threshold (evidence). */
  dnsblHits: string[];
}

/** One rule that matched: SpamAssassin-style name, points, and a short description. */
export interface ScoreHit {
  rule: string;
  score: number;
  description: string;
}

export interface ContentScore {
  score: number;
  hits: ScoreHit[];
  /** Which filter scored ("builtin", "spamd", "rspamd"). */
  filter: string;
  /** What an external filter itself would do (Rspamd's action): logged only, Postern's thresholds decide. */
  action?: string;
}

/** A filter: builtin, spamd or Rspamd. Throws (or times out) when it cannot answer: the message is then delivered unscored. */
export interface ContentFilter {
  name: string;
  score(input: ContentInput): Promise<ContentScore>;
}
