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
  // RFC 1870 §6.1
  SIZE_AT_MAIL: { code: 552, text: '5.3.4 Message size exceeds fixed limit' },
  SIZE_AT_DATA: { code: 552, text: '5.3.4 Message size exceeds fixed limit' },
  // RFC 5321 §6.3: Received counting; Postfix says "5.4.6 Too many hops"
  LOOP: { code: 554, text: '5.4.6 Too many hops (mail forwarding loop)' },
  STORE_TEMPFAIL: { code: 451, text: '4.3.0 Error: local problem storing the message, try again later' },
  TOO_MANY_ERRORS: { code: 421, text: '4.7.0 Too many errors, closing connection' },
  TOO_MANY_CONNECTIONS: { code: 421, text: '4.7.0 Too many connections from your address, try again later' },
} as const;

export class SmtpReplyError extends Error {
  responseCode: number;
  constructor(reply: { code: number; text: string }, detail?: string) {
    super(detail ? reply.text.replace(/^(\d\.\d{1,3}\.\d{1,3} )/, `$1${detail}: `) : reply.text);
    this.responseCode = reply.code;
  }
}
