import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { Pop3TestClient } from '../helpers/pop3-client.ts';
import { writeConfig } from '../helpers/cli.ts';
import { startChildServer, port } from '../helpers/child-server.ts';
import { tempDir } from '../helpers/server.ts';
import { openPostgresStores, openStores } from '../../src/store/open.ts';
import { passwordSecrets } from '../../src/auth/secrets.ts';
import { dropTestStore, storeToml, testStore } from '../helpers/backend.ts';

/**
 * DESIGN.md durability for POP3: a `+OK` after QUIT means the deletions are
 * committed. Twelve users each DELE all their messages and QUIT at once; the server
 * is killed with SIGKILL as soon as a few have their +OK. After a restart every user
 * who got the +OK has an empty INBOX, and every other user has all or none of their
 * messages (the UPDATE state is one transaction, never half done).
 */
const USERS = 12;
const PER_USER = 5;

test('kill -9 during 12 POP3 QUITs: every acknowledged deletion is durable, none is half done', { timeout: 180_000 }, async () => {
  const dir = tempDir('postern-pop3-kill9-');
  const pg = testStore();
  const cfg = writeConfig(
    dir,
    `hostname = "mx.example.test"\ndata_dir = "${dir}/data"\ndomains = ["example.test"]\n${storeToml(pg)}[listen]\nsmtp = "127.0.0.1:0"\npop3s = "127.0.0.1:0"\n[log]\nlevel = "warn"\n`,
  );
  const users = Array.from({ length: USERS }, (_, i) => `p${i + 1}@example.test`);
  const open = () => (pg ? openPostgresStores({ url: pg.url, schema: pg.schema, poolSize: 2 }) : openStores(`${dir}/data`));
  {
    // The accounts, as `postern user add` creates them (one password hash for all: argon2 is slow on purpose).
    const stores = await open();
    const { hash, scram } = await passwordSecrets('secret');
    await stores.data.addDomain('example.test');
    for (const u of users) await stores.data.addAccount(u, hash, scram);
    await stores.close();
  }
  const srv = await startChildServer(cfg);
  const pop3s = port(/^ {2}pop3s\s+(\S+)$/m.exec(srv.output())![1]!);
  const smtp = await SmtpTestClient.connect({ port: port(srv.endpoints.smtp!), timeoutMs: 10_000 });
  await smtp.command('EHLO client.test');
  for (const u of users) {
    for (let i = 0; i < PER_USER; i++) {
      const r = await smtp.sendMail({ from: 'a@client.test', to: [u], message: `From: a@client.test\r\nTo: ${u}\r\nSubject: k9 ${i}\r\n\r\nbody ${i}\r\n` });
      assert.equal(r.data?.code, 250);
    }
  }
  smtp.destroy();

  // Every user logs in and marks everything first; then all QUIT together.
  const sessions = await Promise.all(
    users.map(async (u) => {
      const c = await Pop3TestClient.connect(pop3s, { tls: true });
      assert.match(await c.login(u), new RegExp(`^\\+OK Logged in, ${PER_USER} messages`));
      for (let i = 1; i <= PER_USER; i++) assert.equal(await c.cmd(`DELE ${i}`), `+OK Message ${i} deleted`);
      return { u, c };
    }),
  );
  const acked = new Set<string>();
  let killed = false;
  await Promise.all(
    sessions.map(async ({ u, c }) => {
      const reply = await c.cmd('QUIT').catch(() => '');
      if (reply === `+OK Logging out, ${PER_USER} messages deleted`) acked.add(u);
      if (!killed && acked.size >= 3) {
        killed = true;
        srv.child.kill('SIGKILL');
      }
    }),
  );
  if (!killed) srv.child.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(acked.size >= 3, `at least 3 acknowledged QUITs (got ${acked.size})`);

  const again = await startChildServer(cfg);
  again.child.kill('SIGTERM');
  await new Promise((r) => again.child.once('exit', r));
  const stores = await open();
  try {
    for (const u of users) {
      const acct = (await stores.data.getAccount(u))!;
      const box = (await stores.data.getMailbox(acct.id, 'INBOX'))!;
      const left = (await stores.data.listMessageUids(box.id)).length;
      if (acked.has(u)) assert.equal(left, 0, `${u} got +OK: its deletions survived the kill`);
      else assert.ok(left === 0 || left === PER_USER, `${u}: all or nothing deleted (${left} left)`);
    }
  } finally {
    await stores.close();
    await dropTestStore(pg);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
