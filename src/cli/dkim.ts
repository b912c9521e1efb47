import { Option, type Command, type Option as OptionType } from 'commander';
import { CliError, config } from './io.ts';
import { DkimKeyError, generateDkimKey, listDkimKeys, normalizeDkimDomain, type DkimKeyInfo, type DkimKeyType } from '../queue/dkim.ts';

/** A TXT value as a zone-file line: strings of at most 255 characters, p= on its own. */
export function zoneLine(info: Pick<DkimKeyInfo, 'txtName' | 'txtValue'>): string {
  const at = info.txtValue.indexOf('p=');
  const head = at > 0 ? info.txtValue.slice(0, at) : '';
  const rest = at > 0 ? info.txtValue.slice(at) : info.txtValue;
  const parts = head ? [head] : [];
  for (let i = 0; i < rest.length; i += 255) parts.push(rest.slice(i, i + 255));
  return `${info.txtName}. IN TXT ( ${parts.map((p) => `"${p}"`).join(' ')} )`;
}

function printRecord(info: DkimKeyInfo): void {
  console.log(zoneLine(info));
  console.log('or, in a web DNS panel (one TXT record):');
  console.log(`  name:  ${info.txtName}`);
  console.log(`  value: ${info.txtValue}`);
}

async function dkimAction(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof DkimKeyError) throw new CliError(err.message);
    throw err;
  }
}

/**
 * `postern dkim`: keys for signing outgoing mail (RFC 6376), like opendkim-genkey.
 * A key signs mail whose From domain is its domain once its TXT record is published.
 */
export function registerDkim(program: Command, configOption: () => OptionType): void {
  const dkim = program.command('dkim').description('DKIM keys that sign outgoing mail: create them, list them, show the DNS records to publish');

  dkim
    .command('generate <domain>')
    .description('create a signing key for a domain and print the DNS TXT record to publish (an existing selector is never overwritten)')
    .option('--selector <name>', 'the selector (default: postern<yyyymm>, postern<yyyymm>ed for ed25519)')
    .addOption(new Option('--algorithm <alg>', 'key type: rsa-2048 (understood everywhere) or ed25519 (RFC 8463; add it beside an RSA key)').choices(['rsa-2048', 'ed25519']).default('rsa-2048'))
    .addOption(configOption())
    .action((domain: string, opts: { config?: string; selector?: string; algorithm: DkimKeyType }) =>
      dkimAction(async () => {
        const loaded = config(opts);
        const info = await generateDkimKey(loaded.config.dkim.directory, domain, { selector: opts.selector, algorithm: opts.algorithm });
        if (!loaded.config.domains.includes(info.domain)) {
          process.stderr.write(`postern: note: ${info.domain} is not in domains of the config; its mail is signed when Postern sends it\n`);
        }
        if (!loaded.config.dkim.sign) process.stderr.write('postern: note: dkim.sign is false in the config: nothing is signed until it is true\n');
        console.log(`created ${info.file}`);
        console.log(`Publish this DNS TXT record, then mail from ${info.domain} is signed:`);
        printRecord(info);
      }),
    );

  dkim
    .command('list')
    .description('list the keys: domain, selector, algorithm and key file')
    .option('--json', 'one JSON array, with the TXT records')
    .addOption(configOption())
    .action((opts: { config?: string; json?: boolean }) =>
      dkimAction(async () => {
        const keys = await listDkimKeys(config(opts).config.dkim.directory);
        if (opts.json) return void console.log(JSON.stringify(keys));
        if (!keys.length) return void console.log('no DKIM keys (create one: postern dkim generate DOMAIN)');
        for (const k of keys) console.log(`${k.domain.padEnd(30)} ${k.selector.padEnd(20)} ${k.algorithm.padEnd(8)} ${k.file}`);
      }),
    );

  dkim
    .command('show <domain>')
    .description('print the DNS TXT records of a domain\'s keys again (newest first)')
    .addOption(configOption())
    .action((domain: string, opts: { config?: string }) =>
      dkimAction(async () => {
        const d = normalizeDkimDomain(domain);
        const keys = (await listDkimKeys(config(opts).config.dkim.directory)).filter((k) => k.domain === d);
        if (!keys.length) throw new CliError(`no DKIM key for ${d} (create one: postern dkim generate ${d})`);
        keys.forEach((k, i) => {
          if (i) console.log('');
          console.log(`${k.selector} (${k.algorithm}) ${k.file}`);
          printRecord(k);
        });
        console.log(`\nCheck what DNS serves: dig +short TXT ${keys[0]!.txtName}`);
      }),
    );
}
