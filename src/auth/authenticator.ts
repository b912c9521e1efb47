import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { DataStore } from '../store/data-store.ts';
import { hashPassword, needsRehash, verifyPassword } from './password.ts';
import { CredentialCache } from './credential-cache.ts';
import type { BanGuard } from './bans.ts';
import crypto from 'node:crypto';
import { decoySecret, deriveScram, formatScram, parseScram, type ScramSecret } from './scram.ts';
import { InternalDirectory, type Directory, type LoginVerdict } from '../directory/directory.ts';
import { MECHANISMS } from './sasl.ts';

export interface LoginRequest {
  username: string;
  password: string;
  /** Client IP (or "local"). */
  address: string;
  /** smtp, imap, pop3, web: for logs and ban notices. */
  protocol: string;
}

/** `banned`: the client is banned (its next attempt after the failure that banned it): the caller closes the connection. */
export type LoginResult = { ok: true; account: { id: number; email: string } } | { ok: false; banned: boolean };

/**
 * Password logins for every protocol (SMTP AUTH, IMAP LOGIN/AUTHENTICATE, POP3,
 * the web UI): verification with the credential cache, transparent upgrade of
 * imported hashes to argon2id, and on failure a delay (Dovecot auth_failure_delay,
 * doubling per failure from the same client) plus a count toward a ban.
 *
 * Where the directory checks passwords itself (LDAP: `directory.authenticate`), the
 * login goes there instead of the store's hashes: no rehash, no SCRAM secret (LDAP
 * users cannot use SCRAM-SHA-256: `scramSecret` is null for every name, so the
 * exchange fails cleanly and PLAIN/LOGIN are the way in). Failures are delayed and
 * counted exactly as for store users. When the directory cannot answer it throws
 * DirectoryUnavailableError, which passes through unchanged: a temporary failure for
 * the protocol to report, not a wrong password, and not counted toward a ban.
 */
export class Authenticator {
  readonly cache: CredentialCache;
  /** Keys the SCRAM decoys of unknown users: stable within a process, unguessable outside it. */
  private readonly decoyKey = crypto.randomBytes(32);

  constructor(
    private readonly data: DataStore,
    private readonly cfg: Config['auth'],
    private readonly bans: BanGuard,
    private readonly log: Logger,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
    private readonly directory: Directory = new InternalDirectory(data),
  ) {
    this.cache = new CredentialCache(cfg.cache_ttl);
  }

  async login(req: LoginRequest): Promise<LoginResult> {
    // A connection opened before its client was banned gets no more guesses.
    if (await this.bans.banned(req.address)) return { ok: false, banned: true };
    const username = req.username.trim().toLowerCase();
    if (this.directory.authenticate) return this.directoryLogin(req, username);
    const account = username && req.password ? await this.data.getAccount(username) : null;
    if (account && account.enabled && account.passwordHash) {
      const stored = account.passwordHash;
      if (this.cache.get(username, req.password, account.id, stored)) return this.success(req, account, 'cache');
      if (await verifyPassword(stored, req.password)) {
        if (needsRehash(stored)) void this.rehash(account.email, req.password);
        else {
          this.cache.set(username, req.password, account.id, stored);
          if (!account.scramSecret) void this.addScram(account.email, stored, req.password);
        }
        return this.success(req, account, 'verified');
      }
    }
    return this.failure(req, username, account ? (account.enabled ? 'password' : 'disabled') : 'unknown user');
  }

  /**
   * The SASL mechanisms to advertise (SMTP EHLO, IMAP CAPABILITY, POP3 CAPA), strongest
   * first. Without SCRAM-SHA-256 where the directory checks passwords: no user has a
   * secret for it, and clients pick the strongest mechanism offered (RFC 4422 §3.1),
   * so advertising it would make mbsync or mutt fail instead of using PLAIN.
   */
  get mechanisms(): readonly string[] {
    return this.directory.authenticate ? MECHANISMS.filter((m) => m !== 'SCRAM-SHA-256') : MECHANISMS;
  }

  /**
   * SCRAM-SHA-256: the secret to run the exchange with. Unknown and disabled users
   * get a stable decoy (RFC 5802 §9: do not reveal which users exist); a user
   * without a secret yet (imported hash, never logged in since) gets null.
   */
  async scramSecret(username: string): Promise<ScramSecret | null> {
    // Directory users (LDAP) have no SCRAM secret: the same answer for every name reveals none of them.
    if (this.directory.authenticate) return null;
    const u = username.trim().toLowerCase();
    const account = await this.data.getAccount(u);
    if (!account || !account.enabled || !account.passwordHash) return decoySecret(this.decoyKey, u);
    return parseScram(account.scramSecret);
  }

  /** The verdict of a SCRAM proof: counted, delayed and banned exactly like a password login. */
  async scramOutcome(req: Omit<LoginRequest, 'password'>, ok: boolean): Promise<LoginResult> {
    if (await this.bans.banned(req.address)) return { ok: false, banned: true };
    const username = req.username.trim().toLowerCase();
    const account = ok && !this.directory.authenticate ? await this.data.getAccount(username) : null;
    if (account && account.enabled) return this.success({ ...req, password: '' }, account, 'scram');
    return this.failure({ ...req, password: '' }, username, 'scram proof');
  }

  /** A login checked by the directory (LDAP bind or compare); its store account is created on first login. */
  private async directoryLogin(req: LoginRequest, username: string): Promise<LoginResult> {
    const verdict: LoginVerdict = username && req.password ? await this.directory.authenticate!(username, req.password) : { kind: 'unknown' };
    if (verdict.kind === 'ok') return this.success(req, await this.directory.account(verdict.user), `${this.directory.backend}`);
    const reason = { unknown: 'unknown user', ambiguous: 'ambiguous login name', disabled: 'disabled', 'bad-password': 'password', 'no-password': 'no password in the directory' }[verdict.kind];
    return this.failure(req, username, reason);
  }

  private success(req: LoginRequest, account: { id: number; email: string }, how: string): LoginResult {
    this.log.info({ protocol: req.protocol, client: req.address, user: account.email, via: how }, 'login');
    return { ok: true, account: { id: account.id, email: account.email } };
  }

  private async failure(req: LoginRequest, username: string, reason: string): Promise<LoginResult> {
    const { failures, banned } = await this.bans.recordFailure(req.address, req.protocol, username);
    // Never log the password; the username is attacker-chosen, so it is logged as data only.
    this.log.warn({ protocol: req.protocol, client: req.address, user: username.slice(0, 100), reason, failures, banned }, 'login failed');
    const delay = Math.min(this.cfg.failure_delay_max, this.cfg.failure_delay * 2 ** Math.max(0, Math.min(failures - 1, 16)));
    await this.sleep(delay);
    return { ok: false, banned: false };
  }

  /** Imported hashes (SHA512-CRYPT, bcrypt, SSHA512) become argon2id on the first good login, with a SCRAM secret. */
  private async rehash(email: string, password: string): Promise<void> {
    try {
      const [hash, scram] = await Promise.all([hashPassword(password), deriveScram(password)]);
      await this.data.setPassword(email, hash, formatScram(scram));
      this.log.info({ user: email }, 'password hash upgraded to argon2id');
    } catch (err) {
      this.log.error({ err, user: email }, 'could not upgrade the password hash');
    }
  }

  /** Accounts created before SCRAM (or by a tool that set only the hash) get their SCRAM secret at a PLAIN/LOGIN login. */
  private async addScram(email: string, storedHash: string, password: string): Promise<void> {
    try {
      await this.data.setScramSecret(email, storedHash, formatScram(await deriveScram(password)));
    } catch (err) {
      this.log.error({ err, user: email }, 'could not store the SCRAM secret');
    }
  }
}
