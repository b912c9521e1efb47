import { MailError } from '../core/errors.ts';

/**
 * The directory (LDAP) could not answer: unreachable, timed out, refused our bind,
 * or answered with an error. Never "no such user" and never "wrong password": every
 * protocol turns it into a temporary failure — SMTP RCPT `451 4.4.3`, SMTP AUTH
 * `454 4.7.0` (RFC 4954 §6), IMAP `NO [UNAVAILABLE]`, POP3 `-ERR [SYS/TEMP]` — and
 * a login that fails this way is not counted toward a ban.
 *
 * It is a MailError with code TEMP_FAILURE, so code that maps MailError codes
 * (the IMAP session, POP3) gives the temporary reply without knowing about LDAP.
 * The message is safe to show to clients; the cause (host, error) is in `cause`
 * and in the server log.
 */
export class DirectoryUnavailableError extends MailError {
  constructor(cause?: unknown) {
    super('TEMP_FAILURE', 'The user directory is temporarily unavailable, try again later');
    this.name = 'DirectoryUnavailableError';
    if (cause !== undefined) (this as { cause?: unknown }).cause = cause;
  }
}
