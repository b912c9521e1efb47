import crypto from 'node:crypto';
import { promisify } from 'node:util';
import type { SaslMechanism, SaslStep } from './sasl.ts';

/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677): the password never crosses the wire, not even
 * inside TLS, and the server stores only StoredKey/ServerKey. The secret is kept in
 * Dovecot's notation, `{SCRAM-SHA-256}iterations,salt,StoredKey,ServerKey` (base64),
 * beside the argon2id hash (PLAIN/LOGIN verify that one). It is derived whenever the
 * password is set, and on the first PLAIN/LOGIN login of an account that has none.
 * Passwords are used as UTF-8 without SASLprep (RFC 4013) normalisation, as most
 * clients send them; non-ASCII passwords may fail with SCRAM but work with PLAIN.
 */
export interface ScramSecret {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** RFC 7677 §4: at least 4096; we use more, as PBKDF2 is the only cost of guessing. */
export const SCRAM_ITERATIONS = 10_000;
const pbkdf2 = promisify(crypto.pbkdf2);
const hmac = (key: Buffer, data: string | Buffer) => crypto.createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer) => crypto.createHash('sha256').update(data).digest();

/** Derives the stored secret; PBKDF2 runs on libuv's thread pool, off the event loop. */
export async function deriveScram(password: string, salt = crypto.randomBytes(16), iterations = SCRAM_ITERATIONS): Promise<ScramSecret> {
  const salted = await pbkdf2(Buffer.from(password, 'utf8'), salt, iterations, 32, 'sha256');
  return { iterations, salt, storedKey: sha256(hmac(salted, 'Client Key')), serverKey: hmac(salted, 'Server Key') };
}

export function formatScram(s: ScramSecret): string {
  return `{SCRAM-SHA-256}${s.iterations},${s.salt.toString('base64')},${s.storedKey.toString('base64')},${s.serverKey.toString('base64')}`;
}

export function parseScram(value: string | null): ScramSecret | null {
  const m = value ? /^\{SCRAM-SHA-256\}(\d+),([A-Za-z0-9+/=]+),([A-Za-z0-9+/=]+),([A-Za-z0-9+/=]+)$/.exec(value) : null;
  if (!m) return null;
  const s = { iterations: Number(m[1]), salt: Buffer.from(m[2]!, 'base64'), storedKey: Buffer.from(m[3]!, 'base64'), serverKey: Buffer.from(m[4]!, 'base64') };
  return s.iterations >= 4096 && s.storedKey.length === 32 && s.serverKey.length === 32 ? s : null;
}

/** RFC 5802 §5.1: "=2C" and "=3D" stand for "," and "=" in a username. */
function decodeSaslName(s: string): string | null {
  if (/=(?!2C|3D)/.test(s)) return null;
  return s.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

function attributes(msg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) out.set(part[0]!, part.slice(2));
  }
  return out;
}

/**
 * Looks up a user's secret. For an unknown user it must still answer (with a secret
 * derived from a server key and the name) so SCRAM does not reveal which users exist
 * (RFC 5802 §9). Null only when SCRAM cannot be used for this user (no secret yet).
 */
export type ScramLookup = (username: string) => Promise<ScramSecret | null>;

/** The server side of one SCRAM-SHA-256 exchange, as a SASL mechanism. */
export class ScramSha256 implements SaslMechanism {
  readonly name = 'SCRAM-SHA-256';
  private state: 'first' | 'final' | 'done' = 'first';
  private username = '';
  private secret: ScramSecret | null = null;
  private clientFirstBare = '';
  private serverFirst = '';
  private nonce = '';
  private gs2Header = '';

  constructor(
    private readonly lookup: ScramLookup,
    /** The server's part of the nonce (RFC 5802 §5.1 "r"); injectable for the RFC 7677 test vector. */
    private readonly serverNonce: () => string = () => crypto.randomBytes(18).toString('base64'),
  ) {}

  start(initial: Buffer | null): SaslStep | Promise<SaslStep> {
    return initial === null || initial.length === 0 ? { kind: 'challenge', data: Buffer.alloc(0) } : this.next(initial);
  }

  async next(response: Buffer): Promise<SaslStep> {
    const msg = response.toString('utf8');
    if (this.state === 'first') return this.clientFirst(msg);
    if (this.state === 'final') return this.clientFinal(msg);
    return { kind: 'error', message: 'SCRAM exchange already finished' };
  }

  private async clientFirst(msg: string): Promise<SaslStep> {
    // gs2-header: "n,," (no channel binding) or "y,," (client could but we do not offer -PLUS). RFC 5802 §7.
    const m = /^([ny]),(a=[^,]*)?,(.*)$/.exec(msg);
    if (!m) return { kind: 'error', message: 'channel binding is not supported (use SCRAM-SHA-256 without -PLUS)' };
    if (m[2] && m[2].slice(2) !== '') {
      const authz = decodeSaslName(m[2].slice(2));
      if (authz === null) return { kind: 'error', message: 'malformed SCRAM authzid' };
    }
    this.gs2Header = msg.slice(0, msg.length - m[3]!.length);
    this.clientFirstBare = m[3]!;
    const attrs = attributes(this.clientFirstBare);
    const user = decodeSaslName(attrs.get('n') ?? '');
    const cnonce = attrs.get('r') ?? '';
    if (this.clientFirstBare.startsWith('m=')) return { kind: 'error', message: 'SCRAM extensions are not supported' };
    if (!user || !cnonce || !/^[\x21-\x2b\x2d-\x7e]+$/.test(cnonce) || user.length > 1024) return { kind: 'error', message: 'malformed SCRAM client-first message' };
    const authzid = m[2] ? decodeSaslName(m[2].slice(2)) : '';
    if (authzid && authzid.toLowerCase() !== user.toLowerCase()) return { kind: 'error', message: 'authorization identity not permitted' };
    this.username = user;
    this.secret = await this.lookup(user);
    if (!this.secret) return { kind: 'error', message: 'SCRAM-SHA-256 is not available for this user: use PLAIN or LOGIN' };
    this.nonce = cnonce + this.serverNonce();
    this.serverFirst = `r=${this.nonce},s=${this.secret.salt.toString('base64')},i=${this.secret.iterations}`;
    this.state = 'final';
    return { kind: 'challenge', data: Buffer.from(this.serverFirst, 'utf8') };
  }

  private clientFinal(msg: string): SaslStep {
    this.state = 'done';
    const proofAt = msg.lastIndexOf(',p=');
    if (proofAt < 0) return { kind: 'error', message: 'malformed SCRAM client-final message' };
    const withoutProof = msg.slice(0, proofAt);
    const attrs = attributes(withoutProof);
    const proof = Buffer.from(msg.slice(proofAt + 3), 'base64');
    if (attrs.get('c') !== Buffer.from(this.gs2Header, 'utf8').toString('base64') || attrs.get('r') !== this.nonce || proof.length !== 32) {
      return { kind: 'error', message: 'malformed SCRAM client-final message' };
    }
    const s = this.secret!;
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const clientSignature = hmac(s.storedKey, authMessage);
    const clientKey = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) clientKey[i] = proof[i]! ^ clientSignature[i]!;
    const ok = crypto.timingSafeEqual(sha256(clientKey), s.storedKey);
    const serverFinal = Buffer.from(`v=${hmac(s.serverKey, authMessage).toString('base64')}`, 'utf8');
    return { kind: 'verified', username: this.username, ok, final: ok ? serverFinal : null };
  }
}

/** A secret for names that have none, stable per name, so probing cannot tell them apart (RFC 5802 §9). */
export function decoySecret(serverKey: Buffer, username: string): ScramSecret {
  const k = hmac(serverKey, username.toLowerCase());
  return { iterations: SCRAM_ITERATIONS, salt: k.subarray(0, 16), storedKey: sha256(k), serverKey: hmac(k, 'decoy') };
}
