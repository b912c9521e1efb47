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
