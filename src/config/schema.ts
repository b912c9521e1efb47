import { z } from 'zod';
import { isAddressOrCidr } from '../net/proxy-protocol.ts';
import { directorySchema } from './directory.ts';

/**
 * The configuration file's schema. Every key is documented in docs/configuration.md;
 * keep the two in step. Defaults are the embedded development defaults
 * (loopback, standard port + 2000, ./data).
 */

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected "address:port", e.g. "127.0.0.1:2025" or "[::1]:2025"');

/** Durations as strings: "300s", "10m", "5d", or a bare number of seconds. Parsed to milliseconds. */
/** [policy.spam] when absent (the table's own defaults, written once for both places zod needs them). */
const SPAM_DEFAULTS = {
  enabled: true,
  tag: 5,
  reject: 15,
  subject_tag: '[SPAM]',
  filter: 'builtin' as const,
  spamd: '127.0.0.1:783',
  rspamd_url: 'http://127.0.0.1:11333',
  timeout: 15_000,
  max_size: 1024 * 1024,
  bayes: true,
  bayes_min_learned: 20,
};

/**
 * A list of DNS list zones: a zone name, or a table with `zone`, the `answers` that count and
 * the zone's number (`weight` for client blocklists, `score` for domain blocklists).
 */
function dnsZoneList<S extends z.ZodRawShape>(number: S) {
  return z
    .array(
      z.union([
        z.string().min(1),
        z
          .object({
            zone: z.string().min(1),
            ...number,
            answers: z.array(z.string().refine(isAddressOrCidr, 'expected an address or CIDR in 127.0.0.0/8')).default([]),
          })
          .strict(),
      ]),
    )
    .default([]);
}

export const duration = z.union([z.number().nonnegative(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v * 1000;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `expected a duration like "30s", "10m", "2h", "5d", got "${v}"` });
    return z.NEVER;
  }
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 's'] ?? 1000;
  return Math.round(Number(m[1]) * mult);
});

/** Sizes: bytes as a number, or strings like "25M", "512K", "1G" (binary units). */
export const size = z.union([z.number().int().positive(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  const m = /^(\d+)\s*([KMG]i?B?)?$/i.exec(v.trim());
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `expected a size like "25M" or a number of bytes, got "${v}"` });
    return z.NEVER;
  }
  const unit = (m[2] ?? '').charAt(0).toUpperCase();
  const mult = unit === 'K' ? 1024 : unit === 'M' ? 1024 ** 2 : unit === 'G' ? 1024 ** 3 : 1;
  return Number(m[1]) * mult;
});

/** [tls.acme] when absent (output units: ms). */
const ACME_DEFAULTS = {
  enabled: false,
  directory: 'https://acme-v02.api.letsencrypt.org/directory',
  accept_terms: false,
  hosts: [] as string[],
  challenge: 'http-01' as const,
  renew_before: 30 * 86_400_000,
};

export const configSchema = z
  .object({
    hostname: z.string().min(1).default('localhost'),
    data_dir: z.string().min(1).default('./data'),
    /** Domains created at start if missing (the development default serves "localhost"). */
    domains: z.array(z.string().min(1)).default([]),
    listen: z
      .object({
        smtp: hostPort.optional(),
        lmtp: hostPort.optional(),
        /** Message submission with STARTTLS, RFC 6409 (standard port 587). */
        submission: hostPort.optional(),
        /** Message submission over implicit TLS, RFC 8314 §3.3 (standard port 465). */
        submissions: hostPort.optional(),
        /** IMAP with STARTTLS, RFC 9051 (standard port 143). */
        imap: hostPort.optional(),
        /** IMAP over implicit TLS, RFC 8314 (standard port 993). */
        imaps: hostPort.optional(),
        /** POP3 with STLS, RFC 1939 / RFC 2595 (standard port 110). */
        pop3: hostPort.optional(),
        /** POP3 over implicit TLS, RFC 8314 (standard port 995). */
        pop3s: hostPort.optional(),
        /** Plain HTTP (standard port 80): today it answers ACME HTTP-01 challenges (tls.acme). */
        http: hostPort.optional(),
        /** HTTPS (standard port 443): today it answers ACME TLS-ALPN-01 challenges (tls.acme). */
        https: hostPort.optional(),
        /** Unix socket for local submission (postern-sendmail); relative paths are under data_dir. */
        local: z.string().min(1).optional(),
        /**
         * Load balancers (addresses or CIDRs) whose connections to smtp/lmtp must start with a
         * PROXY protocol v1/v2 header naming the real client; empty: PROXY protocol off.
         */
        proxy_protocol: z.array(z.string().refine(isAddressOrCidr, 'expected an IP address or CIDR, e.g. "10.0.0.0/8"')).default([]),
      })
      .strict()
      // zod 4 does not parse a default, so it must already hold the inner defaults.
      .default({ proxy_protocol: [] }),
    tls: z
      .object({
        /** The default certificate (PEM), presented when no [[tls.certificate]] names the requested host. */
        cert: z.string().optional(),
        key: z.string().optional(),
        /** More certificates, picked by SNI (RFC 6066 §3) from the client's requested host name. */
        certificate: z
          .array(
            z
              .object({
                cert: z.string().min(1),
                key: z.string().min(1),
                /** Host names this certificate serves; "*.example.org" matches one label. Empty: the names in the certificate. */
                hosts: z.array(z.string().min(1)).default([]),
              })
              .strict(),
          )
          .default([]),
        /** How often certificate files are checked for changes (reloaded without a restart). */
        reload_check: duration.default(30_000),
        acme: z
          .object({
            enabled: z.boolean().default(false),
            /** The ACME directory URL (RFC 8555 §7.1.1); Let's Encrypt by default. */
            directory: z.string().url().default('https://acme-v02.api.letsencrypt.org/directory'),
            /** Contact address for the CA account. */
            email: z.string().optional(),
            /** You must agree to the CA's terms of service; set true to say so. */
            accept_terms: z.boolean().default(false),
            /** Host names to get a certificate for; empty: [hostname]. */
            hosts: z.array(z.string().min(1)).default([]),
            /** "http-01" answers on listen.http (port 80), "tls-alpn-01" on listen.https (port 443). */
            challenge: z.enum(['http-01', 'tls-alpn-01']).default('http-01'),
            /** Renew when the certificate expires within this time. */
            renew_before: duration.default(30 * 86_400_000),
          })
          .strict()
          .default(() => ({ ...ACME_DEFAULTS, hosts: [] })),
      })
      .strict()
      .default({
        certificate: [],
        reload_check: 30_000,
        acme: { ...ACME_DEFAULTS, hosts: [] },
      }),
    auth: z
      .object({
        /**
         * Allow AUTH / LOGIN without TLS from loopback (127.0.0.0/8, ::1) only, e.g. for a
         * webmail on the same host. Cleartext passwords are refused everywhere else.
         */
        allow_plaintext_loopback: z.boolean().default(false),
        /** A successful login is remembered this long (Dovecot auth_cache_ttl); 0 disables the cache. */
        cache_ttl: duration.default(60_000),
        /** A failed login is answered after this delay (Dovecot auth_failure_delay), doubling per failure from the same IP. */
        failure_delay: duration.default(2000),
        /** The longest the failure delay grows to. */
        failure_delay_max: duration.default(15_000),
      })
      .strict()
      .default({ allow_plaintext_loopback: false, cache_ttl: 60_000, failure_delay: 2000, failure_delay_max: 15_000 }),
    /** Where users, aliases and groups come from: the store, or LDAP (src/config/directory.ts, docs/ldap.md). */
    directory: directorySchema(duration),
    bans: z
      .object({
        /** Ban client IPs that fail to log in too often (fail2ban built in). */
        enabled: z.boolean().default(true),
        /** Failed logins from one IP (IPv6: one /64) within find_time that trigger a ban (fail2ban maxretry). */
        max_retry: z.number().int().positive().default(3),
        find_time: duration.default(600_000),
        ban_time: duration.default(600_000),
        /** Ban length for an IP banned again within this time after its last ban ended. */
        repeat_ban_time: duration.default(7 * 86_400_000),
        /** Who is told about each ban, by mail; default postmaster@ the first local domain. "" sends none. */
        notify: z.string().optional(),
        /** Addresses/CIDRs never banned nor rate limited (fail2ban ignoreip). */
        trusted_networks: z
          .array(z.string().refine(isAddressOrCidr, 'expected an IP address or CIDR, e.g. "10.0.0.0/8"'))
          .default(['127.0.0.1/32', '::1/128']),
      })
      .strict()
      .default({
        enabled: true,
        max_retry: 3,
        find_time: 600_000,
        ban_time: 600_000,
        repeat_ban_time: 7 * 86_400_000,
        trusted_networks: ['127.0.0.1/32', '::1/128'],
      }),
    dns: z
      .object({
        /**
         * Resolvers for every DNS lookup of the policy checks (DNSBL, later SPF/DKIM/DMARC):
         * "127.0.0.1:53", "[2001:db8::53]:53". Empty: the system's (/etc/resolv.conf).
         */
        servers: z.array(z.string().min(1)).default([]),
        /** Per try (each query is tried twice). */
        timeout: duration.default(5000),
      })
      .strict()
      .default({ servers: [], timeout: 5000 }),
    policy: z
      .object({
        /**
         * Clients that skip the inbound checks (access lists, DNSBL) and may relay, like Postfix's
         * mynetworks. Empty by default: loopback TCP is not trusted (local submission uses the socket).
         */
        trusted_networks: z.array(z.string().refine(isAddressOrCidr, 'expected an IP address or CIDR, e.g. "192.0.2.0/24"')).default([]),
        dnsbl: z
          .object({
            /**
             * DNS blocklists (reject_rbl_client) and allowlists: a zone name (weight 1), or a table
             * with `zone`, `weight` (negative for an allowlist) and `answers` (the 127.x.y.z
             * addresses that count; default any in 127.0.0.0/8 except 127.255.255.x, the
             * "query refused" codes).
             */
            zones: dnsZoneList({ weight: z.number().default(1) }),
            /** A client is refused when the weights of the zones listing it add up to this. */
            threshold: z.number().default(1),
            /** Per lookup; a lookup that times out or fails counts as not listed (fails open). */
            timeout: duration.default(3000),
            /**
             * Domain blocklists (DBL, URIBL, SURBL) for the sender domains and the link hosts of
             * the body: a zone name (3 points) or a table with `zone`, `score` (points added to
             * the content score) and `answers`. Evidence for the score, never a refusal alone.
             */
            domain_zones: dnsZoneList({ score: z.number().default(3) }),
          })
          .strict()
          .default({ zones: [], threshold: 1, timeout: 3000, domain_zones: [] }),
        greylist: z
          .object({
            /** Postgrey's behaviour (src/policy/greylist.ts): off unless turned on. */
            enabled: z.boolean().default(false),
            /** A retry sooner than this after the first try is greylisted again. */
            delay: duration.default(60_000),
            /** A retry later than this after the first try counts as a first try. */
            retry_window: duration.default(2 * 86_400_000),
            /** A triplet (and an auto-whitelisted client) is forgotten this long after its last message. */
            max_age: duration.default(35 * 86_400_000),
            /** A client network (/24, /64) that passed this many times is not delayed any more; 0: never. */
            auto_whitelist: z.number().int().min(0).default(5),
            /** Sender domains (and their subdomains) never delayed, e.g. big senders that retry from changing pools. */
            whitelist_domains: z.array(z.string().min(1)).default([]),
          })
          .strict()
          .default({ enabled: false, delay: 60_000, retry_window: 2 * 86_400_000, max_age: 35 * 86_400_000, auto_whitelist: 5, whitelist_domains: [] }),
        auth: z
          .object({
            /**
             * SPF, DKIM, DMARC and ARC verification of inbound mail (src/policy/content/authenticate.ts),
             * reported in an Authentication-Results header (RFC 8601). On by default.
             */
            enabled: z.boolean().default(true),
            /** Refuse (550 5.7.1) mail failing DMARC whose domain publishes p=reject (RFC 7489 §6.6.3); false: deliver to Junk. */
            dmarc_reject: z.boolean().default(true),
            /** Deliver mail failing DMARC whose domain publishes p=quarantine to Junk. */
            dmarc_quarantine: z.boolean().default(true),
          })
          .strict()
          .default({ enabled: true, dmarc_reject: true, dmarc_quarantine: true }),
        spam: z
          .object({
            /** Content scoring of inbound mail; false: no X-Spam headers, nothing tagged. */
            enabled: z.boolean().default(true),
            /** Score from which a message is tagged (Subject prefix, X-Spam-Status: Yes) and delivered to Junk. */
            tag: z.number().default(5),
            /** Score from which a message is refused at DATA with 550 5.7.1. */
            reject: z.number().default(15),
            /** Prefix added to the Subject of tagged mail; "" leaves the Subject alone. */
            subject_tag: z.string().default('[SPAM]'),
            /**
             * Who scores: "builtin" (rules + Bayes, src/policy/content/), "spamd" (SpamAssassin's
             * spamd at `spamd`), or "rspamd" (Rspamd's HTTP API at `rspamd_url`). A filter that
             * fails or times out is skipped (logged), never a reason to refuse or delay mail.
             */
            filter: z.enum(['builtin', 'spamd', 'rspamd']).default('builtin'),
            /** spamd's address: "host:port" or a unix socket path. */
            spamd: z.string().default('127.0.0.1:783'),
            /** Rspamd's normal worker: its /checkv2 endpoint is used. */
            rspamd_url: z.string().default('http://127.0.0.1:11333'),
            /** Per message, for the external filters. */
            timeout: duration.default(15_000),
            /** Messages larger than this are not scored (spamc's default is 500 KB). */
            max_size: z.number().int().positive().default(1024 * 1024),
            /** The Bayesian classifier of the builtin filter (learns from moves into and out of Junk). */
            bayes: z.boolean().default(true),
            /** Messages of each kind the classifier must have learned before it scores. */
            bayes_min_learned: z.number().int().min(0).default(20),
          })
          .strict()
          .default({ ...SPAM_DEFAULTS }),
      })
      .strict()
      .default({
        trusted_networks: [],
        dnsbl: { zones: [], threshold: 1, timeout: 3000, domain_zones: [] },
        greylist: { enabled: false, delay: 60_000, retry_window: 2 * 86_400_000, max_age: 35 * 86_400_000, auto_whitelist: 5, whitelist_domains: [] },
        auth: { enabled: true, dmarc_reject: true, dmarc_quarantine: true },
        spam: { ...SPAM_DEFAULTS },
      }),
    imap: z
      .object({
        /**
         * Worker processes serving IMAP sessions (src/imap/workers.ts): 0 serves them in the main
         * process; "auto" is one per core. Off by default: on SQLite the processes contend for
         * the one database file (BENCHMARKS.md: more CPU per command than one process).
         */
        processes: z.union([z.literal('auto'), z.number().int().min(0).max(64)]).default(0),
      })
      .strict()
      .default({ processes: 0 }),
    pop3: z
      .object({
        /** The mailbox POP3 clients download (RFC 1939 knows one maildrop per user). */
        mailbox: z.string().min(1).default('INBOX'),
        /**
         * A second POP3 session of a user while one is open: "refuse" answers it -ERR [IN-USE]
         * (RFC 2449 §8.1.2; the lock spans every node of a cluster), "allow" lets both run.
         */
        in_use: z.enum(['refuse', 'allow']).default('refuse'),
        /**
         * Leave-on-server policy advertised as CAPA EXPIRE (RFC 2449 §6.7): "never" keeps mail until
         * the client deletes it; 0 deletes what a session retrieved when it quits; N (days) deletes,
         * at the end of a POP3 session, messages that are \Seen and unchanged for N days.
         */
        expire: z.union([z.literal('never'), z.number().int().min(0).max(36500)]).default('never'),
        /** Set \Seen on messages retrieved with RETR, at QUIT (like Dovecot; false: pop3_no_flag_updates). */
        mark_seen: z.boolean().default(true),
        /** Minimum time between two logins of a user (RFC 2449 LOGIN-DELAY); 0: none. */
        login_delay: duration.default(0),
        /** Inactivity autologout; RFC 1939 §3 asks for at least 10 minutes. */
        idle_timeout: duration.default(600_000),
      })
      .strict()
      .default({ mailbox: 'INBOX', in_use: 'refuse', expire: 'never', mark_seen: true, login_delay: 0, idle_timeout: 600_000 }),
    submission: z
      .object({
        /** Recipients one user (or local sender address) may send to per rate_window; 0: unlimited. */
        rate_limit: z.number().int().nonnegative().default(500),
        rate_window: duration.default(3_600_000),
        /** Leave the client's IP address and host name out of the Received header of submitted mail. */
        hide_client_ip: z.boolean().default(false),
      })
      .strict()
      .default({ rate_limit: 500, rate_window: 3_600_000, hide_client_ip: false }),
    smtp: z
      .object({
        max_message_size: size.default(25 * 1024 * 1024),
        max_recipients: z.number().int().positive().default(1000),
        /** Command line limit incl. CRLF, RFC 5321 §4.5.3.1.4. */
        max_command_line: z.number().int().min(512).default(512),
        // zod applies .default() after parsing: defaults are in output units (ms, bytes).
        idle_timeout: duration.default(300_000),
        /** Unknown/failed commands before replies are delayed (Postfix smtpd_soft_error_limit). */
        soft_error_limit: z.number().int().nonnegative().default(10),
        /** Unknown/failed commands before 421 and disconnect (Postfix smtpd_hard_error_limit). */
        hard_error_limit: z.number().int().positive().default(20),
        /** Delay per reply past the soft limit (Postfix smtpd_error_sleep_time). */
        error_delay: duration.default(1000),
        max_connections_per_ip: z.number().int().positive().default(50),
        max_connections: z.number().int().positive().default(1000),
        /** Received headers above this count are a mail loop (Postfix hopcount_limit). */
        max_received_headers: z.number().int().positive().default(50),
        /** MX port: wait this long before the greeting; clients talking first get 421 (Postfix postscreen_greet_wait). */
        greet_delay: duration.default(0),
        /** New connections per client IP per connection_rate_window; 0: no limit (Postfix smtpd_client_connection_rate_limit). */
        connection_rate_limit: z.number().int().nonnegative().default(0),
        connection_rate_window: duration.default(60_000),
      })
      .strict()
      .default({
        max_message_size: 25 * 1024 * 1024,
        max_recipients: 1000,
        max_command_line: 512,
        idle_timeout: 300_000,
        soft_error_limit: 10,
        hard_error_limit: 20,
        error_delay: 1000,
        max_connections_per_ip: 50,
        max_connections: 1000,
        max_received_headers: 50,
        greet_delay: 0,
        connection_rate_limit: 0,
        connection_rate_window: 60_000,
      }),
    queue: z
      .object({
        /** Delay before the first retry of a deferred recipient (Postfix minimal_backoff_time). */
        first_retry: duration.default(300_000),
        /** Longest wait between attempts; the wait doubles up to this (Postfix maximal_backoff_time). */
        max_retry_interval: duration.default(4_020_000),
        /** Give up and bounce after this long in the queue (Postfix maximal_queue_lifetime). */
        lifetime: duration.default(5 * 86_400_000),
        /** Bounces (null sender) are given up on sooner (Postfix bounce_queue_lifetime). */
        bounce_lifetime: duration.default(5 * 86_400_000),
        /** Send a "delayed" DSN once a recipient has waited this long; 0: never (Postfix delay_warning_time). */
        delay_warning: duration.default(0),
        /** Deliveries in flight at once, all destinations together (Postfix default_process_limit). */
        concurrency: z.number().int().positive().default(100),
        /** Connections at once to one destination (Postfix default_destination_concurrency_limit). */
        destination_concurrency: z.number().int().positive().default(20),
        /** Recipients per SMTP transaction (Postfix default_destination_recipient_limit). */
        recipients_per_transaction: z.number().int().positive().default(50),
        /** Messages sent over one connection before it is closed (Postfix smtp_connection_reuse_count_limit). */
        messages_per_connection: z.number().int().positive().default(100),
        /** An idle cached connection is closed after this (Postfix smtp_connection_cache_time_limit). */
        connection_idle: duration.default(2_000),
        connect_timeout: duration.default(30_000),
        /** Per-command reply timeout; DATA's final reply gets data_timeout (RFC 5321 §4.5.3.2). */
        command_timeout: duration.default(300_000),
        data_timeout: duration.default(600_000),
        /** "host:port" every remote message goes to (Postfix relayhost); a smarthost of your provider. */
        relayhost: hostPort.optional(),
        relay_username: z.string().min(1).optional(),
        /** File holding the relayhost's SASL password (first line). */
        relay_password_file: z.string().min(1).optional(),
        /** Domains whose servers must offer STARTTLS (else the attempt is deferred). */
        tls_required_domains: z.array(z.string().min(1)).default([]),
        /** Port of remote MX hosts (25; tests and unusual set-ups change it). */
        mx_port: z.number().int().min(1).max(65535).default(25),
      })
      .strict()
      .default({
        first_retry: 300_000,
        max_retry_interval: 4_020_000,
        lifetime: 5 * 86_400_000,
        bounce_lifetime: 5 * 86_400_000,
        delay_warning: 0,
        concurrency: 100,
        destination_concurrency: 20,
        recipients_per_transaction: 50,
        messages_per_connection: 100,
        connection_idle: 2_000,
        connect_timeout: 30_000,
        command_timeout: 300_000,
        data_timeout: 600_000,
        tls_required_domains: [],
        mx_port: 25,
      }),
    /** Routes by recipient domain, like Postfix transport_maps; first match wins. */
    transport: z
      .array(
        z
          .object({
            /** "example.org" (that domain), ".example.org" (its subdomains) or "*" (everything). */
            domain: z.string().min(1),
            /** "host:port" to hand the mail to instead of the domain's MX. */
            relay: hostPort,
            /** "may": STARTTLS when offered; "required": defer without it; "none": never. */
            tls: z.enum(['may', 'required', 'none']).default('may'),
            username: z.string().min(1).optional(),
            password_file: z.string().min(1).optional(),
            /** Speak LMTP (RFC 2033) instead of SMTP to the relay. */
            lmtp: z.boolean().default(false),
          })
          .strict(),
      )
      .default([]),
    dkim: z
      .object({
        /** Sign outgoing mail whose From domain has a key in data_dir/dkim (see `postern dkim generate`). */
        sign: z.boolean().default(true),
        /** Directory of keys; relative paths are inside data_dir. */
        directory: z.string().min(1).default('dkim'),
      })
      .strict()
      .default({ sign: true, directory: 'dkim' }),
    store: z
      .object({
        /** "sqlite": embedded, in data_dir. "postgres": one database shared by several nodes. */
        backend: z.enum(['sqlite', 'postgres']).default('sqlite'),
        /** postgres://user:pass@host:port/db; absent: libpq's PG* environment variables. */
        url: z.string().min(1).optional(),
        /** PostgreSQL schema holding Postern's tables (created if missing). */
        schema: z
          .string()
          .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'expected a lower-case SQL identifier, e.g. "postern"')
          .default('public'),
        /** Connections per node to PostgreSQL. */
        pool_size: z.number().int().min(2).max(1000).default(10),
        /**
         * Messages up to this size are kept inside the database with their rows, so a
         * group commit needs one fsync for a whole batch; larger ones are files under
         * data_dir/blobs. 0 stores every message as a file.
         */
        inline_max_size: z.union([z.literal(0), size]).default(64 * 1024),
      })
      .strict()
      .default({ backend: 'sqlite', schema: 'public', pool_size: 10, inline_max_size: 64 * 1024 }),
    log: z
      .object({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
        /** "auto": human lines on a TTY, JSON otherwise. */
        format: z.enum(['auto', 'json', 'pretty']).default('auto'),
      })
      .strict()
      .default({ level: 'info', format: 'auto' }),
  })
  .strict();

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
