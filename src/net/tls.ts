import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { generate } from 'selfsigned';
import type { Config } from '../config/schema.ts';

export interface TlsMaterial {
  key: Buffer;
  cert: Buffer;
  selfSigned: boolean;
}

/**
 * The certificate for STARTTLS/implicit TLS. Configured PEM files when given
 * (tls.cert, tls.key); otherwise a self-signed certificate for `hostname`,
 * generated once into data_dir/tls/ (with a warning: clients will not trust it).
 */
export async function loadTls(config: Config, log: Logger): Promise<TlsMaterial> {
  if (config.tls.cert && config.tls.key) {
    try {
      return { key: fs.readFileSync(config.tls.key), cert: fs.readFileSync(config.tls.cert), selfSigned: false };
    } catch (err) {
      throw new Error(`cannot read the TLS certificate (config keys tls.cert / tls.key): ${(err as Error).message}`);
    }
  }
  const dir = path.join(config.data_dir, 'tls');
  const keyFile = path.join(dir, 'selfsigned.key');
  const certFile = path.join(dir, 'selfsigned.crt');
  if (!fs.existsSync(keyFile) || !fs.existsSync(certFile)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const now = new Date();
    const pems = await generate([{ name: 'commonName', value: config.hostname }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notBeforeDate: now,
      notAfterDate: new Date(now.getTime() + 3 * 365 * 86_400_000),
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: config.hostname }] }],
    } as Parameters<typeof generate>[1]);
    fs.writeFileSync(keyFile, pems.private, { mode: 0o600 });
    fs.writeFileSync(certFile, pems.cert, { mode: 0o644 });
    log.warn({ cert: certFile }, 'generated a self-signed TLS certificate; set tls.cert and tls.key for a trusted one');
  }
  return { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile), selfSigned: true };
}

/** TLS 1.2 minimum (RFC 8996 deprecates 1.0/1.1). */
export const TLS_MIN_VERSION = 'TLSv1.2' as const;
