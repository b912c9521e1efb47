import type { SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { createMechanism, decodeResponse, MECHANISMS, type SaslMechanism, type SaslStep } from '../auth/sasl.ts';
import type { ScramSecret } from '../auth/scram.ts';

/**
 * SMTP AUTH (RFC 4954) on our shared SASL mechanisms instead of smtp-server's own:
 * - AUTH is advertised in EHLO only where it may be used (inside TLS, or from
 *   loopback when auth.allow_plaintext_loopback is set), and AUTH outside TLS is
 *   answered "530 5.7.0" (RFC 4954 §4 and §6) before any credentials are read;
 * - credentials are checked by the Authenticator (cache, failure delay, bans);
 * - replies carry RFC 3463 codes: 235 2.7.0, 535 5.7.8, 501 5.5.2, 504 5.5.4.
 * The server passes its policy as the (non smtp-server) option `posternAuth`;
 * without it smtp-server's behaviour is unchanged. Applied once, idempotently.
 */
type Outcome = { id: number; email: string } | null | 'banned';

export interface SmtpAuthPolicy {
  /** Whether authentication may be used on this connection now. */
  allowed(session: SMTPServerSession, secure: boolean): boolean;
  /** PLAIN/LOGIN: the account, null after a failed login (the failure delay has already passed), or 'banned'. */
  login(creds: { username: string; password: string }, session: SMTPServerSession): Promise<Outcome>;
  /** SCRAM: the user's secret (a decoy for unknown users), null when the user has none yet. */
  scramSecret(username: string): Promise<ScramSecret | null>;
  /** SCRAM: the verdict of the proof, counted like a password login. */
  scramOutcome(username: string, ok: boolean, session: SMTPServerSession): Promise<Outcome>;
}

type Done = () => void;

interface Connection {
  _server: { options: { posternAuth?: SmtpAuthPolicy } };
  session: SMTPServerSession & { transmissionType?: string };
  secure: boolean;
  _nextHandler: ((line: Buffer, done: Done) => void) | false;
  _closed?: boolean;
  _posternHideAuth?: boolean;
  send(code: number, data?: string | string[], context?: unknown): void;
  _transmissionType(): string;
  _isSupported(command: string): boolean;
  handler_AUTH(command: Buffer, done: Done): void;
  handler_EHLO(command: Buffer, done: Done): void;
}

const MARK = Symbol.for('postern.smtpAuth');

export function useSharedSaslAuth(): void {
  const proto = (SMTPConnection as unknown as { prototype: Connection & { [MARK]?: boolean } }).prototype;
  if (proto[MARK]) return;
  const originalAuth = proto.handler_AUTH;
  const originalEhlo = proto.handler_EHLO;
  const originalSupported = proto._isSupported;

  // EHLO lists AUTH only where it may be used (RFC 4954 §4: a server SHOULD NOT offer
  // mechanisms that send passwords in the clear before TLS).
  proto.handler_EHLO = function (this: Connection, command: Buffer, done: Done) {
    const policy = this._server.options.posternAuth;
    this._posternHideAuth = !!policy && !policy.allowed(this.session, this.secure);
    try {
      originalEhlo.call(this, command, done);
    } finally {
      this._posternHideAuth = false;
    }
  };
  proto._isSupported = function (this: Connection, command: string) {
    if (this._posternHideAuth && command.trim().toUpperCase() === 'AUTH') return false;
    return originalSupported.call(this, command);
  };

  proto.handler_AUTH = function (this: Connection, command: Buffer, done: Done) {
    const policy = this._server.options.posternAuth;
    if (!policy) return originalAuth.call(this, command, done);
    const args = command.toString().trim().split(/\s+/).slice(1);
    const name = (args.shift() ?? '').toUpperCase();
    if (!policy.allowed(this.session, this.secure)) {
      this.send(530, '5.7.0 Must issue a STARTTLS command first');
      return done();
    }
    if (this.session.user) {
      this.send(503, '5.5.1 Already authenticated');
      return done();
    }
    if (this.session.envelope.mailFrom) {
      // RFC 4954 §4: AUTH is not permitted during a mail transaction.
      this.send(503, '5.5.1 AUTH not permitted during a mail transaction');
      return done();
    }
    if (!name || args.length > 1) {
      this.send(501, '5.5.4 Syntax: AUTH mechanism [initial-response]');
      return done();
    }
    const mechanism = (MECHANISMS as readonly string[]).includes(name) ? createMechanism(name, (u) => policy.scramSecret(u)) : null;
    if (!mechanism) {
      this.send(504, `5.5.4 Unrecognized authentication type (use ${MECHANISMS.join(', ')})`);
      return done();
    }
    let initial: Buffer | null = null;
    if (args.length) {
      const decoded = decodeResponse(args[0]!, true);
      if (decoded === 'abort') return abort(this, done);
      if (decoded === null) return badBase64(this, done);
      initial = decoded;
    }
    step(this, policy, mechanism, mechanism.start(initial), done);
  };
  proto[MARK] = true;
}

function abort(conn: Connection, done: Done): void {
  conn.send(501, '5.7.0 Authentication aborted');
  done();
}

function badBase64(conn: Connection, done: Done): void {
  conn.send(501, '5.5.2 Cannot decode response (expected base64)');
  done();
}

function step(conn: Connection, policy: SmtpAuthPolicy, mechanism: SaslMechanism, pending: SaslStep | Promise<SaslStep>, done: Done): void {
  Promise.resolve(pending)
    .then(
      (result) => handle(conn, policy, mechanism, result, done),
      () => {
        conn.send(454, '4.7.0 Temporary authentication failure, try again later');
        done();
      },
    )
    // Never an unhandled rejection (it would end the process): a reply that cannot be sent means the client is gone.
    .catch(() => undefined);
}

/** Ends the exchange with the verdict: 235, 535 5.7.8, or 421 for a banned client. */
function finish(conn: Connection, account: Outcome, done: Done): void {
  if (conn._closed) return done();
  if (account === 'banned') conn.send(421, '4.7.0 Your address is temporarily blocked after too many failed logins');
  else if (account) {
    conn.session.user = account.email;
    (conn.session as SMTPServerSession & { account?: unknown }).account = account;
    conn.session.transmissionType = conn._transmissionType();
    conn.send(235, 'Authentication successful');
  } else conn.send(535, '5.7.8 Authentication credentials invalid');
  done();
}

const tempFail = (conn: Connection, done: Done) => () => {
  conn.send(454, '4.7.0 Temporary authentication failure, try again later');
  done();
};

function handle(conn: Connection, policy: SmtpAuthPolicy, mechanism: SaslMechanism, result: SaslStep, done: Done): void {
  switch (result.kind) {
    case 'challenge':
      conn._nextHandler = (line, next) => {
        const decoded = decodeResponse(line.toString('latin1'));
        if (decoded === 'abort') return abort(conn, next);
        if (decoded === null) return badBase64(conn, next);
        step(conn, policy, mechanism, mechanism.next(decoded), next);
      };
      conn.send(334, result.data.toString('base64'));
      return done();
    case 'error':
      conn.send(501, `5.5.2 ${result.message}`);
      return done();
    case 'credentials':
      if (result.authzid && result.authzid.toLowerCase() !== result.username.toLowerCase()) {
        // Acting for another user (RFC 4616 authzid) is not supported.
        conn.send(535, '5.7.8 Authorization identity not permitted');
        return done();
      }
      policy.login({ username: result.username, password: result.password }, conn.session).then((account) => finish(conn, account, done), tempFail(conn, done));
      return;
    case 'verified':
      policy.scramOutcome(result.username, result.ok, conn.session).then((account) => {
        if (!account || account === 'banned' || !result.final) return finish(conn, account, done);
        // RFC 5802 §5 over RFC 4954: the server-final message is a last challenge; the client answers it empty.
        conn._nextHandler = (line, next) => {
          const decoded = decodeResponse(line.toString('latin1'));
          if (decoded === 'abort') return abort(conn, next);
          if (decoded === null || decoded.length) {
            conn.send(501, '5.5.2 Expected an empty response');
            return next();
          }
          finish(conn, account, next);
        };
        conn.send(334, result.final.toString('base64'));
        done();
      }, tempFail(conn, done));
  }
}
