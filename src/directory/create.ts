import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { StartupError } from '../core/errors.ts';
import type { DataStore } from '../store/data-store.ts';
import { InternalDirectory, type Directory } from './directory.ts';
import { LdapDirectory } from './ldap/directory.ts';

/** The directory `[directory] backend` names: the store, or LDAP (nothing connects until the first lookup). */
export function createDirectory(config: Config, data: DataStore, log: Logger, now: () => number = () => Date.now()): Directory {
  const d = config.directory;
  if (d.backend !== 'ldap' || !d.ldap) return new InternalDirectory(data);
  const ldap = d.ldap;
  let bindPassword: string | null = null;
  if (ldap.bind_password_file) {
    try {
      bindPassword = fs.readFileSync(ldap.bind_password_file, 'utf8').split(/\r?\n/)[0] ?? '';
    } catch (err) {
      throw new StartupError(`cannot read directory.ldap.bind_password_file ${ldap.bind_password_file}: ${(err as Error).message}`);
    }
    if (!bindPassword) throw new StartupError(`directory.ldap.bind_password_file ${ldap.bind_password_file} is empty (its first line is bind_dn's password)`);
  }
  let ca: Buffer | undefined;
  if (ldap.tls_ca_file) {
    try {
      ca = fs.readFileSync(ldap.tls_ca_file);
    } catch (err) {
      throw new StartupError(`cannot read directory.ldap.tls_ca_file ${ldap.tls_ca_file}: ${(err as Error).message}`);
    }
  }
  const host = /^ldaps?:\/\/\[?([^\]/:]+)/i.exec(ldap.url)?.[1];
  return new LdapDirectory({
    config: ldap,
    bindPassword,
    // The name the certificate must carry: SNI for host names; for an IP literal `host` (no SNI, RFC 6066 §3),
    // else Node checks a StartTLS upgrade (a socket without a name) against "localhost".
    tlsOptions: { ...(ca ? { ca } : {}), rejectUnauthorized: ldap.tls_verify, minVersion: 'TLSv1.2', ...(host ? (net.isIP(host) ? { host } : { servername: host, host }) : {}) },
    data,
    log,
    now,
  });
}
