import type { Logger } from 'pino';

/**
 * Logs an unreachable or failing LDAP server once per period, not once per query
 * (a delivery storm during an outage would otherwise write thousands of identical
 * lines), with how many failures the period hid; and once when it answers again.
 */
export class FailureLog {
  private since: number | null = null;
  private lastLogged = 0;
  private hidden = 0;
  private total = 0;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly now: () => number,
    private readonly where: string,
  ) {}

  failure(err: unknown, during: string): void {
    const t = this.now();
    this.total++;
    if (this.since === null || t - this.lastLogged >= this.intervalMs) {
      this.log.error(
        { ldap: this.where, during, error: describeError(err), failing_since: new Date(this.since ?? t).toISOString(), failures_not_logged: this.hidden },
        'LDAP directory unavailable: logins and recipient checks answer with temporary failures',
      );
      this.since ??= t;
      this.lastLogged = t;
      this.hidden = 0;
    } else this.hidden++;
  }

  success(): void {
    if (this.since === null) return;
    this.log.warn({ ldap: this.where, down_ms: this.now() - this.since, failures: this.total }, 'LDAP directory reachable again');
    this.since = null;
    this.hidden = 0;
    this.total = 0;
  }

  get failing(): boolean {
    return this.since !== null;
  }
}

/** One line: the error's class and message (ldapts result codes carry the LDAP code). */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return `${err.name !== 'Error' ? `${err.name}: ` : ''}${err.message}${typeof code === 'number' ? ` (LDAP result ${code})` : ''}`.replace(/\s+/g, ' ').slice(0, 300);
  }
  return String(err).slice(0, 300);
}
