import fs from 'node:fs';
import path from 'node:path';
import type { SMTPServer } from 'smtp-server';
import type { Config } from './config/schema.ts';
import { splitHostPort } from './config/load.ts';
import { createLogger } from './log/logger.ts';
import { openStoresFromConfig, type Stores } from './store/open.ts';
import { backfillSearch } from './core/search-backfill.ts';
import { StartupError } from './core/errors.ts';
import { createDirectory } from './directory/create.ts';
import { Ingest } from './core/ingest.ts';
import type { Context } from './core/context.ts';
import { createTlsProvider } from './net/certificates.ts';
import { listenNet } from './net/listen.ts';
import { AcmeChallenges, AcmeManager } from './net/acme.ts';
import { startWebListeners, type WebListeners } from './net/acme-listeners.ts';
import { Authenticator } from './auth/authenticator.ts';
import { BanGuard, type BanNotice } from './auth/bans.ts';
import { ConnectionGuard } from './net/connection-guard.ts';
import { sendSystemMessage } from './core/notify.ts';
import { createSmtpServer, listen } from './smtp/server.ts';
import { createImapServer, type ImapServer } from './imap/server.ts';
import { createPop3Server } from './pop3/server.ts';
import { MaildropLocks } from './pop3/lock.ts';
import { ImapWorkers, createImapDispatcher, imapProcesses } from './imap/workers.ts';
import type { Logger } from 'pino';
import { systemResolver, type DnsResolver } from './net/dns.ts';
import { DeliveryAgent, nodeId } from './queue/agent.ts';
import { DkimSigner } from './queue/dkim.ts';
import { BayesTrainer, bayesLearning } from './policy/content/trainer.ts';
import { removeStaleHeldFiles } from './policy/content/held-message.ts';

export interface RunningServer {
  ctx: Context;
  /** What listens where, for the start-up banner and tests. */
  endpoints: Array<{ service: string; address: string }>;
  /** ACME certificates (tls.acme), or null when off. */
  acme: AcmeManager | null;
  /** The outbound delivery agent, or null when off. */
  agent: DeliveryAgent | null;
  /** The IMAP worker processes (imap.processes), or null when sessions run in this process. */
  imapWorkers: ImapWorkers | null;
  /**
   * Applies a re-read configuration (SIGHUP): the keys in RELOADABLE take effect for new
   * connections; the others are reported as needing a restart and left as they were.
   */
  reload(next: Config): { applied: string[]; restart: string[] };
  stop(): Promise<void>;
}

/** Top-level config keys a running server takes over on reload. */
export const RELOADABLE = ['policy', 'dns'] as const;

/**
 * Builds the context (stores, directory, ingest) from a config. Used by `serve`, tests and the
 * IMAP worker processes (`worker`: the main process already created the domains and filled the
 * search index).
 */
export async function createContext(config: Config, log?: Logger, opts: { worker?: boolean; resolver?: DnsResolver } = {}): Promise<{ ctx: Context; stores: Stores }> {
  const logger = log ?? createLogger(config.log);
  const stores = await openStoresFromConfig(config, {
    writerThread: true,
    onPubSubError: (err) => logger.warn({ err }, 'change notifications between nodes interrupted (PostgreSQL LISTEN); reconnecting'),
  });
  const pubsub = stores.pubsub;
  const now = () => Date.now();
  // [directory] backend: the store, or LDAP (users, aliases, groups; nothing connects before the first lookup).
  const directory = createDirectory(config, stores.data, logger, now);
  const bans = new BanGuard(stores.data, config.bans, logger, (n) => notifyBan(ctx, n), now);
  const ctx: Context = {
    config,
    log: logger,
    data: stores.data,
    blobs: stores.blobs,
    pubsub,
    directory,
    ingest: new Ingest(stores.data, stores.blobs, pubsub, logger),
    security: {
      bans,
      auth: new Authenticator(stores.data, config.auth, bans, logger, undefined, directory),
      connections: new ConnectionGuard(
        bans,
        { maxPerIp: config.smtp.max_connections_per_ip, ratePerWindow: config.smtp.connection_rate_limit, windowMs: config.smtp.connection_rate_window },
        now,
      ),
    },
    now,
    dns: opts.resolver ?? systemResolver(config.dns.servers, config.dns.timeout),
  };
  if (!opts.worker) {
    for (const d of config.domains) await stores.data.ensureDomain(d);
    await backfillSearch(stores.data, stores.blobs, logger);
  }
  return { ctx, stores };
}

/** Tells the administrator (bans.notify, default postmaster@ the first domain) about a new ban. */
async function notifyBan(ctx: Context, n: BanNotice): Promise<void> {
  const to = ctx.config.bans.notify ?? `postmaster@${(await ctx.data.listDomains())[0] ?? ctx.config.hostname}`;
  if (!to) return;
  const until = new Date(n.until).toISOString();
  const body = [
    `Postern banned ${n.key} until ${until}${n.repeat ? ' (banned before: repeat offenders get bans.repeat_ban_time)' : ''}.`,
    '',
    `  address:         ${n.address}`,
    `  protocol:        ${n.protocol}`,
    `  failed logins:   ${n.failures} within bans.find_time`,
    `  usernames tried: ${n.usernames.length ? n.usernames.join(', ') : '(none)'}`,
    '',
    'Connections from it are refused on every port until then.',
    `To lift the ban: postern ban del ${n.key.replace(/\/64$/, '')}`,
    'Networks that must never be banned go in bans.trusted_networks.',
    '',
  ].join('\n');
  const where = await sendSystemMessage(ctx, to, `[Postern] ${n.key} banned after ${n.failures} failed logins (${n.protocol})`, body);
  if (where === 'unknown') {
    ctx.log.warn({ to }, `ban notice not delivered: nobody receives ${to}; add it (postern alias add ${to} you@domain) or set bans.notify`);
  }
}

export interface ServerOptions {
  /** DNS for every lookup (MX routing, policy checks; tests pass their own); default: [dns] servers, else the system resolver. */
  resolver?: DnsResolver;
  /** Run the outbound delivery agent (default true; a test of the queue tools turns it off). */
  delivery?: boolean;
}

export async function startServer(config: Config, log?: Logger, opts: ServerOptions = {}): Promise<RunningServer> {
  // loadConfig resolves it already; a config built in code (tests, benchmarks) may not have.
  config.dkim.directory = path.resolve(config.data_dir, config.dkim.directory);
  const { ctx, stores } = await createContext(config, log, { resolver: opts.resolver });
  let tls;
  try {
    tls = await createTlsProvider(config, ctx.log);
  } catch (err) {
    await stores.close();
    throw err;
  }
  removeStaleHeldFiles(path.join(config.data_dir, 'tmp'));
  const servers: SMTPServer[] = [];
  const netServers: ImapServer[] = [];
  // Created before ACME, which hands them its certificates; started with the IMAP listeners.
  const processes = config.listen.imap || config.listen.imaps ? imapProcesses(config) : 0;
  const imapWorkers = processes > 0 ? new ImapWorkers(ctx, processes) : null;
  const endpoints: RunningServer['endpoints'] = [];
  let web: WebListeners | null = null;
  let acme: AcmeManager | null = null;
  try {
    const challenges = new AcmeChallenges();
    if (config.listen.http || config.listen.https) {
      web = await startWebListeners(config, ctx.log, tls, challenges);
      endpoints.push(...web.endpoints);
    }
    if (config.tls.acme.enabled) {
      acme = new AcmeManager(config, ctx.log, challenges, (c) => {
        tls.addCertificate('tls.acme', c.certPath, c.keyPath, c.hosts);
        imapWorkers?.addCertificate('tls.acme', c.certPath, c.keyPath, c.hosts);
      });
      acme.start();
    }
    const tcp = [
      ['smtp', config.listen.smtp, 'mx'],
      ['submission', config.listen.submission, 'submission'],
      ['submissions', config.listen.submissions, 'submissions'],
      ['lmtp', config.listen.lmtp, 'lmtp'],
    ] as const;
    for (const [service, addr, mode] of tcp) {
      if (!addr) continue;
      const server = createSmtpServer(ctx, mode, { ...tls.defaultMaterial(), SNICallback: tls.sniCallback });
      // A renewed default certificate replaces smtp-server's default context (SNI ones are looked up per handshake).
      tls.onChange(() => server.updateSecureContext(tls.defaultMaterial()));
      try {
        await listen(server, splitHostPort(addr));
      } catch (err) {
        throw new StartupError(`cannot listen for ${service} on ${addr} (config key listen.${service}): ${(err as Error).message}`);
      }
      // After listen: a failed listen is reported once, by the error above.
      server.on('error', (err) => ctx.log.error({ err, service }, 'listener error'));
      servers.push(server);
      const bound = (server as unknown as { server: import('node:net').Server }).server.address();
      const port = bound && typeof bound === 'object' ? bound.port : splitHostPort(addr).port;
      endpoints.push({ service, address: `${splitHostPort(addr).host.includes(':') ? `[${splitHostPort(addr).host}]` : splitHostPort(addr).host}:${port}` });
    }
    await imapWorkers?.start();
    for (const mode of ['imap', 'imaps'] as const) {
      const addr = config.listen[mode];
      if (!addr) continue;
      const server = imapWorkers ? createImapDispatcher(ctx, mode, imapWorkers, tls) : createImapServer(ctx, mode, tls);
      endpoints.push(await listenNet(server, mode, addr, ctx.log));
      netServers.push(server);
    }
    // POP3 (RFC 1939) in this process; both listeners share the IN-USE lock (src/pop3/lock.ts).
    const pop3Locks = new MaildropLocks(ctx);
    for (const mode of ['pop3', 'pop3s'] as const) {
      const addr = config.listen[mode];
      if (!addr) continue;
      const server = createPop3Server(ctx, mode, tls, pop3Locks);
      endpoints.push(await listenNet(server, mode, addr, ctx.log));
      // Closed with the IMAP listeners on stop (close(), then closeSessions()).
      netServers.push(server);
    }
    if (config.listen.local) {
      const server = createSmtpServer(ctx, 'local', null);
      try {
        await listen(server, { path: config.listen.local });
      } catch (err) {
        throw new StartupError(`cannot listen for local submission on ${config.listen.local} (config key listen.local): ${(err as Error).message}`);
      }
      server.on('error', (err) => ctx.log.error({ err, service: 'local' }, 'listener error'));
      servers.push(server);
      endpoints.push({ service: 'local', address: config.listen.local });
    }
  } catch (err) {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const s of netServers) s.close();
    await imapWorkers?.stop();
    acme?.stop();
    await web?.close();
    tls.close();
    await ctx.directory.close();
    await stores.close();
    throw err;
  }
  fs.writeFileSync(`${config.data_dir}/postern.pid`, String(process.pid));
  let agent: DeliveryAgent | null = null;
  if (opts.delivery !== false) {
    agent = new DeliveryAgent(ctx, ctx.dns, new DkimSigner(config.dkim.directory, ctx.log, { enabled: config.dkim.sign }), nodeId(config.data_dir));
    await agent.start();
  }
  // Expired counters, bans and failure records (policy_state) are dropped every 10 minutes.
  const housekeeping = setInterval(() => {
    ctx.data.purgeExpiredState().catch((err: unknown) => ctx.log.warn({ err }, 'could not purge expired policy state'));
  }, 600_000);
  housekeeping.unref();
  // The builtin spam filter learns from users' moves into and out of Junk (issue #9).
  const trainer = new BayesTrainer({ data: ctx.data, blobs: ctx.blobs, log: ctx.log, maxSize: config.policy.spam.max_size, active: () => bayesLearning(ctx.config) });
  trainer.start();
  return {
    ctx,
    endpoints,
    acme,
    agent,
    imapWorkers,
    reload(next) {
      const applied: string[] = [];
      const restart: string[] = [];
      const cur = config as unknown as Record<string, unknown>;
      const nxt = next as unknown as Record<string, unknown>;
      for (const key of Object.keys(nxt)) {
        if (JSON.stringify(cur[key]) === JSON.stringify(nxt[key])) continue;
        if ((RELOADABLE as readonly string[]).includes(key)) {
          // A new object: the policy rebuilds what it derived from the old one (src/policy/inbound.ts).
          cur[key] = nxt[key];
          applied.push(key);
        } else restart.push(key);
      }
      if (applied.includes('dns') && !opts.resolver) ctx.dns = systemResolver(config.dns.servers, config.dns.timeout);
      return { applied, restart };
    },
    async stop() {
      clearInterval(housekeeping);
      await trainer.stop();
      await agent?.stop();
      for (const s of netServers) {
        s.close();
        s.closeSessions();
      }
      await imapWorkers?.stop();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
      acme?.stop();
      await web?.close();
      tls.close();
      if (config.listen.local) fs.rmSync(config.listen.local, { force: true });
      fs.rmSync(`${config.data_dir}/postern.pid`, { force: true });
      await ctx.directory.close();
      await stores.close();
    },
  };
}
