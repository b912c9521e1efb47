/**
 * SMTP replies Postern sends itself, with RFC 3463 enhanced status codes in the text.
 * (smtp-server adds an enhanced code of its own choosing unless the text starts with
 * one; see enhanced-codes.ts.)
 */
export const R = {
  // RFC 5321 §4.2.2 / RFC 3463 §3.2
  UNKNOWN_USER: { code: 550, text: '5.1.1 Recipient address rejected: user unknown' },
  RELAY_DENIED: { code: 554, text: '5.7.1 Relay access denied' },
  BAD_DESTINATION: { code: 550, text: '5.1.2 Bad destination mailbox address syntax' },
  NO_LOCAL_RCPT_LMTP: { code: 550, text: '5.1.2 LMTP accepts only local recipients' },
  DIRECTORY_TEMPFAIL: { code: 451, text: '4.3.0 Temporary lookup failure, try again later' },
  // RFC 3463 §3.5 X.4.3 "Directory server failure": the user directory (LDAP) did not answer (Postfix: 451 4.3.0; we name the cause)
  DIRECTORY_UNAVAILABLE: { code: 451, text: '4.4.3 Directory server failure, try again later' },
  // RFC 3463 §3.3 X.2.2 "Mailbox full": temporary, so the sender retries while the user makes room (Dovecot answers 552 5.2.2 unless quota_full_tempfail)
  MAILBOX_FULL: { code: 452, text: '4.2.2 Mailbox full, try again later' },
  // RFC 1870 §6.1
  SIZE_AT_MAIL: { code: 552, text: '5.3.4 Message size exceeds fixed limit' },
  SIZE_AT_DATA: { code: 552, text: '5.3.4 Message size exceeds fixed limit' },
  // RFC 5321 §6.3: Received counting; Postfix says "5.4.6 Too many hops"
  LOOP: { code: 554, text: '5.4.6 Too many hops (mail forwarding loop)' },
  STORE_TEMPFAIL: { code: 451, text: '4.3.0 Error: local problem storing the message, try again later' },
  TOO_MANY_ERRORS: { code: 421, text: '4.7.0 Too many errors, closing connection' },
  TOO_MANY_CONNECTIONS: { code: 421, text: '4.7.0 Too many connections from your address, try again later' },
  CONNECTION_RATE: { code: 421, text: '4.7.0 Too many connections from your address in a short time, try again later' },
  // fail2ban-style ban after failed logins (bans.*); same reply on every port.
  BANNED: { code: 421, text: '4.7.0 Your address is temporarily blocked after too many failed logins' },
  SERVICE_TEMPFAIL: { code: 421, text: '4.3.0 Service temporarily unavailable, try again later' },
  // RFC 4954 §6
  AUTH_REQUIRED: { code: 530, text: '5.7.0 Authentication required' },
  // RFC 3463 §3.8: 5.7.1 delivery not authorized (Postfix reject_sender_login_mismatch answers 553 5.7.1)
  SENDER_NOT_OWNED: { code: 553, text: '5.7.1 Sender address rejected: not owned by the authenticated user' },
  // RFC 3463 §3.8: 4.7.1, as Postfix's smtpd_client_recipient_rate_limit does
  RATE_LIMITED: { code: 451, text: '4.7.1 Sending rate limit exceeded, try again later' },
} as const;

export class SmtpReplyError extends Error {
  responseCode: number;
  constructor(reply: { code: number; text: string }, detail?: string) {
    super(detail ? reply.text.replace(/^(\d\.\d{1,3}\.\d{1,3} )/, `$1${detail}: `) : reply.text);
    this.responseCode = reply.code;
  }

  /** The reply's codes with other wording (e.g. naming the user), like Postfix's "<addr>: Sender address rejected: …". */
  static withText(reply: { code: number; text: string }, text: string): SmtpReplyError {
    return new SmtpReplyError({ code: reply.code, text: `${reply.text.slice(0, reply.text.indexOf(' '))} ${text}` });
  }
}
