/**
 * What a policy check decides (DESIGN.md: staged checks with typed verdicts). A check that has
 * nothing to say continues; "accept" ends the stage's checks in the message's favour (an allow
 * rule); reject/tempfail/disconnect end them with an SMTP reply. Every verdict carries the
 * reason that goes into the mail log (and, for content checks, into headers).
 */
export interface PolicyReply {
  code: number;
  /** RFC 3463 enhanced status code. */
  enhanced: string;
  text: string;
}

export type Verdict =
  | { kind: 'continue'; reason?: string }
  | { kind: 'accept'; reason: string }
  | { kind: 'reject' | 'tempfail' | 'disconnect'; reply: PolicyReply; reason: string };

export const CONTINUE: Verdict = { kind: 'continue' };

/** One check's outcome, for the log and `postern policy test`. */
export interface CheckResult {
  check: string;
  verdict: Verdict;
  ms: number;
}

/** Where in the SMTP transaction a check runs (RFC 5321 §3). */
export type Stage = 'connect' | 'helo' | 'mail' | 'rcpt' | 'data';
