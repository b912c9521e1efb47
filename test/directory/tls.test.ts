import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { startTestServer, message, type TestServer } from '../helpers/server.ts';
import { Slapd, missingSlapd, ldapConfig, SERVICE_PW } from '../helpers/slapd.ts';
import { createDirectory } from '../../src/directory/create.ts';
import { DirectoryUnavailableError } from '../../src/directory/errors.ts';
import { parseConfig } from '../../src/config/load.ts';

/**
 * LDAP over TLS against the real slapd: implicit TLS (ldaps://) and StartTLS
 * (RFC 4513 §3), verified against tls_ca_file. slapd shows uid=tina only to clients
 * over TLS (an ACL on tls_ssf), so finding her proves the connection is encrypted.
 */
const skip = missingSlapd();
let slapd: Slapd;
let secret: string;

before(async () => {
  if (skip) return;
  slapd = await Slapd.create();
  secret = path.join(slapd.dir, 'secret');
  fs.writeFileSync(secret, `${SERVICE_PW}\n`);
});
after(async () => slapd?.destroy());

const plain = (user: string, pass: string) => Buffer.from(`\0${user}\0${pass}`).toString('base64');

async function rcpt(t: TestServer, to: string): Promise<string> {
  const c = await SmtpTestClient.connect({ port: t.smtpPort });
  try {
    const r = await c.sendMail({ from: 'sender@remote.test', to: [to], message: message(`tls ${to}`) });
    return `${r.rcpts[0]!.code} ${r.rcpts[0]!.enhanced}`;
  } finally {
    c.destroy();
  }
}

async function smtpAuth(t: TestServer, user: string, pass: string): Promise<number> {
  const c = await SmtpTestClient.connect({ port: t.submissionPort });
  try {
    await c.command('EHLO client.test');
    return (await c.command(`AUTH PLAIN ${plain(user, pass)}`)).code;
  } finally {
    c.destroy();
  }
}

const variants = [
  { name: 'ldaps://', extra: () => ({ url: slapd.ldapsUrl, tls_ca_file: slapd.caFile }) },
  { name: 'StartTLS', extra: () => ({ url: slapd.url, starttls: true, tls_ca_file: slapd.caFile }) },
];

for (const v of variants) {
  describe(`LDAP over ${v.name}`, { skip }, () => {
    let t: TestServer;
    before(async () => {
      t = await startTestServer(ldapConfig(slapd, secret, 'bind', v.extra()), { users: [] });
    });
    after(async () => t?.stop());

    test('the TLS-only user receives mail and logs in (bind as the user over TLS); the pool re-opens TLS connections after a restart', async () => {
      assert.equal(await rcpt(t, 'tina@example.test'), '250 2.1.5');
      assert.equal(await smtpAuth(t, 'tina@example.test', 'tina-pw'), 235);
      assert.equal(await smtpAuth(t, 'tina', 'tina-pw'), 235);
      await slapd.stop();
      try {
        assert.equal(await rcpt(t, 'carol@example.test'), '451 4.4.3');
      } finally {
        await slapd.start();
      }
      // The old connections are dead; new ones are opened (and upgraded again, for StartTLS).
      assert.equal(await rcpt(t, 'carol@example.test'), '250 2.1.5');
      assert.equal(await smtpAuth(t, 'tina', 'tina-pw'), 235);
    });
  });
}

test('over plain ldap:// the TLS-only user is not visible (the ACL the TLS tests rely on)', { skip }, async () => {
  const t = await startTestServer(ldapConfig(slapd, secret, 'bind'), { users: [] });
  try {
    assert.equal(await rcpt(t, 'tina@example.test'), '550 5.1.1');
    assert.equal(await rcpt(t, 'carol@example.test'), '250 2.1.5');
  } finally {
    await t.stop();
  }
});

test('a certificate that does not verify (no tls_ca_file) is a temporary failure, logged with the TLS error', { skip }, async () => {
  const t = await startTestServer({}, { users: [] });
  const lines: string[] = [];
  const log = pino(
    { level: 'warn' },
    new Writable({
      write(chunk: Buffer, _e, cb) {
        lines.push(chunk.toString());
        cb();
      },
    }),
  );
  try {
    for (const extra of [{ url: slapd.ldapsUrl }, { url: slapd.url, starttls: true }]) {
      const cfg = ldapConfig(slapd, secret, 'bind', extra);
      const config = { ...t.server.ctx.config, directory: parseConfig({ directory: cfg.directory }, 'test').directory };
      const d = createDirectory(config, t.server.ctx.data, log);
      try {
        await assert.rejects(d.resolve('carol@example.test'), DirectoryUnavailableError);
        await assert.rejects(d.authenticate!('carol@example.test', 'carol-pw'), DirectoryUnavailableError);
      } finally {
        await d.close();
      }
    }
    const unavailable = lines.filter((l) => l.includes('LDAP directory unavailable'));
    assert.equal(unavailable.length, 2, lines.join(''));
    for (const l of unavailable) assert.match(l, /self[- ]signed|certificate/i);
  } finally {
    await t.stop();
  }
});
