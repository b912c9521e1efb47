import fs from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { configSchema, type Config } from './schema.ts';

/** A configuration problem, worded for the administrator: file, key, what is expected. */
export class ConfigError extends Error {}

export interface LoadedConfig {
  config: Config;
  /** The file it came from, or null for the embedded defaults. */
  file: string | null;
}

/**
 * Where `postern` looks for its config (every command, including sendmail which mail
 * clients call without our options): --config FILE, $POSTERN_CONFIG, ./postern.toml,
 * /etc/postern/postern.toml, else the embedded development defaults.
 */
export function findConfigFile(explicit?: string, env: NodeJS.ProcessEnv = process.env): string | null {
  if (explicit) return explicit;
  if (env.POSTERN_CONFIG) return env.POSTERN_CONFIG;
  for (const candidate of ['postern.toml', '/etc/postern/postern.toml']) {
    if (fs.existsSync(candidate)) return path.resolve(candidate);
  }
  return null;
}

export function loadConfig(explicit?: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const file = findConfigFile(explicit, env);
  if (file === null) return { config: finish(parseConfig({}, '(embedded defaults)'), null), file: null };
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid TOML: ${(err as Error).message}`);
  }
  return { config: finish(parseConfig(raw, file), file), file };
}

/** Validates a parsed TOML document; errors name the file, the key and what is expected. */
export function parseConfig(raw: unknown, source: string): Config {
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const key = issue.path.length ? issue.path.join('.') : '(top level)';
    let msg = issue.message;
    if (issue.code === 'unrecognized_keys') msg = `unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')} (see docs/configuration.md)`;
    return `  ${key}: ${msg}`;
  });
  throw new ConfigError(`invalid configuration in ${source}:\n${lines.join('\n')}`);
}

/** Applies defaults that depend on other keys, and resolves paths relative to the config file. */
function finish(config: Config, file: string | null): Config {
  const base = file ? path.dirname(path.resolve(file)) : process.cwd();
  config.data_dir = path.resolve(base, config.data_dir);
  if (file === null) {
    // Embedded development defaults: loopback, standard port + 2000, domain localhost.
    config.listen = {
      smtp: '127.0.0.1:2025',
      lmtp: '127.0.0.1:2024',
      submission: '127.0.0.1:2587',
      submissions: '127.0.0.1:2465',
      imap: '127.0.0.1:2143',
      imaps: '127.0.0.1:2993',
      pop3: '127.0.0.1:2110',
      pop3s: '127.0.0.1:2995',
      local: 'postern.sock',
      proxy_protocol: [],
    };
    if (config.domains.length === 0) config.domains = ['localhost'];
  }
  if (!config.listen.local) config.listen.local = 'postern.sock';
  config.listen.local = path.resolve(config.data_dir, config.listen.local);
  if (config.tls.cert) config.tls.cert = path.resolve(base, config.tls.cert);
  if (config.tls.key) config.tls.key = path.resolve(base, config.tls.key);
  for (const c of config.tls.certificate) {
    c.cert = path.resolve(base, c.cert);
    c.key = path.resolve(base, c.key);
  }
  config.dkim.directory = path.resolve(config.data_dir, config.dkim.directory);
  if (config.queue.relay_password_file) config.queue.relay_password_file = path.resolve(base, config.queue.relay_password_file);
  for (const t of config.transport) if (t.password_file) t.password_file = path.resolve(base, t.password_file);
  if (config.directory.ldap?.bind_password_file) config.directory.ldap.bind_password_file = path.resolve(base, config.directory.ldap.bind_password_file);
  if (config.directory.ldap?.tls_ca_file) config.directory.ldap.tls_ca_file = path.resolve(base, config.directory.ldap.tls_ca_file);
  {
    const where = file ?? '(embedded defaults)';
    if (!!config.queue.relay_username !== !!config.queue.relay_password_file) throw new ConfigError(`${where}: queue.relay_username and queue.relay_password_file must be given together`);
    if ((config.queue.relay_username || config.queue.relay_password_file) && !config.queue.relayhost) throw new ConfigError(`${where}: queue.relay_username needs queue.relayhost`);
    for (const t of config.transport) {
      if (!!t.username !== !!t.password_file) throw new ConfigError(`${where}: transport "${t.domain}": username and password_file must be given together`);
    }
  }
  if (config.tls.acme.enabled) {
    const where = file ?? '(embedded defaults)';
    if (!config.tls.acme.accept_terms) throw new ConfigError(`${where}: tls.acme.enabled needs tls.acme.accept_terms = true (you agree to the CA's terms of service)`);
    if (config.tls.acme.challenge === 'http-01' && !config.listen.http) throw new ConfigError(`${where}: tls.acme.challenge "http-01" needs listen.http (port 80)`);
    if (config.tls.acme.challenge === 'tls-alpn-01' && !config.listen.https) throw new ConfigError(`${where}: tls.acme.challenge "tls-alpn-01" needs listen.https (port 443)`);
  }
  if (!!config.tls.cert !== !!config.tls.key) {
    throw new ConfigError(`${file ?? '(embedded defaults)'}: tls.cert and tls.key must be given together`);
  }
  return config;
}

/** Splits "addr:port" / "[v6]:port". */
export function splitHostPort(value: string): { host: string; port: number } {
  const i = value.lastIndexOf(':');
  let host = value.slice(0, i);
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { host, port: Number(value.slice(i + 1)) };
}
