import readline from 'node:readline';
import { loadConfig, ConfigError, type LoadedConfig } from '../config/load.ts';
import { MailError, StartupError } from '../core/errors.ts';
import { openStoresFromConfig, type Stores } from '../store/open.ts';

/** Reads all of stdin. */
export async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The password from stdin (first line), for --password-stdin. */
export async function passwordFromStdin(): Promise<string> {
  const text = (await readStdin()).toString('utf8');
  const line = text.split(/\r?\n/)[0] ?? '';
  if (!line) throw new CliError('no password on standard input (pipe it in: `echo secret | postern user add … --password-stdin`)');
  return line;
}

/** Asks twice on the terminal without echo. */
export async function promptPassword(): Promise<string> {
  const ask = (q: string) =>
    new Promise<string>((resolve) => {
      const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: true });
      const out = rl as unknown as { _writeToOutput: (s: string) => void };
      out._writeToOutput = (s: string) => {
        if (s.includes(q)) process.stderr.write(q);
      };
      rl.question(q, (a) => {
        rl.close();
        process.stderr.write('\n');
        resolve(a);
      });
    });
  const a = await ask('Password: ');
  const b = await ask('Again: ');
  if (a !== b) throw new CliError('the passwords do not match');
  if (!a) throw new CliError('empty password');
  return a;
}

export class CliError extends Error {}

export function config(opts: { config?: string }): LoadedConfig {
  return loadConfig(opts.config);
}

/** Runs a CLI action against the stores, turning expected errors into one clear line and exit 1. */
export async function withStores(opts: { config?: string }, fn: (stores: Stores, loaded: LoadedConfig) => Promise<void>): Promise<void> {
  const loaded = config(opts);
  const stores = await openStoresFromConfig(loaded.config, { listen: false });
  try {
    for (const d of loaded.config.domains) await stores.data.ensureDomain(d);
    await fn(stores, loaded);
  } finally {
    await stores.close();
  }
}

export function fail(err: unknown): never {
  if (err instanceof CliError || err instanceof ConfigError || err instanceof MailError) {
    process.stderr.write(`postern: ${err.message}\n`);
    process.exit(err instanceof ConfigError ? 78 : 1); // 78 = EX_CONFIG
  }
  if (err instanceof StartupError) {
    process.stderr.write(`postern: ${err.message}\n`);
    process.exit(69); // EX_UNAVAILABLE
  }
  process.stderr.write(`postern: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(70); // EX_SOFTWARE
}

export function isEmail(s: string): boolean {
  return /^[^\s@]+@[^\s@]+$/.test(s);
}
