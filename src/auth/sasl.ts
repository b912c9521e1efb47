import { ScramSha256, type ScramLookup } from './scram.ts';

/**
 * SASL mechanisms (RFC 4422) as protocol-neutral state machines: SMTP AUTH (RFC 4954),
 * IMAP AUTHENTICATE (RFC 9051 §6.2.2) and POP3 AUTH (RFC 5034) only differ in how a
 * challenge and a response travel (334 / "+ " lines, base64). Each mechanism turns the
 * client's responses into a username and password for the Authenticator.
 */
export type SaslStep =
  | { kind: 'challenge'; data: Buffer }
  /** PLAIN/LOGIN: the Authenticator checks the password. */
  | { kind: 'credentials'; authzid: string; username: string; password: string }
  /** SCRAM: the mechanism checked the proof itself; `final` is the server's last message (sent before success). */
  | { kind: 'verified'; username: string; ok: boolean; final: Buffer | null }
  | { kind: 'error'; message: string };

export interface SaslMechanism {
  readonly name: string;
  /** `initial`: the initial response given with the command (RFC 4422 §4), or null. */
  start(initial: Buffer | null): SaslStep | Promise<SaslStep>;
  next(response: Buffer): SaslStep | Promise<SaslStep>;
}

/** The mechanisms we offer, strongest first; all only inside TLS (they identify the user). */
export const MECHANISMS = ['SCRAM-SHA-256', 'PLAIN', 'LOGIN'] as const;

/** RFC 4616 §2: authcid and passwd are 1..255 octets; we allow long passphrases (up to 1 KiB). */
const MAX_FIELD = 1024;

function utf8(b: Buffer): string | null {
  const s = b.toString('utf8');
  // Reject invalid UTF-8 (RFC 4616 §2) and control characters that could forge log lines.
  if (Buffer.byteLength(s, 'utf8') !== b.length || s.includes('\uFFFD')) return null;
  return s;
}

/** RFC 4616 PLAIN: one message "[authzid] NUL authcid NUL passwd". */
class Plain implements SaslMechanism {
  readonly name = 'PLAIN';
  start(initial: Buffer | null): SaslStep {
    return initial === null ? { kind: 'challenge', data: Buffer.alloc(0) } : this.next(initial);
  }
  next(response: Buffer): SaslStep {
    const first = response.indexOf(0);
    const second = first < 0 ? -1 : response.indexOf(0, first + 1);
    if (first < 0 || second < 0 || response.indexOf(0, second + 1) >= 0) return { kind: 'error', message: 'malformed PLAIN response' };
    const authzid = utf8(response.subarray(0, first));
    let username = utf8(response.subarray(first + 1, second));
    const password = utf8(response.subarray(second + 1));
    if (authzid === null || username === null || password === null) return { kind: 'error', message: 'PLAIN response is not UTF-8' };
    // Some clients put the user in authzid and leave authcid empty; accept that spelling.
    if (!username) username = authzid;
    if (!username || !password || username.length > MAX_FIELD || password.length > MAX_FIELD || /[\x00-\x1f\x7f]/.test(username)) {
      return { kind: 'error', message: 'malformed PLAIN response' };
    }
    return { kind: 'credentials', authzid, username, password };
  }
}

/** The non-standard but universal LOGIN mechanism (draft-murchison-sasl-login): username, then password. */
class Login implements SaslMechanism {
  readonly name = 'LOGIN';
  private username: string | null = null;
  start(initial: Buffer | null): SaslStep {
    if (initial === null || initial.length === 0) return { kind: 'challenge', data: Buffer.from('Username:') };
    return this.next(initial);
  }
  next(response: Buffer): SaslStep {
    const value = utf8(response);
    if (value === null || value.length > MAX_FIELD || (this.username === null && /[\x00-\x1f\x7f]/.test(value))) return { kind: 'error', message: 'malformed LOGIN response' };
    if (this.username === null) {
      if (!value) return { kind: 'error', message: 'empty username' };
      this.username = value;
      return { kind: 'challenge', data: Buffer.from('Password:') };
    }
    if (!value) return { kind: 'error', message: 'empty password' };
    return { kind: 'credentials', authzid: '', username: this.username, password: value };
  }
}

export function createMechanism(name: string, scramLookup: ScramLookup): SaslMechanism | null {
  switch (name.toUpperCase()) {
    case 'SCRAM-SHA-256':
      return new ScramSha256(scramLookup);
    case 'PLAIN':
      return new Plain();
    case 'LOGIN':
      return new Login();
    default:
      return null;
  }
}

/**
 * Decodes a client response line: "*" aborts the exchange (RFC 4954 §4, RFC 9051
 * §6.2.2), "=" as an initial response means an empty one (RFC 4954 §4); anything
 * else must be strict base64. Returns null when it is not.
 */
export function decodeResponse(line: string, initial = false): Buffer | 'abort' | null {
  const s = line.trim();
  if (s === '*') return 'abort';
  if (initial && s === '=') return Buffer.alloc(0);
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) return null;
  return Buffer.from(s, 'base64');
}
