import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Context } from '../core/context.ts';
import type { TlsMaterial } from '../net/tls.ts';
import { TLS_MIN_VERSION } from '../net/tls.ts';
import { LineEndingNormalizer } from './line-endings.ts';
import { newQueueId, traceHeaders } from './received.ts';
import { R, SmtpReplyError } from './replies.ts';
import { useOwnEnhancedCodes } from './enhanced-codes.ts';
import { useConfigurableGreetDelay } from './greet-delay.ts';
import { ConnectionLimiter, ErrorCounter } from './limits.ts';
import { useProxyProtocol } from './proxy-listener.ts';
import { TrustedProxies } from '../net/proxy-protocol.ts';
import type { Resolution } from '../directory/directory.ts';

/**
 * One SMTP session engine (smtp-server) for three front doors:
 * - "mx": port 25, mail for local recipients only; no relay.
 * - "lmtp": RFC 2033, one reply per recipient after DATA; local recipients only.
 * - "local": the unix socket used by postern-sendmail; trusted, may relay.
 */
export type SmtpMode = 'mx' | 'lmtp' | 'local';

interface RcptState {
  resolution: Resolution;
}

interface SessionState {
  errors: ErrorCounter;
  queueId: string;
  /** Counted against the per-IP connection limit (released on close). */
  counted: boolean;
}

const state = new WeakMap<SMTPServerSession, SessionState>();

export function createSmtpServer(ctx: Context, mode: SmtpMode, tls: TlsMaterial | null): SMTPServer {
  useOwnEnhancedCodes();
  useConfigurableGreetDelay();
  const cfg = ctx.config.smtp;
  const limiter = new ConnectionLimiter(cfg.max_connections_per_ip);
  const log = ctx.log.child({ service: mode === 'mx' ? 'smtp' : mode });

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
    hideDSN: true,
    hidePIPELINING: false,
    hide8BITMIME: false,
    hideSMTPUTF8: false,
    hideSTARTTLS: mode === 'local' || !tls,
    key: tls?.key,
    cert: tls?.cert,
    minVersion: TLS_MIN_VERSION,
    authOptional: true,
    disabledCommands: ['AUTH'],
    disableReverseLookup: true,
    // Read by greet-delay.ts (not an smtp-server option): only the MX port waits for early talkers.
    ...({ greetDelay: mode === 'mx' ? cfg.greet_delay : 0 } as object),
    maxClients: cfg.max_connections,
    maxRecipients: cfg.max_recipients,
    maxCommandLength: cfg.max_command_line - 2,
    socketTimeout: cfg.idle_timeout,
    closeTimeout: 5000,
    logger: false,
    onConnect(session, cb) {
      const ip = session.remoteAddress || 'local';
      if (mode !== 'local' && !limiter.acquire(ip)) {
        log.warn({ client: ip }, 'connection refused: too many connections from this address');
        return cb(new SmtpReplyError(R.TOO_MANY_CONNECTIONS));
      }
      sessionState(session).counted = mode !== 'local';
      log.info({ client: ip, session: session.id }, 'connect');
      cb();
    },
    onClose(session) {
      const ip = session.remoteAddress || 'local';
      if (state.get(session)?.counted) limiter.release(ip);
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
      sessionState(session).queueId = newQueueId();
      cb();
    },
    onRcptTo(address: SMTPServerAddress, session, cb) {
      void handleRcpt(address, session).then(
        () => cb(),
        async (err: unknown) => {
          const e = err instanceof SmtpReplyError ? err : (log.error({ err }, 'recipient lookup failed'), new SmtpReplyError(R.DIRECTORY_TEMPFAIL));
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
    const resolution = await ctx.directory.resolve(addr);
    if (resolution.kind === 'non-local') {
      if (mode === 'local') {
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
    (address as SMTPServerAddress & RcptState).resolution = resolution;
  }

  async function handleData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string | Array<string | Error>> {
    const s = sessionState(session);
    const rcpts = session.envelope.rcptTo as Array<SMTPServerAddress & RcptState>;
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const sink = ctx.ingest.begin();
    const started = ctx.now();
    try {
      const protocol =
        mode === 'lmtp' ? (session.secure ? 'LMTPS' : 'LMTP') : session.openingCommand === 'HELO' ? 'SMTP' : session.secure ? 'ESMTPS' : 'ESMTP';
      await sink.write(
        traceHeaders({
          returnPath: mailFrom,
          helo: session.hostNameAppearsAs,
          clientHostname: session.clientHostname,
          clientAddress: mode === 'local' ? '127.0.0.1' : session.remoteAddress,
          hostname: ctx.config.hostname,
          protocol: mode === 'local' ? 'local' : protocol,
          queueId: s.queueId,
          recipient: rcpts.length === 1 ? rcpts[0]!.address : null,
          tls: session.secure ? 'TLS' : null,
          date: new Date(started),
        }),
      );
      await pump(stream, sink);
      if (stream.sizeExceeded) {
        await sink.abort();
        log.info({ queue: s.queueId, client: session.remoteAddress, from: mailFrom, status: 'reject', reason: 'size' }, 'message rejected');
        throw new SmtpReplyError(R.SIZE_AT_DATA);
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
      for (const r of rcpts) {
        if (r.resolution.kind !== 'deliver') continue;
        for (const a of r.resolution.accounts) accounts.set(a.id, a.email);
        for (const x of r.resolution.remote) remote.add(x);
      }
      const result = await sink.commit({
        deliveries: [...accounts.keys()].map((accountId) => ({ accountId, mailbox: 'INBOX' })),
        queue: remote.size ? { queueId: s.queueId, sender: mailFrom, recipients: [...remote] } : null,
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
      const reply = `Ok: queued as ${s.queueId}`;
      return mode === 'lmtp' ? rcpts.map(() => reply) : reply;
    } catch (err) {
      await sink.abort();
      // Drain what is left so the session stays in sync.
      stream.resume();
      throw err;
    }
  }

  return server;
}

/** Streams the DATA body into the sink with backpressure, normalising line endings. */
async function pump(stream: Readable, sink: { write(b: Buffer): Promise<void> }): Promise<void> {
  const norm = new LineEndingNormalizer();
  for await (const chunk of stream) {
    await sink.write(norm.push(chunk as Buffer));
  }
  const tail = norm.end();
  if (tail.length) await sink.write(tail);
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
