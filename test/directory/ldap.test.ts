import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';
import { inbox, message, type TestServer } from '../helpers/server.ts';
import { Pop3TestClient, startPop3TestServer, type Pop3TestServer } from '../helpers/pop3-client.ts';
import { Slapd, missingSlapd, ldapConfig, SERVICE_PW } from '../helpers/slapd.ts';
import { DirectoryUnavailableError } from '../../src/directory/errors.ts';

/**
 * Users from a real OpenLDAP (test/helpers/slapd.ts) over real SMTP, IMAP and POP3
 * sockets, with both password checks (auth = "bind" and "compare").
 */
const skip = missingSlapd();
if (skip) console.log(`# skipping LDAP directory tests: ${skip}`);

let slapd: Slapd;
let secretFile: string;


before(async () => {
  if (skip) return;
  slapd = await Slapd.create();
  secretFile = path.join(slapd.dir, 'postern.secret');
  fs.writeFileSync(secretFile, `${SERVICE_PW}\n`);
});
after(async () => slapd?.destroy());

const plain = (user: string, pass: string) => Buffer.from(`\0${user}\0${pass}`).toString('base64');

/** SMTP AUTH PLAIN on the submission port from `from` (a loopback address: each test its own, for the ban guard). */
async function smtpAuth(t: TestServer, user: string, pass: string, from = '127.0.0.1'): Promise<{ code: number; text: string; enhanced: string | null }> {
  const c = await SmtpTestClient.connect({ port: t.submissionPort, localAddress: from });
  try {
    await c.command('EHLO client.test');
    const r = await c.command(`AUTH PLAIN ${plain(user, pass)}`);
    return { code: r.code, text: r.text, enhanced: r.enhanced };
  } finally {
    c.destroy();
  }
}

async function imapLogin(t: TestServer, user: string, pass: string, from = '127.0.0.1') {
  const c = await ImapTestClient.connect(t.imapPort, { localAddress: from });
  try {
    return await c.login(user, pass);
  } finally {
    c.close();
  }
}

/** POP3 USER/PASS (plaintext on loopback: auth.allow_plaintext_loopback); returns the PASS reply. */
async function pop3Login(t: Pop3TestServer, user: string, pass: string, from = '127.0.0.1'): Promise<string> {
  const c = await Pop3TestClient.connect(t.pop3Port, { localAddress: from });
  try {
    return await c.login(user, pass);
  } finally {
    c.close();
  }
}

async function deliver(t: TestServer, to: string[], subject: string) {
  const c = await SmtpTestClient.connect({ port: t.smtpPort });
  try {
    return await c.sendMail({ from: 'sender@remote.test', to, message: message(subject) });
  } finally {
    c.destroy();
  }
}

for (const mode of ['bind', 'compare'] as const) {
  describe(`LDAP users, auth = "${mode}"`, { skip }, () => {
    let t: Pop3TestServer;
    before(async () => {
      const listen = { smtp: '127.0.0.1:0', submission: '127.0.0.1:0', imap: '127.0.0.1:0', pop3: '127.0.0.1:0' };
      t = await startPop3TestServer({ ...ldapConfig(slapd, secretFile, mode), listen }, { users: [] });
    });
    after(async () => t?.stop());

    test('delivery to an LDAP user and to their alternate address; the account row is made on first delivery', async () => {
      assert.equal(await t.server.ctx.data.getAccount('alice@example.test'), null);
      const r = await deliver(t, ['alice@example.test', 'a.smith@example.test', 'alice+news@example.test'], `ldap-${mode}-1`);
      assert.deepEqual(r.rcpts.map((x) => x.code), [250, 250, 250]);
      assert.equal(r.data?.code, 250);
      const row = await t.server.ctx.data.getAccount('alice@example.test');
      assert.ok(row, 'account row created');
      assert.equal(row.passwordHash, null);
      assert.equal(row.displayName, 'Alice Smith');
      assert.equal(await t.server.ctx.data.accountQuotaBytes(row.id), 1024 ** 3, 'quota from mailQuota: 1G');
      // One message, delivered once to the one account the three addresses name.
      assert.equal((await inbox(t, 'alice@example.test')).filter((m) => m.subject === `ldap-${mode}-1`).length, 1);
    });

    test('unknown and disabled users are refused at RCPT with 550 5.1.1', async () => {
      const r = await deliver(t, ['nobody@example.test', 'dave@example.test', 'bob@example.test'], `ldap-${mode}-2`);
      assert.deepEqual(r.rcpts.map((x) => `${x.code} ${x.enhanced}`), ['550 5.1.1', '550 5.1.1', '250 2.1.5']);
      assert.equal(await t.server.ctx.data.getAccount('dave@example.test'), null, 'no row for a disabled user');
    });

    test('a group address fans out to its enabled members', async () => {
      const r = await deliver(t, ['staff@example.test'], `ldap-${mode}-group`);
      assert.equal(r.rcpts[0]!.code, 250);
      assert.equal(r.data?.code, 250);
      for (const u of ['alice@example.test', 'bob@example.test']) assert.equal((await inbox(t, u)).filter((m) => m.subject === `ldap-${mode}-group`).length, 1, u);
      assert.equal(await t.server.ctx.data.getAccount('dave@example.test'), null);
    });

    test('filter injection finds nothing: RCPT, login and lookups search for the literal value', async () => {
      const r = await deliver(t, ['*)(uid=*@example.test', '*@example.test'], `ldap-${mode}-inj`);
      assert.deepEqual(r.rcpts.map((x) => x.code), [550, 550]);
      assert.deepEqual(await t.server.ctx.directory.findUsers('*)(uid=*'), []);
      assert.deepEqual(await t.server.ctx.directory.findUsers('*'), []);
      assert.equal((await t.server.ctx.directory.authenticate!('*)(uid=*', 'alice-pw')).kind, 'unknown');
      assert.equal((await t.server.ctx.directory.authenticate!('*', 'alice-pw')).kind, 'unknown');
      assert.equal((await imapLogin(t, '*)(uid=*', 'alice-pw', '127.0.0.30')).status, 'NO');
      assert.equal(await pop3Login(t, '*', 'alice-pw', '127.0.0.30'), '-ERR [AUTH] Authentication failed');
    });

    test('SMTP AUTH, IMAP LOGIN and POP3 USER/PASS with LDAP passwords ({SSHA}, {ARGON2}, {CRYPT}); login by uid', async () => {
      for (const [user, pass] of [['alice@example.test', 'alice-pw'], ['bob@example.test', 'bob-pw'], ['carol@example.test', 'carol-pw']]) {
        const r = await smtpAuth(t, user!, pass!);
        assert.equal(r.code, 235, `${user}: ${r.code} ${r.text}`);
      }
      const c = await ImapTestClient.connect(t.imapPort);
      const login = await c.login('bob@example.test', 'bob-pw');
      assert.equal(login.status, 'OK', login.text);
      const sel = await c.command('SELECT INBOX');
      assert.equal(sel.status, 'OK');
      c.close();
      // Login by uid (login_filter): the session is the user's address.
      const u = await ImapTestClient.connect(t.imapPort);
      assert.equal((await u.login('carol', 'carol-pw')).status, 'OK');
      const ns = await u.command('GETQUOTAROOT INBOX');
      assert.equal(ns.status, 'OK');
      u.close();
      assert.ok(await t.server.ctx.data.getAccount('carol@example.test'), 'account row created at first login');
      // POP3: alice's maildrop holds what was delivered to her three addresses and the group.
      const p = await Pop3TestClient.connect(t.pop3Port);
      assert.match(await p.login('alice@example.test', 'alice-pw'), /^\+OK Logged in, \d+ messages/);
      const list = await p.multi('UIDL');
      assert.equal(list.status.slice(0, 3), '+OK');
      assert.ok(list.lines.length >= 2, list.lines.join(' '));
      assert.equal(await p.cmd('QUIT'), '+OK Logging out');
      for (const [user, pass] of [['bob', 'bob-pw'], ['carol', 'carol-pw']]) assert.match(await pop3Login(t, user!, pass!), /^\+OK Logged in/, user);
    });

    test('SCRAM-SHA-256 is not offered to LDAP users (no secret for it), and refused cleanly when a client insists', async () => {
      const c = await SmtpTestClient.connect({ port: t.submissionPort, localAddress: '127.0.0.31' });
      const ehlo = await c.command('EHLO client.test');
      assert.ok(ehlo.lines.includes('AUTH PLAIN LOGIN'), ehlo.text);
      const i = await ImapTestClient.connect(t.imapPort);
      const caps = await i.command('CAPABILITY');
      assert.match(caps.lines.join(' '), / AUTH=PLAIN AUTH=LOGIN/);
      assert.doesNotMatch(caps.lines.join(' '), /SCRAM/);
      i.close();
      const p = await Pop3TestClient.connect(t.pop3Port);
      const capa = await p.multi('CAPA');
      assert.ok(capa.lines.includes('SASL PLAIN LOGIN'), capa.lines.join(' | '));
      assert.equal((await p.multi('AUTH')).lines.join(' '), 'PLAIN LOGIN');
      assert.match(await p.cmd('AUTH SCRAM-SHA-256'), /^-ERR Unsupported mechanism; use one of PLAIN LOGIN/);
      await p.cmd('QUIT');
      const r = await c.command(`AUTH SCRAM-SHA-256 ${Buffer.from('n,,n=alice@example.test,r=abcdefghijklmnop').toString('base64')}`);
      assert.equal(r.code, 501);
      assert.match(r.text, /not available for this user: use PLAIN/);
      c.destroy();
      assert.equal(await t.server.ctx.security.bans.banned('127.0.0.31'), null);
    });

    test('wrong passwords and a disabled user fail, and count toward a ban', async () => {
      const ip = mode === 'bind' ? '127.0.0.40' : '127.0.0.41';
      assert.equal((await smtpAuth(t, 'alice@example.test', 'wrong', ip)).code, 535);
      assert.equal((await imapLogin(t, 'bob@example.test', 'wrong', ip)).status, 'NO');
      assert.equal(await t.server.ctx.security.bans.banned(ip), null, 'two failures: not yet');
      // dave's password is right, but he is disabled.
      assert.equal(await pop3Login(t, 'dave', 'dave-pw', ip), '-ERR [AUTH] Authentication failed');
      assert.ok(await t.server.ctx.security.bans.banned(ip), 'banned after 3 failures (SMTP, IMAP, POP3)');
      const again = await SmtpTestClient.connect({ port: t.submissionPort, localAddress: ip });
      assert.equal(again.greeting.code, 421);
      again.destroy();
      // Another client with the right password is not affected.
      assert.equal((await smtpAuth(t, 'dave@example.test', 'dave-pw', '127.0.0.42')).code, 535);
      assert.equal((await imapLogin(t, 'dave@example.test', 'dave-pw', '127.0.0.42')).status, 'NO');
      assert.equal((await smtpAuth(t, 'alice@example.test', 'alice-pw', '127.0.0.43')).code, 235);
    });

    test('LDAP stopped: 451 4.4.3 at RCPT, SMTP AUTH 454 4.7.0, IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP], no ban, no bounce; all recover when it is back', async () => {
      const ip = mode === 'bind' ? '127.0.0.50' : '127.0.0.51';
      // Warm the pool so the outage hits open connections too.
      assert.equal((await deliver(t, ['bob@example.test'], `ldap-${mode}-warm`)).data?.code, 250);
      await slapd.stop();
      try {
        // Names not looked up before (nothing cached).
        const r = await deliver(t, [`erin-${mode}@example.test`, `carol+${mode}@example.test`], `ldap-${mode}-down`);
        assert.deepEqual(r.rcpts.map((x) => `${x.code} ${x.enhanced}`), ['451 4.4.3', '451 4.4.3']);
        for (let i = 0; i < 4; i++) {
          const a = await smtpAuth(t, `frank${i}@example.test`, 'x', ip);
          assert.equal(`${a.code} ${a.enhanced}`, '454 4.7.0', a.text);
        }
        const l = await imapLogin(t, `gina-${mode}@example.test`, 'x', ip);
        assert.equal(l.status, 'NO');
        assert.match(l.text, /^\[UNAVAILABLE\]/);
        // carol's entry is cached from her earlier logins; a wrong password still needs LDAP (a bind, or a fresh read in compare mode).
        assert.match(await pop3Login(t, `ivy-${mode}@example.test`, 'x', ip), /^-ERR \[SYS\/TEMP\] /);
        assert.match(await pop3Login(t, 'carol', 'wrong', ip), /^-ERR \[SYS\/TEMP\] /);
        await assert.rejects(t.server.ctx.directory.resolve(`henry-${mode}@example.test`), DirectoryUnavailableError);
        assert.equal(await t.server.ctx.security.bans.banned(ip), null, 'an outage is not a failed login');
        assert.equal((await t.server.ctx.data.listQueue()).length, 0, 'nothing queued: no bounce');
      } finally {
        await slapd.start();
      }
      const r = await deliver(t, [`carol+${mode}@example.test`], `ldap-${mode}-back`);
      assert.equal(r.rcpts[0]!.code, 250);
      assert.equal(r.data?.code, 250);
      assert.equal((await smtpAuth(t, 'bob@example.test', 'bob-pw', ip)).code, 235);
      assert.equal((await imapLogin(t, 'carol@example.test', 'carol-pw', ip)).status, 'OK');
      assert.match(await pop3Login(t, 'bob', 'bob-pw', ip), /^\+OK Logged in/);
    });

    test('LDAP hanging (accepts, never answers): lookups and logins time out into the same temporary failures, then recover', async () => {
      const ip = mode === 'bind' ? '127.0.0.60' : '127.0.0.61';
      slapd.pause();
      try {
        const started = Date.now();
        const r = await deliver(t, [`jack-${mode}@example.test`], `ldap-${mode}-hung`);
        assert.deepEqual(r.rcpts.map((x) => `${x.code} ${x.enhanced}`), ['451 4.4.3']);
        // timeout = "4s" in ldapConfig: the reply comes when it expires, not when the client gives up.
        assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
        assert.equal(`${(await smtpAuth(t, `kate-${mode}@example.test`, 'x', ip)).code}`, '454');
        const l = await imapLogin(t, `liam-${mode}@example.test`, 'x', ip);
        assert.match(`${l.status} ${l.text}`, /^NO \[UNAVAILABLE\]/);
        assert.match(await pop3Login(t, `mia-${mode}@example.test`, 'x', ip), /^-ERR \[SYS\/TEMP\] /);
        assert.equal(await t.server.ctx.security.bans.banned(ip), null);
      } finally {
        slapd.resume();
      }
      const r = await deliver(t, ['carol@example.test'], `ldap-${mode}-thawed`);
      assert.equal(r.rcpts[0]!.code, 250);
      assert.equal((await smtpAuth(t, 'carol', 'carol-pw', ip)).code, 235);
    });
  });
}
