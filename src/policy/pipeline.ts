import type { CheckResult, Stage, Verdict } from './verdict.ts';

/** What the checks of a stage know about the transaction so far. */
export interface PolicyInput {
  /** The client's address (IPv4 or IPv6, no brackets). */
  ip: string;
  helo?: string;
  /** MAIL FROM, lower case; '' for the null sender. */
  from?: string;
  /** RCPT TO, lower case. */
  to?: string;
  /** The addresses (accounts) this recipient delivers to: whose personal rules apply. */
  users?: string[];
}

export interface Check {
  name: string;
  stage: Stage;
  run(input: PolicyInput): Promise<Verdict>;
}

/**
 * Runs the checks of one stage in order until one decides. A check that does not answer within
 * `timeoutMs` is a temporary failure (DESIGN.md): the client is asked to try again rather than
 * let through unchecked or refused for good; so is a check that throws.
 */
export async function runStage(checks: readonly Check[], stage: Stage, input: PolicyInput, timeoutMs: number): Promise<{ verdict: Verdict; results: CheckResult[] }> {
  const results: CheckResult[] = [];
  for (const check of checks) {
    if (check.stage !== stage) continue;
    const start = Date.now();
    const verdict = await withTimeout(check, input, timeoutMs);
    results.push({ check: check.name, verdict, ms: Date.now() - start });
    if (verdict.kind !== 'continue') return { verdict, results };
  }
  return { verdict: { kind: 'continue' }, results };
}

async function withTimeout(check: Check, input: PolicyInput, timeoutMs: number): Promise<Verdict> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Verdict>((resolve) => {
    timer = setTimeout(
      () => resolve({ kind: 'tempfail', reply: { code: 451, enhanced: '4.7.1', text: 'Temporary policy failure, try again later' }, reason: `${check.name}: no answer within ${timeoutMs} ms` }),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([
      check.run(input).catch(
        (err: unknown): Verdict => ({ kind: 'tempfail', reply: { code: 451, enhanced: '4.7.1', text: 'Temporary policy failure, try again later' }, reason: `${check.name} failed: ${(err as Error).message}` }),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
