/**
 * POP3 replies and their extended response codes. Handlers throw Pop3Error; the
 * session turns it into one `-ERR [CODE] text` line (session.ts run()).
 */

/** RFC 2449 §8 and RFC 3206 response codes (advertised as RESP-CODES and AUTH-RESP-CODE). */
export type RespCode =
  /** RFC 2449 §8.1.1: the user logged in too recently (LOGIN-DELAY). */
  | 'LOGIN-DELAY'
  /** RFC 2449 §8.1.2: the maildrop is locked by another session. */
  | 'IN-USE'
  /** RFC 3206 §4: a temporary system problem (try again later). */
  | 'SYS/TEMP'
  /** RFC 3206 §4: a permanent system problem (tell the administrator). */
  | 'SYS/PERM'
  /** RFC 3206 §5: the credentials, not the system, are the problem. */
  | 'AUTH'
  /** RFC 6856 §3: the UTF8 command is needed first (not used: UTF-8 is always accepted). */
  | 'UTF8';

export class Pop3Error extends Error {
  constructor(
    message: string,
    readonly code: RespCode | null = null,
    /** A syntax error or a command not allowed now: counts toward the bad-command limit. */
    readonly bad = false,
  ) {
    super(message);
  }
}

export const err = (message: string, code: RespCode | null = null) => new Pop3Error(message, code);
export const badCommand = (message: string) => new Pop3Error(message, null, true);

/** One reply line with CRLF. */
export function okLine(text: string): string {
  return `+OK ${text}\r\n`;
}

export function errLine(text: string, code: RespCode | null = null): string {
  return `-ERR ${code ? `[${code}] ` : ''}${text}\r\n`;
}

/** RFC 1939 §3: a multi-line response is ended by a line holding one ".". */
export const END = '.\r\n';
