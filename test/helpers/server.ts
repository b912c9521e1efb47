import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { passwordSecrets } from '../../src/auth/secrets.ts';
import type { DnsResolver } from '../../src/net/dns.ts';
import { unreachableDns } from './dns.ts';
import { dropTestStore, testStore, type TestStore } from './backend.ts';

export interface TestServer {
  server: RunningServer;
  dir: string;
  smtpPort: number;
  lmtpPort: number;
  submissionPort: number;
  submissionsPort: number;
  imapPort: number;
  imapsPort: number;
  socketPath: string;
  /** The PostgreSQL test store (undefined on SQLite): for CLI configs pointing at this server's data. */
  store: TestStore | undefined;
  stop(): Promise<void>;
}

/** A throw-away data directory under the OS temp dir. */
export function tempDir(prefix = 'postern-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * Starts a real server in this process on loopback ports picked by the OS, with
 * domain example.test and users alice@ and bob@ (password "secret"). Every TCP
 * listener (smtp, submission, submissions, lmtp) is on; `listen` overrides replace the set.
 */
export async function startTestServer(overrides: Partial<ConfigInput> = {}, opts: { users?: string[]; resolver?: DnsResolver; delivery?: boolean; log?: Logger } = {}): Promise<TestServer> {
  const dir = tempDir();
  const pgStore = testStore();
  const config = parseConfig(
    {
      hostname: 'mx.example.test',
      data_dir: dir,
      domains: ['example.test'],
      listen: { smtp: '127.0.0.1:0', lmtp: '127.0.0.1:0', submission: '127.0.0.1:0', submissions: '127.0.0.1:0', imap: '127.0.0.1:0', imaps: '127.0.0.1:0', pop3: '127.0.0.1:0', pop3s: '127.0.0.1:0', local: path.join(dir, 'postern.sock') },
      log: { level: 'silent' },
      ...overrides,
      store: { ...pgStore, ...overrides.store },
    },
    'test',
  );
  config.listen.local ??= path.join(dir, 'postern.sock');
  // Remote domains: a DNS that always fails temporarily, unless the test brings its own (queued mail stays deferred, nothing bounces).
  const server = await startServer(config, opts.log ?? pino({ level: process.env.POSTERN_TEST_LOG ?? 'silent' }), { resolver: opts.resolver ?? unreachableDns, delivery: opts.delivery ?? true });
  const { hash, scram } = await passwordSecrets('secret');
  for (const u of opts.users ?? ['alice@example.test', 'bob@example.test']) await server.ctx.data.addAccount(u, hash, scram);
  const port = (svc: string) => Number(server.endpoints.find((e) => e.service === svc)?.address.split(':').pop() ?? 0);
  return {
    server,
    dir,
    smtpPort: port('smtp'),
    lmtpPort: port('lmtp'),
    submissionPort: port('submission'),
    submissionsPort: port('submissions'),
    imapPort: port('imap'),
    imapsPort: port('imaps'),
    socketPath: config.listen.local,
    store: pgStore,
    async stop() {
      await server.stop();
      await dropTestStore(pgStore);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Messages in a user's INBOX (or another mailbox). */
export async function inbox(t: TestServer, email: string, mailbox = 'INBOX') {
  const acct = await t.server.ctx.data.getAccount(email);
  if (!acct) throw new Error(`no account ${email}`);
  return t.server.ctx.data.listMessages(acct.id, mailbox);
}

export async function blobText(t: TestServer, hash: string): Promise<string> {
  return (await t.server.ctx.blobs.readAll(hash)).toString('latin1');
}

/** A small RFC 5322 message. */
export function message(subject: string, body = 'Hello.\r\n', extra = ''): string {
  return `From: Sender <sender@remote.test>\r\nTo: alice@example.test\r\nSubject: ${subject}\r\nDate: Sat, 28 Nov 2026 05:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W/g, '')}.${Math.random().toString(36).slice(2)}@remote.test>\r\n${extra}\r\n${body}`;
}
