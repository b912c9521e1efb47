import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import acme from 'acme-client';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { TLS_MIN_VERSION } from './tls.ts';

/**
 * ACME (RFC 8555) certificates, e.g. from Let's Encrypt, behind `[tls.acme]`. The
 * account key and certificates live in data_dir/tls/acme/. A certificate is
 * requested at start when missing and renewed when it expires within
 * `renew_before` (checked every 12 hours); failures are logged and retried at the
 * next check, never fatal. The challenge is answered by this process: HTTP-01 on
 * listen.http (acme-http.ts), or TLS-ALPN-01 (RFC 8737) on listen.https.
 */

/** Pending challenge answers, read by the HTTP and HTTPS listeners. */
export class AcmeChallenges {
  /** HTTP-01: token → key authorization (RFC 8555 §8.3). */
  readonly http = new Map<string, string>();
  /** TLS-ALPN-01: host name → the self-signed certificate carrying the acmeIdentifier (RFC 8737 §3). */
  readonly alpn = new Map<string, tls.SecureContext>();
}

export interface AcmeCertificate {
  certPath: string;
  keyPath: string;
  hosts: string[];
}

const CHECK_EVERY_MS = 12 * 3_600_000;
/** No single ACME request may hang a renewal forever (acme-client sets no timeout). */
acme.axios.defaults.timeout = 60_000;
/** Nor the whole issuance: a stuck one is abandoned and the next check starts afresh. */
const ISSUE_TIMEOUT_MS = 15 * 60_000;
const RETRY_WITHOUT_CERT_MS = 60 * 60_000;

export class AcmeManager {
  private readonly dir: string;
  private readonly hosts: string[];
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    readonly challenges: AcmeChallenges,
    /** Called with a newly issued (or renewed) certificate; the TLS provider serves it from then on. */
    private readonly install: (c: AcmeCertificate) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.dir = path.join(config.data_dir, 'tls', 'acme');
    this.hosts = (config.tls.acme.hosts.length ? config.tls.acme.hosts : [config.hostname]).map((h) => h.toLowerCase());
  }

  /** The stored certificate's files (whether or not they exist yet). */
  get files(): AcmeCertificate {
    const base = path.join(this.dir, this.hosts[0]!.replace(/[^a-z0-9.-]/g, '_'));
    return { certPath: `${base}.crt`, keyPath: `${base}.key`, hosts: this.hosts };
  }

  /** A stored certificate that covers every host, or null. */
  existing(): { cert: AcmeCertificate; expires: number } | null {
    const f = this.files;
    try {
      const x509 = new crypto.X509Certificate(fs.readFileSync(f.certPath));
      if (!x509.checkPrivateKey(crypto.createPrivateKey(fs.readFileSync(f.keyPath)))) return null;
      const names = (x509.subjectAltName ?? '').split(/,\s*/).map((n) => n.replace(/^DNS:/, '').toLowerCase());
      if (!this.hosts.every((h) => names.includes(h))) return null;
      return { cert: f, expires: Date.parse(x509.validTo) };
    } catch {
      return null;
    }
  }

  /** Serves a valid stored certificate at once; issues or renews in the background; re-checks every 12 h. */
  start(): void {
    const have = this.existing();
    if (have && have.expires > this.now()) this.install(have.cert);
    void this.check();
    this.timer = setInterval(() => void this.check(), CHECK_EVERY_MS);
    this.timer.unref();
  }

  /** Issues a certificate when there is none or it expires within renew_before. Resolves when done (or failed). */
  check(): Promise<void> {
    this.running ??= this.checkOnce().finally(() => (this.running = null));
    return this.running;
  }

  private async checkOnce(): Promise<void> {
    const have = this.existing();
    if (have && have.expires - this.now() > this.config.tls.acme.renew_before) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.issue(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('timed out')), ISSUE_TIMEOUT_MS);
          timer.unref();
        }),
      ]);
    } catch (err) {
      // Without any valid certificate, retry within the hour rather than at the next 12-hour check.
      const retryMs = have && have.expires > this.now() ? CHECK_EVERY_MS : RETRY_WITHOUT_CERT_MS;
      this.log.error(
        { err: (err as Error).message, directory: this.config.tls.acme.directory, hosts: this.hosts, retry_in_min: Math.round(retryMs / 60_000) },
        'ACME: could not get a certificate (tls.acme)',
      );
      if (retryMs < CHECK_EVERY_MS) setTimeout(() => void this.check(), retryMs).unref();
    } finally {
      clearTimeout(timer);
    }
  }

  private async issue(): Promise<void> {
    const a = this.config.tls.acme;
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const accountKeyFile = path.join(this.dir, 'account.key');
    if (!fs.existsSync(accountKeyFile)) fs.writeFileSync(accountKeyFile, await acme.crypto.createPrivateEcdsaKey(), { mode: 0o600 });
    const client = new acme.Client({
      directoryUrl: a.directory,
      accountKey: fs.readFileSync(accountKeyFile),
      // Polling for order/challenge status (RFC 8555 §7.5.1); network errors and 5xx are retried by acme-client itself.
      backoffAttempts: 10,
      backoffMin: 1000,
      backoffMax: 10_000,
    });
    const [key, csr] = await acme.crypto.createCsr({ commonName: this.hosts[0]!, altNames: this.hosts }, await acme.crypto.createPrivateEcdsaKey());
    this.log.info({ hosts: this.hosts, challenge: a.challenge, directory: a.directory }, 'ACME: requesting a certificate');
    const cert = await client.auto({
      csr,
      email: a.email,
      termsOfServiceAgreed: a.accept_terms,
      challengePriority: [a.challenge],
      // The CA checks the challenge itself; checking it from here first fails behind NAT or split DNS.
      skipChallengeVerification: true,
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        if (challenge.type === 'http-01') this.challenges.http.set(challenge.token, keyAuthorization);
        else if ((challenge.type as string) === 'tls-alpn-01') {
          const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization, await acme.crypto.createPrivateEcdsaKey());
          this.challenges.alpn.set(authz.identifier.value.toLowerCase(), tls.createSecureContext({ key: alpnKey, cert: alpnCert, minVersion: TLS_MIN_VERSION }));
        }
      },
      challengeRemoveFn: async (authz, challenge) => {
        this.challenges.http.delete(challenge.token);
        this.challenges.alpn.delete(authz.identifier.value.toLowerCase());
      },
    });
    const f = this.files;
    // Key first, then the certificate, each by rename: the reload check never sees a half-written file.
    for (const [file, data, mode] of [
      [f.keyPath, key, 0o600],
      [f.certPath, Buffer.from(cert), 0o644],
    ] as const) {
      fs.writeFileSync(`${file}.tmp`, data, { mode });
      fs.renameSync(`${file}.tmp`, file);
    }
    this.log.info({ hosts: this.hosts, cert: f.certPath, expires: new crypto.X509Certificate(Buffer.from(cert)).validTo }, 'ACME: certificate installed');
    this.install(f);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
