import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Context } from '../core/context.ts';
import { TLS_MIN_VERSION } from '../net/tls.ts';
import { isLoopback } from '../net/ip.ts';
import { LineEndingNormalizer } from './line-endings.ts';
import { newQueueId, rfc5322Date, traceHeaders } from './received.ts';
import { overQuota } from '../core/quota.ts';
import { InboundPolicy, type PolicyConnection } from '../policy/inbound.ts';
import { HeldMessage } from '../policy/content/held-message.ts';
import { runDataStage } from '../policy/content/data-stage.ts';
import { stripForgedFields, tagSubject } from '../policy/content/header-edit.ts';
import { R, SmtpReplyError } from './replies.ts';
import { useOwnEnhancedCodes } from './enhanced-codes.ts';
import { useConfigurableGreetDelay } from './greet-delay.ts';
import { useSharedSaslAuth, type SmtpAuthPolicy } from './auth-command.ts';
import { ErrorCounter } from './limits.ts';
import { HeaderSection, headerFields } from './header-section.ts';
import { headerAddresses, ownsAddress, type SubmittingAccount } from './sender-rules.ts';
import { useProxyProtocol } from './proxy-listener.ts';
import { TrustedProxies } from '../net/proxy-protocol.ts';
import type { Resolution } from '../directory/directory.ts';
import { DirectoryUnavailableError } from '../directory/errors.ts';
import type { RecipientDsn } from '../store/data-store.ts';
import { sendDsn, withoutReturnPath } from '../queue/bounce.ts';

/**
 * One SMTP session engine (smtp-server) for five front doors:
 * - "mx": port 25, mail for local recipients; relay only after AUTH (inside TLS).
 * - "submission": port 587 (RFC 6409) with STARTTLS; AUTH required before MAIL.
 * - "submissions": port 465, the same over implicit TLS (RFC 8314 §3.3).
 * - "lmtp": RFC 2033, one reply per recipient after DATA; local recipients only.
 * - "local": the unix socket used by postern-sendmail; trusted, may relay.
 * An authenticated session may relay anywhere but only send as addresses its user
 * owns (sender-rules.ts), within the per-user rate limit.
 */
export type SmtpMode = 'mx' | 'submission' | 'submissions' | 'lmtp' | 'local';

/** TLS for the listener: the default certificate, and SNI when more are configured. */
export interface SmtpTls {
  key: Buffer;
  cert: Buffer;
  SNICallback?: (servername: string, cb: (err: Error | null, ctx?: import('node:tls').SecureContext) => void) => void;
}

const SERVICE: Record<SmtpMode, string> = { mx: 'smtp', submission: 'submission', submissions: 'submissions', lmtp: 'lmtp', local: 'local' };

interface RcptState {
  resolution: Resolution;
}

interface SessionState {
  errors: ErrorCounter;
  queueId: string;
  /** Counted against the per-IP connection limit (released on close). */
  counted: boolean;
  /** The client left (possibly while its admission was still being checked). */
  closed?: boolean;
  /** MX port, untrusted client: its policy checks (DNSBL lookups started at connect). */
  policy?: PolicyConnection;
}

/**
 * The logged-in user: set by auth-command.ts with session.user. smtp-server clears
 * session.user on STARTTLS (RFC 3207 §4.2), so an account without it does not count.
 */
function loggedIn(session: SMTPServerSession): SubmittingAccount | undefined {
  return session.user ? (session as SMTPServerSession & { account?: SubmittingAccount }).account : undefined;
}

const state = new WeakMap<SMTPServerSession, SessionState>();

export function createSmtpServer(ctx: Context, mode: SmtpMode, tls: SmtpTls | null): SMTPServer {
  useOwnEnhancedCodes();
  useConfigurableGreetDelay();
  useSharedSaslAuth();
  const cfg = ctx.config.smtp;
  const guard = ctx.security.connections;
  const service = SERVICE[mode];
  const log = ctx.log.child({ service });
  const offersAuth = mode === 'mx' || mode === 'submission' || mode === 'submissions';
  const isSubmission = mode === 'submission' || mode === 'submissions';
  if (mode === 'submissions' && !tls) throw new Error('listen.submissions needs a TLS certificate');
  // Inbound checks (access lists, DNSBL) on the MX port: not for authenticated or trusted clients.
  const policy = mode === 'mx' ? new InboundPolicy(ctx) : null;

  const authPolicy: SmtpAuthPolicy = {
    // RFC 8314 §3 / RFC 4954 §4: passwords only inside TLS; loopback may be exempted (auth.allow_plaintext_loopback).
    allowed: (session, secure) => secure || (ctx.config.auth.allow_plaintext_loopback && isLoopback(session.remoteAddress)),
    login: async ({ username, password }, session) => {
      const r = await ctx.security.auth.login({ username, password, address: session.remoteAddress, protocol: service });
      return r.ok ? r.account : r.banned ? 'banned' : null;
    },
    scramSecret: (username) => ctx.security.auth.scramSecret(username),
    scramOutcome: async (username, ok, session) => {
      const r = await ctx.security.auth.scramOutcome({ username, address: session.remoteAddress, protocol: service }, ok);
      return r.ok ? r.account : r.banned ? 'banned' : null;
    },
  };

  const sessionState = (session: SMTPServerSession): SessionState => {
    let s = state.get(session);
    if (!s) {
      s = { errors: new ErrorCounter(cfg.soft_error_limit, cfg.hard_error_limit, cfg.error_delay), queueId: newQueueId(), counted: false };
      state.set(session, s);
    }
    return s;
  };

  /** Counts a rejected command; delays past the soft limit, 421 at the hard limit (Postfix smtpd_*_error_limit). */
  const reject = async (session: SMTPServerSession, err: SmtpReplyError): Promise<SmtpReplyError> => {
    const s = sessionState(session);
    const verdict = s.errors.count();
    if (verdict === 'close') return new SmtpReplyError(R.TOO_MANY_ERRORS);
    if (verdict === 'delay') await new Promise((r) => setTimeout(r, s.errors.delayMs));
    return err;
  };

  const server = new SMTPServer({
    lmtp: mode === 'lmtp',
    name: ctx.config.hostname,
    banner: 'Postern',
    size: cfg.max_message_size,
    rejectOversized: true,
    hideSize: false,
    hideENHANCEDSTATUSCODES: false,
    // RFC 3461: NOTIFY/ORCPT/RET/ENVID are kept with queued recipients and passed on.
    hideDSN: false,
    hidePIPELINING: false,
    hide8BITMIME: false,
    hideSMTPUTF8: false,
    hideSTARTTLS: mode === 'local' || mode === 'submissions' || !tls,
    secure: mode === 'submissions',
    key: tls?.key,
    cert: tls?.cert,
    ...(tls?.SNICallback ? { SNICallback: tls.SNICallback } : {}),
    minVersion: TLS_MIN_VERSION,
    authOptional: true,
    // Without SCRAM-SHA-256 when LDAP checks passwords (Authenticator.mechanisms).
    authMethods: [...ctx.security.auth.mechanisms],
    disabledCommands: offersAuth ? [] : ['AUTH'],
    // Read by auth-command.ts (not an smtp-server option).
    ...(offersAuth ? ({ posternAuth: authPolicy } as object) : {}),
    disableReverseLookup: true,
    // Read by greet-delay.ts (not an smtp-server option): only the MX port waits for early talkers.
    ...({ greetDelay: mode === 'mx' ? cfg.greet_delay : 0 } as object),
    // Read by greet-delay.ts: pregreet detection (postscreen's PREGREET) goes into the mail log.
    ...({
      onEarlyTalker: (address: string, command: string) =>
        log.warn({ client: address, command: command.slice(0, 64).replace(/[^\x20-\x7e]/g, '?') }, 'early talker rejected: a command before the greeting (421; smtp.greet_delay)'),
    } as object),
    maxClients: cfg.max_connections,
    maxRecipients: cfg.max_recipients,
    maxCommandLength: cfg.max_command_line - 2,
    socketTimeout: cfg.idle_timeout,
    closeTimeout: 5000,
    logger: false,
    onConnect(session, cb) {
      const ip = session.remoteAddress || 'local';
      if (mode === 'local') {
        log.info({ client: ip, session: session.id }, 'connect');
        return cb();
      }
      guard.admit(ip).then(
        (admission) => {
          if (!admission.ok) {
            log.warn({ client: ip, reason: admission.reason }, 'connection refused');
            const reply = admission.reason === 'banned' ? R.BANNED : admission.reason === 'rate' ? R.CONNECTION_RATE : R.TOO_MANY_CONNECTIONS;
            return cb(new SmtpReplyError(reply));
          }
          const st = sessionState(session);
          // Gone while the ban lookup ran: onClose had nothing to release yet, so release here.
          if (st.closed) return guard.release(ip);
          st.counted = true;
          if (policy && !policy.trusts(ip)) st.policy = policy.connection(ip);
          log.info({ client: ip, session: session.id }, 'connect');
          cb();
        },
        (err: unknown) => {
          log.error({ err, client: ip }, 'connection check failed');
          cb(new SmtpReplyError(R.SERVICE_TEMPFAIL));
        },
      );
    },
    onClose(session) {
      const ip = session.remoteAddress || 'local';
      const st = sessionState(session);
      st.closed = true;
      if (st.counted) guard.release(ip);
      log.info({ client: ip, session: session.id, transactions: session.transaction - 1 }, 'disconnect');
    },
    onMailFrom(address: SMTPServerAddress, session, cb) {
      // RFC 1870 §6: refuse a declared size over the limit at MAIL already.
      const args = address.args as Record<string, string> | false | undefined;
      const declared = Number((args && args['SIZE']) || 0);
      if (declared > cfg.max_message_size) {
        void reject(session, new SmtpReplyError(R.SIZE_AT_MAIL)).then((e) => cb(e));
        return;
      }
      const account = loggedIn(session);
      if (isSubmission && !account) {
        // RFC 4954 §6 / RFC 6409 §4.3: the submission ports take mail only from authenticated users.
        void reject(session, new SmtpReplyError(R.AUTH_REQUIRED)).then((e) => cb(e));
        return;
      }
      const checked = account ? ownsAddress(ctx, account, address.address) : Promise.resolve(true);
      checked.then(
        (owned) => {
          if (!owned) {
            log.warn({ client: session.remoteAddress, user: account?.email, from: address.address }, 'sender address rejected: not owned by the user');
            void reject(session, SmtpReplyError.withText(R.SENDER_NOT_OWNED, `<${address.address}>: Sender address rejected: not owned by user ${account?.email}`)).then((e) => cb(e));
            return;
          }
          sessionState(session).queueId = newQueueId();
          cb();
        },
        (err: unknown) => {
          // An unreachable directory is logged by the directory, once per period.
          if (err instanceof DirectoryUnavailableError) return cb(new SmtpReplyError(R.DIRECTORY_UNAVAILABLE));
          log.error({ err }, 'sender lookup failed');
          cb(new SmtpReplyError(R.DIRECTORY_TEMPFAIL));
        },
      );
    },
    onRcptTo(address: SMTPServerAddress, session, cb) {
      void handleRcpt(address, session).then(
        () => cb(),
        async (err: unknown) => {
          // LDAP down or timing out: 451 4.4.3, never "unknown user" (the directory logs it once per period).
          const e =
            err instanceof SmtpReplyError
              ? err
              : err instanceof DirectoryUnavailableError
                ? new SmtpReplyError(R.DIRECTORY_UNAVAILABLE)
                : (log.error({ err }, 'recipient lookup failed'), new SmtpReplyError(R.DIRECTORY_TEMPFAIL));
          log.info({ client: session.remoteAddress, queue: sessionState(session).queueId, from: session.envelope.mailFrom && session.envelope.mailFrom.address, to: address.address, status: 'reject', reason: e.message }, 'recipient rejected');
          cb(await reject(session, e));
        },
      );
    },
    onData(stream, session, cb) {
      handleData(stream, session).then(
        (reply) => cb(null, reply),
        (err: unknown) => {
          if (err instanceof SmtpReplyError) cb(err);
          else {
            log.error({ err, queue: sessionState(session).queueId }, 'storing the message failed');
            cb(new SmtpReplyError(R.STORE_TEMPFAIL));
          }
        },
      );
    },
  });

  // Behind a TCP load balancer: the client's address comes from its PROXY header (listen.proxy_protocol).
  if (mode !== 'local' && ctx.config.listen.proxy_protocol.length) {
    useProxyProtocol(server, new TrustedProxies(ctx.config.listen.proxy_protocol), log);
  }

  async function handleRcpt(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const addr = address.address;
    // RFC 5321 §4.1.3: the domain must be a plain name; "u@remote@local" and the like never relay.
    const at = addr.lastIndexOf('@');
    if (at <= 0 || at === addr.length - 1) throw new SmtpReplyError(R.BAD_DESTINATION, `<${addr}>`);
    const account = loggedIn(session);
    await checkSendRate(session, account);
    const resolution = await ctx.directory.resolve(addr);
    if (resolution.kind === 'non-local') {
      // policy.trusted_networks may relay (Postfix permit_mynetworks); nobody else without AUTH.
      if (mode === 'local' || account || (policy && policy.trusts(session.remoteAddress))) {
        (address as SMTPServerAddress & RcptState).resolution = { kind: 'deliver', accounts: [], remote: [addr.toLowerCase()] };
        return;
      }
      throw new SmtpReplyError(mode === 'lmtp' ? R.NO_LOCAL_RCPT_LMTP : R.RELAY_DENIED, `<${addr}>`);
    }
    if (resolution.kind === 'unknown' || (resolution.accounts.length === 0 && resolution.remote.length === 0)) {
      throw new SmtpReplyError(R.UNKNOWN_USER, `<${addr}>`);
    }
    if (resolution.remote.length && mode === 'lmtp') {
      // LMTP hands over the final delivery; forwarding is the MTA's job.
      if (!resolution.accounts.length) throw new SmtpReplyError(R.NO_LOCAL_RCPT_LMTP, `<${addr}>`);
    }
    // Quota (accounts.quota_bytes, also reported over IMAP, RFC 9208): a user's own address or an
    // alias of one user is refused while the mailbox is full, counting the size the client
    // declared (RFC 1870). A group's members are not checked one by one: the group is not refused
    // for one member's full mailbox.
    if (resolution.accounts.length === 1 && !resolution.remote.length) {
      const args = session.envelope.mailFrom ? (session.envelope.mailFrom.args as Record<string, string> | false | undefined) : undefined;
      const declared = Number((args && args['SIZE']) || 0) || 0;
      const q = await overQuota(ctx.data, resolution.accounts[0]!.id, declared);
      if (q) {
        log.warn({ to: addr, used: q.bytes, limit: q.limitBytes, declared }, 'recipient mailbox full');
        throw new SmtpReplyError(R.MAILBOX_FULL, `<${addr}>`);
      }
    }
    // Inbound checks (src/policy/inbound.ts), for known local recipients: their own rules apply.
    const checks = sessionState(session).policy;
    if (checks && !account) {
      const from = session.envelope.mailFrom ? session.envelope.mailFrom.address.toLowerCase() : '';
      const { verdict, results } = await checks.rcpt({ ip: session.remoteAddress, helo: session.hostNameAppearsAs, from, to: addr.toLowerCase(), users: resolution.accounts.map((a) => a.email) });
      // The mail log says why: every check that ran, with its reason.
      if (results.some((r) => r.verdict.reason)) {
        log.info({ client: session.remoteAddress, from, to: addr, decision: verdict.kind, checks: results.map((r) => `${r.check}: ${r.verdict.kind}${r.verdict.reason ? ` (${r.verdict.reason})` : ''}`) }, 'policy');
      }
      if (verdict.kind === 'reject' || verdict.kind === 'tempfail' || verdict.kind === 'disconnect') {
        throw new SmtpReplyError({ code: verdict.reply.code, text: `${verdict.reply.enhanced} ${verdict.reply.text}` });
      }
    }
    (address as SMTPServerAddress & RcptState).resolution = resolution;
  }

  /**
   * Per-user send rate (submission.rate_limit recipients per rate_window), against
   * compromised accounts and runaway scripts; local submissions count per envelope
   * sender. Counted in the store, so the limit holds across nodes.
   */
  async function checkSendRate(session: SMTPServerSession, account: SubmittingAccount | undefined): Promise<void> {
    const limit = ctx.config.submission.rate_limit;
    if (!limit || (!account && mode !== 'local')) return;
    const who = account ? account.email : (session.envelope.mailFrom ? session.envelope.mailFrom.address : '').toLowerCase() || '<>';
    const n = await ctx.data.bumpCounter('sendrate', who, ctx.config.submission.rate_window);
    if (n > limit) {
      log.warn({ client: session.remoteAddress || 'local', sender: who, recipients: n, limit }, 'send rate limit exceeded');
      throw new SmtpReplyError(R.RATE_LIMITED, `${who} may send to ${limit} recipients per ${Math.round(ctx.config.submission.rate_window / 60_000)} minutes`);
    }
  }

  /**
   * For mail from an authenticated user, once the header section has arrived: every
   * From/Sender address must be theirs (else 553 5.7.1), and a missing From, Date or
   * Message-ID is added (RFC 6409 §8). Returns the fields to add.
   */
  async function completeSubmittedHeader(header: Buffer, account: SubmittingAccount, queueId: string): Promise<Buffer | SmtpReplyError> {
    const fields = headerFields(header);
    const from = fields.get('from') ?? [];
    const claimed = [...from, ...(fields.get('sender') ?? [])].flatMap(headerAddresses);
    if (from.length && !claimed.length) return SmtpReplyError.withText(R.SENDER_NOT_OWNED, 'Message rejected: the From header has no address');
    for (const a of claimed) {
      if (!(await ownsAddress(ctx, account, a))) {
        log.warn({ user: account.email, header_from: a, queue: queueId }, 'message rejected: From not owned by the user');
        return SmtpReplyError.withText(R.SENDER_NOT_OWNED, `Message rejected: From <${a}> is not owned by user ${account.email}`);
      }
    }
    let added = '';
    if (!from.length) added += `From: <${account.email}>\r\n`;
    if (!fields.has('date')) added += `Date: ${rfc5322Date(new Date(ctx.now()))}\r\n`;
    if (!fields.has('message-id')) added += `Message-ID: <${queueId}.${Math.random().toString(36).slice(2, 10)}@${ctx.config.hostname}>\r\n`;
    return Buffer.from(added, 'utf8');
  }

  /** NOTIFY/ORCPT the client gave for a recipient (RFC 3461 §4.1, §4.2), if any. */
  function recipientDsn(r: SMTPServerAddress): RecipientDsn | null {
    const d = (r as SMTPServerAddress & { dsn?: { notify?: string[]; orcpt?: string } }).dsn;
    if (!d || (!d.notify && !d.orcpt)) return null;
    return { notify: d.notify ? d.notify.join(',') : null, orcpt: d.orcpt ?? null };
  }

  async function handleData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string | Array<string | Error>> {
    const s = sessionState(session);
    const account = loggedIn(session);
    const rcpts = session.envelope.rcptTo as Array<SMTPServerAddress & RcptState>;
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const sink = ctx.ingest.begin();
    const started = ctx.now();
    try {
      // RFC 3848: ESMTPA / ESMTPSA for authenticated sessions.
      const protocol =
        mode === 'lmtp'
          ? session.secure ? 'LMTPS' : 'LMTP'
          : session.openingCommand === 'HELO' ? 'SMTP' : `ESMTP${session.secure ? 'S' : ''}${account ? 'A' : ''}`;
      const hideClient = !!account && ctx.config.submission.hide_client_ip;
      const trace = traceHeaders({
          returnPath: mailFrom,
          helo: hideClient ? null : session.hostNameAppearsAs,
          clientHostname: session.clientHostname,
          clientAddress: mode === 'local' ? '127.0.0.1' : session.remoteAddress,
          hostname: ctx.config.hostname,
          protocol: mode === 'local' ? 'local' : protocol,
          queueId: s.queueId,
          recipient: rcpts.length === 1 ? rcpts[0]!.address : null,
          tls: session.secure ? 'TLS' : null,
          date: new Date(started),
        });
      // Inbound mail on the MX port (untrusted, unauthenticated) goes through the DATA stage of the
      // policy (SPF/DKIM/DMARC, content score), which must see all of it before a byte is stored.
      let toJunk = false;
      if (s.policy && !account) toJunk = await receiveChecked(stream, session, s.policy, trace, sink, rcpts, mailFrom);
      else {
        await sink.write(trace);
        const refused = await pump(stream, sink, account ? (header) => completeSubmittedHeader(header, account, s.queueId) : null);
        if (refused && !stream.sizeExceeded) {
          await sink.abort();
          throw refused;
        }
        if (stream.sizeExceeded) throw sizeRefused(session);
      }
      const index = await sink.index();
      // Our own Received header is the first one; the rest came with the message.
      if (index.receivedCount - 1 > ctx.config.smtp.max_received_headers) {
        await sink.abort();
        log.info({ queue: s.queueId, client: session.remoteAddress, from: mailFrom, status: 'reject', reason: 'loop', received: index.receivedCount - 1 }, 'message rejected');
        throw new SmtpReplyError(R.LOOP);
      }
      const accounts = new Map<number, string>();
      const remote = new Set<string>();
      const dsn: Record<string, RecipientDsn> = {};
      for (const r of rcpts) {
        if (r.resolution.kind !== 'deliver') continue;
        for (const a of r.resolution.accounts) accounts.set(a.id, a.email);
        for (const x of r.resolution.remote) {
          remote.add(x);
          const given = recipientDsn(r);
          // RFC 3461 §4.2: an alias expanded to another address keeps the original one as ORCPT.
          if (given || x !== r.address.toLowerCase()) dsn[x] = { notify: given?.notify ?? null, orcpt: given?.orcpt ?? `rfc822;${r.address}` };
        }
      }
      const envDsn = session.envelope.dsn;
      const result = await sink.commit({
        deliveries: [...accounts.keys()].map((accountId) => ({ accountId, mailbox: toJunk ? 'Junk' : 'INBOX' })),
        queue: remote.size
          ? {
              queueId: s.queueId,
              sender: mailFrom,
              recipients: [...remote],
              ret: envDsn?.ret === 'FULL' || envDsn?.ret === 'HDRS' ? envDsn.ret : null,
              envid: envDsn?.envid ?? null,
              dsn,
              smtputf8: session.envelope.smtpUtf8 === true,
            }
          : null,
        internalDate: started,
      });
      log.info(
        {
          queue: s.queueId,
          client: session.remoteAddress || 'local',
          from: mailFrom,
          to: rcpts.map((r) => r.address),
          size: result.size,
          status: 'sent',
          delivered: [...accounts.values()],
          queued: [...remote],
          ms: ctx.now() - started,
        },
        'message accepted',
      );
      // RFC 3461 §5.2.2: NOTIFY=SUCCESS for a recipient delivered here gets a "delivered" notice.
      const wanted = mailFrom ? rcpts.filter((r) => r.resolution.kind === 'deliver' && r.resolution.accounts.length && /\bSUCCESS\b/.test(recipientDsn(r)?.notify ?? '')) : [];
      if (wanted.length) {
        const envDsn2 = session.envelope.dsn;
        void ctx.blobs
          .readAll(result.blobHash)
          .then((original) =>
            sendDsn(ctx, {
              queueId: s.queueId,
              to: mailFrom,
              arrival: new Date(started),
              now: new Date(ctx.now()),
              envid: envDsn2?.envid ?? null,
              recipients: wanted.map((r) => ({ recipient: r.address, originalRecipient: recipientDsn(r)?.orcpt ?? null, action: 'delivered' as const, status: '2.0.0' })),
              original: withoutReturnPath(original),
              ret: envDsn2?.ret === 'FULL' ? 'FULL' : 'HDRS',
            }),
          )
          .catch((err: unknown) => log.warn({ err, queue: s.queueId }, 'could not send the "delivered" notice (NOTIFY=SUCCESS)'));
      }
      const reply = `Ok: queued as ${s.queueId}`;
      return mode === 'lmtp' ? rcpts.map(() => reply) : reply;
    } catch (err) {
      await sink.abort();
      // Drain what is left so the session stays in sync.
      stream.resume();
      throw err;
    }
  }

  function sizeRefused(session: SMTPServerSession): SmtpReplyError {
    log.info({ queue: sessionState(session).queueId, client: session.remoteAddress, from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', status: 'reject', reason: 'size' }, 'message rejected');
    return new SmtpReplyError(R.SIZE_AT_DATA);
  }

  /**
   * DATA on the MX port: the message is held back (memory up to policy.spam.max_size, then a
   * file in data_dir/tmp) while SPF/DKIM/DMARC/ARC and the content filter look at it
   * (src/policy/content/data-stage.ts); then our trace fields, Authentication-Results and
   * X-Spam-* go in front of it, forged ones are dropped, a spam Subject is tagged, and it is
   * written to the sink. A refusal is thrown as the DATA reply (no bounce after acceptance).
   * Returns whether the message goes to Junk.
   */
  async function receiveChecked(
    stream: SMTPServerDataStream,
    session: SMTPServerSession,
    checks: PolicyConnection,
    trace: Buffer,
    sink: { write(b: Buffer): Promise<void> },
    rcpts: Array<SMTPServerAddress & RcptState>,
    mailFrom: string,
  ): Promise<boolean> {
    const spam = ctx.config.policy.spam;
    const held = new HeldMessage(path.join(ctx.config.data_dir, 'tmp'), spam.max_size);
    try {
      let header: Buffer = Buffer.alloc(0);
      await pump(stream, held, async (h) => {
        header = h;
        return Buffer.alloc(0);
      });
      if (stream.sizeExceeded) throw sizeRefused(session);
      await held.end();
      const recipients = [...new Set(rcpts.flatMap((r) => (r.resolution.kind === 'deliver' ? r.resolution.accounts.map((a) => a.email) : [])))];
      const outcome = await runDataStage(
        { config: ctx.config, dns: ctx.dns, filter: checks.filter, log },
        { message: () => held.stream(), buffer: held.buffer(), trace, ip: session.remoteAddress, helo: session.hostNameAppearsAs, from: mailFrom.toLowerCase(), recipients, dnsblHits: await checks.dnsblEvidence() },
      );
      // The mail log says why: every message on the MX port gets one line with the evidence.
      log.info(
        { queue: sessionState(session).queueId, client: session.remoteAddress, from: mailFrom, to: rcpts.map((r) => r.address), decision: outcome.decision, score: outcome.score ? Math.round(outcome.score.score * 10) / 10 : null, reasons: outcome.reasons },
        'content policy',
      );
      if (outcome.reject) throw new SmtpReplyError({ code: outcome.reject.code, text: `${outcome.reject.enhanced} ${outcome.reject.text}` });
      let fields = stripForgedFields(header, ctx.config.hostname);
      if (outcome.tagSubject) fields = tagSubject(fields, spam.subject_tag);
      await sink.write(trace);
      if (outcome.headers) await sink.write(Buffer.from(outcome.headers, 'latin1'));
      await sink.write(fields);
      for await (const chunk of held.stream(header.length)) await sink.write(chunk as Buffer);
      return outcome.junk;
    } finally {
      await held.discard();
    }
  }

  return server;
}

/**
 * Streams the DATA body into the sink with backpressure, normalising line endings.
 * With `onHeader`, the header section is held back until complete and passed to it
 * first: it returns fields to add in front, or a refusal — then the rest of the
 * message is read and dropped (the session stays in sync) and the refusal returned.
 */
async function pump(
  stream: Readable,
  sink: { write(b: Buffer): Promise<void> },
  onHeader: ((header: Buffer) => Promise<Buffer | SmtpReplyError>) | null,
): Promise<SmtpReplyError | null> {
  const norm = new LineEndingNormalizer();
  const peek = onHeader ? new HeaderSection() : null;
  let refused: SmtpReplyError | null = null;
  const release = async (parts: { header: Buffer; rest: Buffer }) => {
    const added = await onHeader!(parts.header);
    if (added instanceof SmtpReplyError) {
      refused = added;
      return;
    }
    for (const b of [added, parts.header, parts.rest]) if (b.length) await sink.write(b);
  };
  // Past the size limit (smtp.max_message_size) the rest is read and dropped, not stored:
  // smtp-server keeps passing the data on, and the reply will be 552 anyway.
  const tooBig = () => (stream as Readable & { sizeExceeded?: boolean }).sizeExceeded === true;
  const emit = async (b: Buffer) => {
    if (refused || !b.length || tooBig()) return;
    if (peek && !peek.done) {
      const parts = peek.push(b);
      if (parts) await release(parts);
      return;
    }
    await sink.write(b);
  };
  for await (const chunk of stream) await emit(norm.push(chunk as Buffer));
  await emit(norm.end());
  if (peek && !peek.done && !refused) await release(peek.finish());
  return refused;
}

/** Listens on "host:port" or a unix socket path. */
export function listen(server: SMTPServer, target: { host: string; port: number } | { path: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = () => {
      server.off('error', reject);
      resolve();
    };
    if ('path' in target) {
      try {
        fs.rmSync(target.path, { force: true });
      } catch {
        /* stale socket */
      }
      server.listen(target.path, () => {
        fs.chmodSync(target.path, 0o666);
        done();
      });
    } else server.listen(target.port, target.host, done);
  });
}
