import crypto from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { StartupError } from '../core/errors.ts';
import { loadTls, TLS_MIN_VERSION } from './tls.ts';

/**
 * The certificates every TLS listener presents: a default one, more chosen by the
 * host name the client asks for (SNI, RFC 6066 §3), reloaded from disk when their
 * files change (a renewed Let's Encrypt certificate needs no restart).
 */
export interface TlsProvider {
  /** The default certificate (no SNI, or a name no certificate serves). */
  defaultMaterial(): { key: Buffer; cert: Buffer; selfSigned: boolean };
  /** SNI: the context for a host name, or the default one. */
  sniCallback: (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => void;
  /** Options for node:tls servers and sockets we create ourselves (IMAP, POP3, HTTPS). */
  serverOptions(): tls.TlsOptions;
  /** Called after a certificate was reloaded or added: listeners refresh their default context. */
  onChange(listener: () => void): void;
  /**
   * Serves another certificate (ACME) from now on, watched like the configured ones;
   * it becomes the default unless tls.cert is configured. Replaces an earlier one
   * added under the same config key.
   */
  addCertificate(key: string, certPath: string, keyPath: string, hosts: string[]): void;
  close(): void;
}

interface Entry {
  /** The config key, for messages: "tls", "tls.certificate[1]". */
  key: string;
  certPath: string;
  keyPath: string;
  /** Explicit host names; empty: the names in the certificate. */
  configuredHosts: string[];
  hosts: string[];
  material: { key: Buffer; cert: Buffer };
  context: tls.SecureContext;
  signature: string;
}

function fileSignature(...paths: string[]): string {
  return paths
    .map((p) => {
      const s = fs.statSync(p);
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    })
    .join('|');
}

/** DNS names of a certificate: subjectAltName dNSName entries, else the subject CN. */
function certificateNames(cert: crypto.X509Certificate): string[] {
  const san = (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((p) => p.startsWith('DNS:'))
    .map((p) => p.slice(4).toLowerCase());
  if (san.length) return san;
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(cert.subject)?.[1];
  return cn ? [cn.toLowerCase()] : [];
}

/** Reads and checks one pair; throws with the config key, path and reason. */
function load(key: string, certPath: string, keyPath: string, configuredHosts: string[]): Omit<Entry, 'signature'> {
  let certPem: Buffer;
  let keyPem: Buffer;
  try {
    certPem = fs.readFileSync(certPath);
  } catch (err) {
    throw new Error(`cannot read ${key}.cert ${certPath}: ${(err as Error).message}`);
  }
  try {
    keyPem = fs.readFileSync(keyPath);
  } catch (err) {
    throw new Error(`cannot read ${key}.key ${keyPath}: ${(err as Error).message}`);
  }
  let x509: crypto.X509Certificate;
  try {
    x509 = new crypto.X509Certificate(certPem);
  } catch (err) {
    throw new Error(`${key}.cert ${certPath} is not a PEM certificate: ${(err as Error).message}`);
  }
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(keyPem);
  } catch (err) {
    throw new Error(`${key}.key ${keyPath} is not a PEM private key: ${(err as Error).message}`);
  }
  if (!x509.checkPrivateKey(privateKey)) throw new Error(`${key}.key ${keyPath} does not belong to the certificate ${certPath}`);
  const context = tls.createSecureContext({ key: keyPem, cert: certPem, minVersion: TLS_MIN_VERSION });
  const hosts = configuredHosts.length ? configuredHosts.map((h) => h.toLowerCase()) : certificateNames(x509);
  return { key, certPath, keyPath, configuredHosts, hosts, material: { key: keyPem, cert: certPem }, context };
}

/** "*.example.org" matches one label: "mail.example.org", not "example.org" nor "a.b.example.org". */
function matches(pattern: string, name: string): boolean {
  if (pattern === name) return true;
  if (!pattern.startsWith('*.')) return false;
  const dot = name.indexOf('.');
  return dot > 0 && name.slice(dot + 1) === pattern.slice(2);
}

export async function createTlsProvider(config: Config, log: Logger): Promise<TlsProvider> {
  const specs: Array<{ key: string; cert: string; keyPath: string; hosts: string[] }> = [];
  if (config.tls.cert && config.tls.key) specs.push({ key: 'tls', cert: config.tls.cert, keyPath: config.tls.key, hosts: [] });
  config.tls.certificate.forEach((c, i) => specs.push({ key: `tls.certificate[${i}]`, cert: c.cert, keyPath: c.key, hosts: c.hosts }));

  const entries: Entry[] = [];
  for (const s of specs) {
    try {
      entries.push({ ...load(s.key, s.cert, s.keyPath, s.hosts), signature: fileSignature(s.cert, s.keyPath) });
    } catch (err) {
      throw new StartupError((err as Error).message);
    }
  }
  let fallback: { key: Buffer; cert: Buffer; selfSigned: boolean } | null = null;
  let fallbackContext: tls.SecureContext | null = null;
  if (!entries.length) {
    fallback = await loadTls(config, log);
    fallbackContext = tls.createSecureContext({ key: fallback.key, cert: fallback.cert, minVersion: TLS_MIN_VERSION });
  }

  const listeners: Array<() => void> = [];
  const reload = () => {
    let changed = false;
    entries.forEach((e, i) => {
      let sig: string;
      try {
        sig = fileSignature(e.certPath, e.keyPath);
      } catch (err) {
        if (e.signature !== 'missing') log.error({ err: (err as Error).message, key: e.key }, `certificate files of ${e.key} are gone; still serving the loaded one`);
        e.signature = 'missing';
        return;
      }
      if (sig === e.signature) return;
      try {
        entries[i] = { ...load(e.key, e.certPath, e.keyPath, e.configuredHosts), signature: sig };
        changed = true;
        log.info({ key: e.key, cert: e.certPath, hosts: entries[i]!.hosts }, 'certificate reloaded');
      } catch (err) {
        // Half-written or mismatched files (e.g. cert renewed, key not yet): keep serving the old pair, retry next check.
        e.signature = sig;
        log.error({ key: e.key, reason: (err as Error).message }, `new certificate files of ${e.key} refused; still serving the previous certificate`);
      }
    });
    if (changed) for (const l of listeners) l();
  };
  let timer: NodeJS.Timeout | null = null;
  const watch = () => {
    if (timer || !entries.length) return;
    timer = setInterval(reload, Math.max(config.tls.reload_check, 50));
    timer.unref();
  };
  watch();

  const defaultEntry = () => entries[0];
  const provider: TlsProvider = {
    defaultMaterial() {
      const d = defaultEntry();
      return d ? { ...d.material, selfSigned: false } : fallback!;
    },
    sniCallback(servername, cb) {
      const name = (servername || '').toLowerCase().replace(/\.$/, '');
      const hit = entries.find((e) => e.hosts.some((h) => matches(h, name))) ?? defaultEntry();
      cb(null, hit ? hit.context : fallbackContext!);
    },
    serverOptions() {
      return { ...provider.defaultMaterial(), SNICallback: provider.sniCallback, minVersion: TLS_MIN_VERSION };
    },
    onChange(listener) {
      listeners.push(listener);
    },
    addCertificate(key, certPath, keyPath, hosts) {
      const entry = { ...load(key, certPath, keyPath, hosts), signature: fileSignature(certPath, keyPath) };
      const at = entries.findIndex((e) => e.key === key);
      if (at >= 0) entries[at] = entry;
      else if (config.tls.cert) entries.push(entry);
      else entries.unshift(entry);
      watch();
      log.info({ key, cert: certPath, hosts: entry.hosts }, 'certificate added');
      for (const l of listeners) l();
    },
    close() {
      if (timer) clearInterval(timer);
    },
  };
  return provider;
}
