/** Per-client-IP connection counting (Postfix smtpd_client_connection_count_limit). */
export class ConnectionLimiter {
  private counts = new Map<string, number>();
  constructor(private max: number) {}

  acquire(ip: string): boolean {
    const n = this.counts.get(ip) ?? 0;
    if (n >= this.max) return false;
    this.counts.set(ip, n + 1);
    return true;
  }

  release(ip: string): void {
    const n = (this.counts.get(ip) ?? 1) - 1;
    if (n <= 0) this.counts.delete(ip);
    else this.counts.set(ip, n);
  }
}

/**
 * Errors in one session (Postfix smtpd_soft_error_limit / smtpd_hard_error_limit):
 * past the soft limit each error reply is delayed; at the hard limit the session
 * gets 421 and is closed.
 */
export class ErrorCounter {
  private n = 0;
  constructor(
    private soft: number,
    private hard: number,
    readonly delayMs: number,
  ) {}

  count(): 'ok' | 'delay' | 'close' {
    this.n++;
    if (this.n >= this.hard) return 'close';
    if (this.n > this.soft) return 'delay';
    return 'ok';
  }
}
