import type { LoginResult } from '../../auth/authenticator.ts';
import { DirectoryUnavailableError } from '../../directory/errors.ts';
import { Pop3Error, err, errLine } from '../errors.ts';
import type { Pop3Session } from '../session.ts';

/**
 * What USER/PASS and AUTH share: the TLS rule before any credentials are read, and
 * the end of a login — the verdict from the shared Authenticator (failure delay,
 * bans), then the maildrop (lock, snapshot).
 */
export function requireAuthAllowed(s: Pop3Session): void {
  // RFC 2595 §2.2, RFC 8314: no passwords in cleartext (auth.allow_plaintext_loopback exempts loopback).
  if (!s.authAllowed) throw err('Plaintext authentication disallowed on non-secure connections; use STLS or the POP3S port', 'AUTH');
}

/**
 * Runs the credential check. A throw from the Authenticator or the directory behind
 * it (e.g. LDAP unreachable) is a temporary failure, never a wrong password
 * (RFC 3206 §4 SYS/TEMP): it is logged and not counted toward a ban.
 */
export async function finishLogin(s: Pop3Session, check: () => Promise<LoginResult>): Promise<void> {
  let result: LoginResult;
  try {
    result = await check();
  } catch (e) {
    if (e instanceof Pop3Error) throw e;
    // An unreachable directory logs itself, once per period (not per login).
    if (!(e instanceof DirectoryUnavailableError)) s.log.error({ err: e }, 'authentication backend failed');
    throw err('Temporary authentication failure, try again later', 'SYS/TEMP');
  }
  if (s.isClosed) return;
  if (!result.ok) {
    if (result.banned) {
      s.write(errLine('Too many failed logins from your address; try again later', 'AUTH'));
      s.close();
      return;
    }
    throw err('Authentication failed', 'AUTH');
  }
  await s.openMaildrop(result.account);
  if (s.isClosed) return;
  const { count, size } = s.maildrop!.stat();
  s.write(`+OK Logged in, ${count} messages (${size} octets)\r\n`);
}
