import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { pino } from 'pino';
import { startTestServer, message, type TestServer } from '../helpers/server.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.ts';
import { postern, writeConfig } from '../helpers/cli.ts';
import { storeToml } from '../helpers/backend.ts';
import { systemResolver } from '../../src/net/dns.ts';
import { dnsblName, dnsblZones, lookupDnsbl } from '../../src/policy/dnsbl.ts';
import { addressMatches, normalizeRuleValue } from '../../src/policy/access.ts';

/**
 * Inbound checks of the MX port (issue #9): access lists and DNSBL/DNSWL, through a real DNS
 * server on a loopback UDP port (test/helpers/dns-server.ts) and node's resolver.
 */

let dns: TestDnsServer;
let t: TestServer;
let cliConfig: string;

before(async () => {
  dns = await startDnsServer({
    // 127.0.0.2 is listed by both blocklists; 127.0.0.6 only by the weak one; 127.0.0.7 also by the allowlist.
    '2.0.0.127.bl.test': { A: ['127.0.0.2'] },
    '2.0.0.127.weak.test': { A: ['127.0.0.4'] },
    '6.0.0.127.weak.test': { A: ['127.0.0.4'] },
    '7.0.0.127.bl.test': { A: ['127.0.0.2'] },
    '7.0.0.127.wl.test': { A: ['127.0.10.2'] },
    // "query refused" (127.255.255.x) and a non-127 answer are never listings.
    '8.0.0.127.bl.test': { A: ['127.255.255.254'] },
    '9.0.0.127.bl.test': { A: ['198.51.100.1'] },
  });
  t = await startTestServer(
    {
      policy: {
        trusted_networks: ['127.0.0.10'],
        dnsbl: { zones: ['bl.test', { zone: 'weak.test', weight: 0.5 }, { zone: 'wl.test', weight: -5 }], threshold: 1, timeout: '1s' },
      },
    },
    { resolver: systemResolver([dns.address], 1000) },
  );
  cliConfig = writeConfig(t.dir, `hostname = "mx.example.test"\ndata_dir = "${t.dir}"\ndomains = ["example.test"]\n${storeToml(t.store)}\n[dns]\nservers = ["${dns.address}"]\ntimeout = "1s"\n[policy]\ntrusted_networks = ["127.0.0.10"]\n[policy.dnsbl]\nzones = ["bl.test", { zone = "weak.test", weight = 0.5 }, { zone = "wl.test", weight = -5 }]\ntimeout = "1s"\n`);
});
after(async () => {
  await t.stop();
  await dns.close();
});

/** RCPT replies for `to` from a client at `ip` with sender `from` (one transaction each). */
async function rcpts(ip: string, from: string, to: string[]): Promise<Array<{ code: number; enhanced: string | null; text: string }>> {
  const c = await SmtpTestClient.connect({ port: t.smtpPort, localAddress: ip });
  try {
    const r = await c.sendMail({ from, to, message: message('policy') });
    return r.rcpts;
  } finally {
    await c.quit().catch(() => undefined);
  }
}

test('DNSBL names: reversed octets and nibbles (RFC 5782 §2.1, §2.4)', () => {
  assert.equal(dnsblName('192.0.2.99', 'bl.test'), '99.2.0.192.bl.test');
  assert.equal(dnsblName('::ffff:192.0.2.99', 'bl.test'), '99.2.0.192.bl.test');
  assert.equal(dnsblName('2001:db8:1:2:3:4:567:89ab', 'bl.test'), 'b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test');
  assert.equal(dnsblName('not an ip', 'bl.test'), null);
});

test('DNSBL lookups: listed, weights, "query refused" and non-127 answers ignored, a silent zone fails open within the timeout', async () => {
  const resolver = systemResolver([dns.address], 2000);
  const zones = dnsblZones({ zones: ['bl.test', { zone: 'weak.test', weight: 0.5, answers: [] }, { zone: 'slow.test', weight: 1, answers: [] }] });
  dns.set('2.0.0.127.slow.test', { silent: true });
  const started = Date.now();
  const listed = await lookupDnsbl(resolver, zones, '127.0.0.2', 300);
  assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
  assert.deepEqual(listed.listed, [
    { zone: 'bl.test', answer: '127.0.0.2', weight: 1 },
    { zone: 'weak.test', answer: '127.0.0.4', weight: 0.5 },
  ]);
  assert.equal(listed.score, 1.5);
  assert.deepEqual(listed.failed, [{ zone: 'slow.test', error: 'ETIMEOUT' }]);
  for (const ip of ['127.0.0.8', '127.0.0.9', '127.0.0.3']) assert.equal((await lookupDnsbl(resolver, zones, ip, 1000)).score, 0, ip);
  // Only the configured answers count when a zone names them.
  const strict = dnsblZones({ zones: [{ zone: 'bl.test', weight: 1, answers: ['127.0.0.3'] }] });
  assert.equal((await lookupDnsbl(resolver, strict, '127.0.0.2', 1000)).score, 0);
  dns.set('2.0.0.127.slow.test', undefined);
});

test('a listed client is refused at RCPT with 554 5.7.1 naming the zone; unlisted, below the threshold, allowlisted and trusted clients are not', async () => {
  const [listed] = await rcpts('127.0.0.2', 'someone@remote.test', ['alice@example.test']);
  assert.equal(listed!.code, 554);
  assert.equal(listed!.enhanced, '5.7.1');
  assert.equal(listed!.text, 'Service unavailable; client [127.0.0.2] blocked using bl.test');
  assert.equal((await rcpts('127.0.0.3', 'someone@remote.test', ['alice@example.test']))[0]!.code, 250, 'not listed');
  assert.equal((await rcpts('127.0.0.6', 'someone@remote.test', ['alice@example.test']))[0]!.code, 250, 'weight 0.5 < threshold 1');
  assert.equal((await rcpts('127.0.0.7', 'someone@remote.test', ['alice@example.test']))[0]!.code, 250, 'the allowlist (weight -5) outweighs the listing');
  assert.equal((await rcpts('127.0.0.8', 'someone@remote.test', ['alice@example.test']))[0]!.code, 250, '127.255.255.254 is "query refused"');
  // A trusted network skips the checks and may relay (Postfix permit_mynetworks); others may not.
  dns.set('10.0.0.127.bl.test', { A: ['127.0.0.2'] });
  const trusted = await rcpts('127.0.0.10', 'someone@remote.test', ['alice@example.test', 'friend@elsewhere.test']);
  assert.deepEqual(trusted.map((r) => r.code), [250, 250]);
  const [relay] = await rcpts('127.0.0.3', 'someone@remote.test', ['friend@elsewhere.test']);
  assert.equal(relay!.code, 554);
  assert.match(relay!.text, /Relay access denied/);
});

test('access rule values: addresses, domains, CIDRs, the null sender; subaddresses match their user', () => {
  assert.equal(normalizeRuleValue('sender', 'Spammer@Example.NET'), 'spammer@example.net');
  assert.equal(normalizeRuleValue('sender', 'example.net'), '@example.net');
  assert.equal(normalizeRuleValue('sender', '@Example.net'), '@example.net');
  assert.equal(normalizeRuleValue('sender', '<>'), '<>');
  assert.equal(normalizeRuleValue('client', '198.51.100.0/24'), '198.51.100.0/24');
  assert.equal(normalizeRuleValue('client', '::ffff:192.0.2.1'), '192.0.2.1');
  assert.throws(() => normalizeRuleValue('client', '300.1.1.1'), /not an IP address or CIDR/);
  assert.throws(() => normalizeRuleValue('sender', 'no spaces@'), /not an address/);
  assert.ok(addressMatches('@example.net', 'x@example.net'));
  assert.ok(!addressMatches('@example.net', 'x@sub.example.net'));
  assert.ok(addressMatches('alice@x.test', 'alice+news@x.test'));
  assert.ok(!addressMatches('alice@x.test', 'alicex@x.test'));
  assert.ok(addressMatches('<>', ''));
});

test('access lists from the CLI: a user blocks a sender for themselves only; the admin blocks for everyone; allow rules beat the DNSBL', async () => {
  const add = (args: string[]) => postern(['access', 'add', ...args, '--config', cliConfig]);
  let r = await add(['--user', 'alice@example.test', '--reject-sender', 'Spammer@Remote.test']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /added: reject sender spammer@remote\.test for alice@example\.test/);
  const [toAlice, toBob] = await rcpts('127.0.0.3', 'spammer@remote.test', ['alice@example.test', 'bob@example.test']);
  assert.equal(toAlice!.code, 550);
  assert.equal(toAlice!.enhanced, '5.7.1');
  assert.match(toAlice!.text, /<spammer@remote\.test>: Sender address rejected: not accepted by the recipient/);
  assert.equal(toBob!.code, 250, 'only alice blocked the sender');

  // The other rules straight into the store (each CLI run costs a process start).
  const data = t.server.ctx.data;
  const rule = async (scope: string, kind: 'client' | 'sender', action: 'reject' | 'accept', value: string) => data.addAccessRule({ scope, kind, action, value: normalizeRuleValue(kind, value) });
  await rule('', 'sender', 'reject', 'bad.test');
  assert.deepEqual((await rcpts('127.0.0.3', 'x@bad.test', ['alice@example.test', 'bob@example.test'])).map((x) => x.code), [550, 550]);
  await rule('', 'client', 'reject', '127.0.0.5');
  const [client] = await rcpts('127.0.0.5', 'x@remote.test', ['bob@example.test']);
  assert.equal(client!.code, 550);
  assert.match(client!.text, /Client host \[127\.0\.0\.5\] rejected: Access denied/);

  // bob always accepts his friend, even from a listed client; alice does not.
  await rule('bob@example.test', 'sender', 'accept', 'friend@remote.test');
  assert.deepEqual((await rcpts('127.0.0.2', 'friend@remote.test', ['bob@example.test', 'alice@example.test'])).map((x) => x.code), [250, 554]);
  // A user's allow rule does not undo the administrator's block.
  await rule('bob@example.test', 'sender', 'accept', 'y@bad.test');
  assert.equal((await rcpts('127.0.0.3', 'y@bad.test', ['bob@example.test']))[0]!.code, 550);

  const list = await postern(['access', 'list', '--config', cliConfig]);
  assert.equal(list.status, 0, list.stderr);
  for (const line of [/everyone\s+reject\s+sender\s+@bad\.test/, /alice@example\.test\s+reject\s+sender\s+spammer@remote\.test/, /bob@example\.test\s+accept\s+sender\s+friend@remote\.test/, /everyone\s+reject\s+client\s+127\.0\.0\.5/]) {
    assert.match(list.stdout, line);
  }
  const del = await postern(['access', 'del', '--reject-client', '127.0.0.5', '--config', cliConfig]);
  assert.equal(del.status, 0, del.stderr);
  assert.equal((await rcpts('127.0.0.5', 'x@remote.test', ['bob@example.test']))[0]!.code, 250);
  assert.equal(await data.deleteAccessRule('', 'client', '127.0.0.5'), false, 'gone already');
  const two = await add(['--reject-client', '127.0.0.1', '--reject-sender', 'a@b.test']);
  assert.notEqual(two.status, 0);
  assert.match(two.stderr, /exactly one of/);
});

test('pregreet: a client that talks before the greeting (smtp.greet_delay) gets 421 and is logged; a patient one is served', async () => {
  const lines: string[] = [];
  const s = await startTestServer({ smtp: { greet_delay: '400ms' } }, { log: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }) });
  try {
    const early = net.connect({ port: s.smtpPort, host: '127.0.0.1', localAddress: '127.0.0.12' });
    await new Promise<void>((r) => early.once('connect', () => r()));
    early.write('EHLO spambot.test\r\n');
    let got = '';
    early.on('data', (d: Buffer) => (got += d.toString()));
    await new Promise<void>((r) => early.once('close', () => r()));
    assert.match(got, /^421 .*You talk too soon/m);
    assert.doesNotMatch(got, /^220 /m, 'no greeting for it');
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; client?: string; command?: string }).find((l) => l.msg.startsWith('early talker rejected'));
    assert.ok(logged, lines.join('\n'));
    assert.equal(logged.client, '127.0.0.12');
    assert.equal(logged.command, 'EHLO spambot.test');
    const patient = await SmtpTestClient.connect({ port: s.smtpPort });
    assert.equal(patient.greeting.code, 220);
    await patient.quit();
  } finally {
    await s.stop();
  }
});

test('postern policy test: every check with its reason, and the decision', async () => {
  const run = (args: string[]) => postern(['policy', 'test', ...args, '--config', cliConfig]);
  let r = await run(['--ip', '127.0.0.2', '--from', 'someone@remote.test', '--to', 'alice@example.test']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /recipient: delivers to alice@example\.test/);
  assert.match(r.stdout, /access\s+continue/);
  assert.match(r.stdout, /dnsbl\s+reject: listed by bl\.test=127\.0\.0\.2 \(1\), weak\.test=127\.0\.0\.4 \(0\.5\): score 1\.5 >= 1/);
  assert.match(r.stdout, /decision: reject \(554 5\.7\.1 Service unavailable; client \[127\.0\.0\.2\] blocked using bl\.test\)/);
  r = await run(['--ip', '127.0.0.3', '--to', 'nobody@example.test']);
  assert.match(r.stdout, /unknown user/);
  assert.match(r.stdout, /decision: reject/);
  r = await run(['--ip', '127.0.0.10', '--to', 'alice@example.test']);
  assert.match(r.stdout, /trusted_networks: no inbound checks; decision: accept/);
});
