import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildProgram } from '../../src/cli/main.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { dkimVerify } from 'mailauth';
import { postern, writeConfig } from '../helpers/cli.ts';
import { DkimSigner } from '../../src/queue/dkim.ts';

let dir: string;
let cfg: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'postern-cli-dkim-'));
  cfg = writeConfig(dir, `data_dir = "${dir}"\n`);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The plain TXT value and its name as printed for web DNS panels. */
function printed(stdout: string): { name: string; value: string } {
  const name = /^\s*name:\s+(\S+)$/m.exec(stdout)?.[1];
  const value = /^\s*value:\s+(v=DKIM1;.*)$/m.exec(stdout)?.[1];
  assert.ok(name && value, stdout);
  return { name, value };
}

test('dkim generate prints the record to publish; a message signed with the key verifies against it', async () => {
  const r = await postern(['dkim', 'generate', 'Example.Test', '--selector', 's1', '--config', cfg]);
  assert.equal(r.status, 0, r.stderr);
  const file = path.join(dir, 'dkim', 'example.test', 's1.rsa.key');
  assert.match(r.stdout, new RegExp(`^created ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
  assert.match(r.stdout, /Publish this DNS TXT record, then mail from example\.test is signed:/);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  // The zone-file line: strings of at most 255 characters that join to the plain value.
  const zone = /^s1\._domainkey\.example\.test\. IN TXT \( (.*) \)$/m.exec(r.stdout);
  assert.ok(zone, r.stdout);
  const strings = [...zone[1]!.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);
  assert.ok(strings.length >= 2 && strings.every((s) => s.length <= 255));
  const { name, value } = printed(r.stdout);
  assert.equal(name, 's1._domainkey.example.test');
  assert.equal(strings.join(''), value);
  assert.match(value, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+$/);

  const message = Buffer.from('From: "Alice" <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: signed\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nHello.\r\n');
  const sig = await new DkimSigner(path.join(dir, 'dkim'), pino({ level: 'silent' })).sign(message);
  assert.match(sig, /^DKIM-Signature: /);
  const resolver = async (n: string, rrtype: string) => {
    if (rrtype !== 'TXT' || n !== name) throw Object.assign(new Error(`ENOTFOUND ${n}`), { code: 'ENOTFOUND' });
    return [strings];
  };
  const v = await dkimVerify(Buffer.concat([Buffer.from(sig), message]), { resolver });
  assert.equal(v.results.length, 1);
  assert.equal(v.results[0]!.status.result, 'pass', v.results[0]!.info);
});

test('dkim generate refuses an existing selector and a bad algorithm or domain', async () => {
  const again = await postern(['dkim', 'generate', 'example.test', '--selector', 's1', '--config', cfg]);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /s1\.rsa\.key exists already/);
  const bad = await postern(['dkim', 'generate', 'example.test', '--algorithm', 'dsa', '--config', cfg]);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--algorithm.*'dsa' is invalid.*rsa-2048, ed25519/);
  const dom = await postern(['dkim', 'generate', 'not_a domain', '--config', cfg]);
  assert.equal(dom.status, 1);
  assert.match(dom.stderr, /not a domain name/);
});

test('dkim generate --algorithm ed25519, then list and show', async () => {
  const ed = await postern(['dkim', 'generate', 'example.test', '--selector', 'e1', '--algorithm', 'ed25519', '--config', cfg]);
  assert.equal(ed.status, 0, ed.stderr);
  const { value } = printed(ed.stdout);
  assert.match(value, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/=]{44}$/);

  const list = await postern(['dkim', 'list', '--config', cfg]);
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, /^example\.test\s+s1\s+rsa-2048\s+\S+s1\.rsa\.key$/m);
  assert.match(list.stdout, /^example\.test\s+e1\s+ed25519\s+\S+e1\.ed25519\.key$/m);
  const json = JSON.parse((await postern(['dkim', 'list', '--json', '--config', cfg])).stdout) as Array<{ selector: string; txtValue: string }>;
  assert.deepEqual(json.map((k) => k.selector).sort(), ['e1', 's1']);

  const show = await postern(['dkim', 'show', 'example.test', '--config', cfg]);
  assert.equal(show.status, 0, show.stderr);
  assert.match(show.stdout, /^s1\._domainkey\.example\.test\. IN TXT/m);
  assert.match(show.stdout, /^e1\._domainkey\.example\.test\. IN TXT \( "v=DKIM1; k=ed25519; " "p=/m);
  assert.ok(show.stdout.includes(`value: ${value}`));
  assert.match(show.stdout, /dig \+short TXT/);
  const none = await postern(['dkim', 'show', 'other.test', '--config', cfg]);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no DKIM key for other\.test/);
});

test('dkim commands have help', () => {
  // In this process: the binary's --help is exercised by test/cli/cli.test.ts.
  const dkim = buildProgram().commands.find((c) => c.name() === 'dkim')!;
  const top = dkim.helpInformation();
  for (const c of ['generate', 'list', 'show']) assert.match(top, new RegExp(`^\\s+${c}\\b.*\\S`, 'm'));
  const gen = dkim.commands.find((c) => c.name() === 'generate')!.helpInformation();
  assert.match(gen, /--selector/);
  assert.match(gen, /--algorithm/);
  assert.match(gen, /rsa-2048/);
  assert.match(buildProgram().helpInformation(), /^\s+dkim\b/m);
});
