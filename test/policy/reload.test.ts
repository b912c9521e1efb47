import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { postern, writeConfig } from '../helpers/cli.ts';
import { startChildServer, port } from '../helpers/child-server.ts';
import { tempDir } from '../helpers/server.ts';
import { startDnsServer } from '../helpers/dns-server.ts';
import { dropTestStore, storeToml, testStore } from '../helpers/backend.ts';
import { until } from '../helpers/until.ts';

/** `kill -HUP` (systemctl reload): [policy] and [dns] apply without a restart (issue #9). */

test('SIGHUP re-reads the config: a DNSBL added takes effect for new connections; other keys are named for a restart; a broken file changes nothing', { timeout: 120_000 }, async () => {
  const dir = tempDir('postern-reload-');
  const pg = testStore();
  const dns = await startDnsServer({ '2.0.0.127.bl.test': { A: ['127.0.0.2'] } });
  const base = `hostname = "mx.example.test"\ndata_dir = "${dir}/data"\ndomains = ["example.test"]\n${storeToml(pg)}[listen]\nsmtp = "127.0.0.1:0"\nlocal = "${dir}/postern.sock"\n[log]\nlevel = "info"\n`;
  const cfg = writeConfig(dir, base);
  const add = await postern(['user', 'add', 'alice@example.test', '--no-password', '--config', cfg]);
  assert.equal(add.status, 0, add.stderr);
  const srv = await startChildServer(cfg);
  const rcpt = async () => {
    const c = await SmtpTestClient.connect({ port: port(srv.endpoints.smtp!), localAddress: '127.0.0.2' });
    try {
      assert.equal((await c.command('EHLO client.test')).code, 250);
      assert.equal((await c.command('MAIL FROM:<x@remote.test>')).code, 250);
      return await c.command('RCPT TO:<alice@example.test>');
    } finally {
      await c.quit().catch(() => undefined);
    }
  };
  const reloaded = async (n: number, re: RegExp) => {
    srv.child.kill('SIGHUP');
    await until(`reload ${n} logged`, async () => (srv.output().match(/configuration (not )?reloaded/g) ?? []).length >= n, 20_000);
    assert.match(srv.output(), re);
  };
  try {
    assert.equal((await rcpt()).code, 250, 'no DNSBL configured yet');
    fs.writeFileSync(cfg, `${base}[dns]\nservers = ["${dns.address}"]\n[policy.dnsbl]\nzones = ["bl.test"]\n`);
    await reloaded(1, /configuration reloaded: dns, policy applied/);
    const refused = await rcpt();
    assert.equal(refused.code, 554);
    assert.match(refused.text, /blocked using bl\.test/);
    fs.writeFileSync(cfg, `${base.replace('mx.example.test', 'other.example.test')}[dns]\nservers = ["${dns.address}"]\n[policy.dnsbl]\nzones = ["bl.test"]\n`);
    await reloaded(2, /configuration reloaded: nothing to apply; restart to apply hostname/);
    fs.writeFileSync(cfg, `${base}[policy.dnsbl]\nzones = "not a list"\n`);
    await reloaded(3, /configuration not reloaded: .*zones/);
    assert.equal((await rcpt()).code, 554, 'the running configuration stays');
    assert.ok(srv.child.exitCode === null, 'still running');
  } finally {
    srv.child.kill('SIGTERM');
    await new Promise((r) => srv.child.once('exit', r));
    await dns.close();
    await dropTestStore(pg);
    fs.rmSync(path.join(dir), { recursive: true, force: true });
  }
});

test('SIGHUP applies [policy.spam]: a higher reject threshold turns a refusal into Junk delivery', { timeout: 120_000 }, async () => {
  const dir = tempDir('postern-reload-');
  const pg = testStore();
  const base = `hostname = "mx.example.test"\ndata_dir = "${dir}/data"\ndomains = ["example.test"]\n${storeToml(pg)}[listen]\nsmtp = "127.0.0.1:0"\nlocal = "${dir}/postern.sock"\n[log]\nlevel = "info"\n[policy.auth]\nenabled = false\n`;
  const cfg = writeConfig(dir, base);
  const add = await postern(['user', 'add', 'alice@example.test', '--no-password', '--config', cfg]);
  assert.equal(add.status, 0, add.stderr);
  const srv = await startChildServer(cfg);
  const gtube = 'From: <x@remote.test>\r\nTo: <alice@example.test>\r\nSubject: test\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <gtube@remote.test>\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n';
  const send = async () => {
    const c = await SmtpTestClient.connect({ port: port(srv.endpoints.smtp!) });
    try {
      return (await c.sendMail({ from: 'x@remote.test', to: ['alice@example.test'], message: gtube })).data;
    } finally {
      await c.quit().catch(() => undefined);
    }
  };
  try {
    assert.equal((await send())?.code, 550, 'GTUBE is above the default policy.spam.reject (15)');
    fs.writeFileSync(cfg, `${base}[policy.spam]\nreject = 5000\n`);
    srv.child.kill('SIGHUP');
    await until('reload logged', async () => /configuration reloaded: policy applied/.test(srv.output()), 20_000);
    const r = await send();
    assert.equal(r?.code, 250, r?.text);
    await until('logged as tagged', async () => /"decision":"tag"/.test(srv.output()), 5_000);
  } finally {
    srv.child.kill('SIGTERM');
    await new Promise((r) => srv.child.once('exit', r));
    await dropTestStore(pg);
    fs.rmSync(path.join(dir), { recursive: true, force: true });
  }
});
