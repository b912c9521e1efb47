/**
 * Protocol-neutral errors thrown by the core; each protocol maps the code to its own
 * replies (SMTP 5xx/4xx with enhanced codes, IMAP NO [CODE], POP3 -ERR [CODE]).
 */
export type MailErrorCode =
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'INVALID'
  | 'OVER_QUOTA'
  | 'TEMP_FAILURE'
  | 'READ_ONLY'
  /** A mailbox with sub-mailboxes cannot be deleted (IMAP [HASCHILDREN], RFC 5530). */
  | 'HAS_CHILDREN';

export class MailError extends Error {
  constructor(
    readonly code: MailErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'MailError';
  }
}

/** The server cannot start for a reason the administrator fixes (port taken, no permission): shown without a stack. */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}
