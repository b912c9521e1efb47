import fs from 'node:fs';
import type { Command, Option } from 'commander';
import { CliError, readStdin, withStores } from './io.ts';
import { passwordSecrets } from '../auth/secrets.ts';
import { isKnownScheme } from '../auth/hash-schemes.ts';
import { parsePasswdFile, type PasswdEntry, type PasswdLineError } from '../auth/passwd-file.ts';
import { MailError } from '../core/errors.ts';

interface ImportOptions {
  config?: string;
  domain?: string;
  update?: boolean;
  dryRun?: boolean;
  defaultScheme: string;
}

/** `postern user import passwd-file FILE`: registered under `user` by admin.ts. */
export function registerUserImport(user: Command, configOption: () => Option): void {
  const imp = user.command('import').description('import users and their password hashes from another mail server');
  imp
    .command('passwd-file <file>')
    .description(
      'import users from a Dovecot passwd-file (user:password:…; "-" reads standard input). ' +
        'Hashes are kept as they are ({SHA512-CRYPT}, {BLF-CRYPT}, {SSHA512}, {ARGON2ID}, …) and upgraded to argon2id at each ' +
        "user's next login; {PLAIN} passwords are hashed with argon2id now. Every user's domain must be local already. " +
        'See docs/import-dovecot.md.',
    )
    .option('--domain <domain>', 'domain for user names without "@domain" (per-domain passwd-files)')
    .option('--update', "replace the password hash of users that exist already (default: skip them)")
    .option('--dry-run', 'check the file and report what would happen, writing nothing')
    .option('--default-scheme <scheme>', 'Dovecot default_pass_scheme: the scheme of passwords without a {SCHEME} prefix (CRYPT detects $6$, $5$, $2y$, $argon2id$)', 'CRYPT')
    .addOption(configOption())
    .action((file: string, opts: ImportOptions) => importPasswdFile(file, opts));
}

async function importPasswdFile(file: string, opts: ImportOptions): Promise<void> {
  if (!isKnownScheme(opts.defaultScheme)) throw new CliError(`--default-scheme ${opts.defaultScheme}: not a scheme Postern reads (CRYPT, SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, ARGON2ID, SSHA512, SSHA256, SHA512, SHA256, PLAIN, …)`);
  if (opts.domain !== undefined && !/^[a-z0-9.-]+$/i.test(opts.domain)) throw new CliError(`--domain "${opts.domain}" is not a domain name`);
  const text = await readInput(file);
  const { entries, errors } = parsePasswdFile(text, { domain: opts.domain, defaultScheme: opts.defaultScheme });

  await withStores(opts, async ({ data }) => {
    // Validate everything before writing anything: a missing domain stops the whole import.
    const missing = new Set<string>();
    for (const d of new Set(entries.map((e) => e.email.slice(e.email.lastIndexOf('@') + 1)))) if (!(await data.isLocalDomain(d))) missing.add(d);
    if (missing.size) {
      const add = [...missing].sort().map((d) => `  postern domain add ${d}`).join('\n');
      throw new CliError(`nothing imported: ${missing.size === 1 ? 'this domain is' : 'these domains are'} not local; add ${missing.size === 1 ? 'it' : 'them'} first:\n${add}`);
    }
    const skipped: PasswdLineError[] = [...errors];
    const plan: Array<{ entry: PasswdEntry; exists: boolean }> = [];
    for (const entry of entries) {
      const exists = (await data.getAccount(entry.email)) !== null;
      if (exists && !opts.update) skipped.push({ line: entry.line, reason: `user ${entry.email} exists already (--update replaces its password)` });
      else plan.push({ entry, exists });
    }

    let imported = 0;
    let updated = 0;
    const schemes = new Map<string, number>();
    for (const { entry, exists } of plan) {
      if (!opts.dryRun) {
        // Cleartext entries get argon2id and a SCRAM secret now; hashed ones get both at the user's next login.
        const secrets = entry.hash.kind === 'plain' ? await passwordSecrets(entry.hash.password) : { hash: entry.stored, scram: null };
        const hash = secrets.hash;
        try {
          if (exists) await data.setPassword(entry.email, hash, secrets.scram);
          else await data.addAccount(entry.email, hash, secrets.scram);
        } catch (err) {
          // Created or deleted by someone else since the check: report it, carry on.
          if (err instanceof MailError && (err.code === 'ALREADY_EXISTS' || err.code === 'NOT_FOUND')) {
            skipped.push({ line: entry.line, reason: `user ${entry.email}: ${err.message}` });
            continue;
          }
          throw err;
        }
      }
      if (exists) updated++;
      else imported++;
      schemes.set(entry.hash.scheme, (schemes.get(entry.hash.scheme) ?? 0) + 1);
    }

    report({ imported, updated, skipped, schemes, dryRun: !!opts.dryRun });
    // Exit non-zero when errors left nothing to import (existing users skipped on purpose are not errors).
    if (errors.length && imported + updated === 0) throw new CliError(`nothing imported from ${file === '-' ? 'standard input' : file}: every entry had an error`);
  });
}

async function readInput(file: string): Promise<string> {
  if (file === '-') return (await readStdin()).toString('utf8');
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function report(r: { imported: number; updated: number; skipped: PasswdLineError[]; schemes: Map<string, number>; dryRun: boolean }): void {
  const would = r.dryRun ? 'dry run, nothing written: would have ' : '';
  console.log(`${would}imported ${r.imported}, updated ${r.updated}, skipped ${r.skipped.length}`);
  for (const s of r.skipped.sort((a, b) => a.line - b.line)) console.log(`  line ${s.line}: ${s.reason}`);
  if (!r.schemes.size) return;
  console.log(`schemes: ${[...r.schemes].map(([s, n]) => `${s} ${n}`).join(', ')}`);
  const plain = r.schemes.get('PLAIN');
  if (plain) console.log(`note: ${plain} cleartext ({PLAIN}) password(s) ${r.dryRun ? 'would be' : 'were'} hashed with argon2id; no cleartext is stored.`);
  console.log("note: imported hashes are upgraded to argon2id at each user's next successful login.");
}
