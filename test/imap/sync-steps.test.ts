import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { ImapTestClient } from '../helpers/imap-client.ts';
import { SmtpTestClient } from '../helpers/smtp-client.ts';
import { syncStats } from '../../src/imap/selected.ts';
import { TEST_PG } from '../helpers/backend.ts';

/**
 * What other sessions' changes look like to a selected session (RFC 9051 §7.4.1, §7.5.1,
 * §5.2): the untagged EXPUNGE, EXISTS and FETCH FLAGS a session gets at NOOP must turn its
 * own picture of the mailbox into exactly the server's. Random changes by two other
 * sessions and by SMTP deliveries, one or several between the observer's NOOPs, with the observer's own STOREs
 * mixed in, so every way of catching up runs (SelectedMailbox.sync: one view step applied
 * directly, or the merge; after a look at the mailbox row, or from the process's view
 * alone when it already has the announced change) and is checked against the truth.
 */

const USER = 'steps@example.test';
let t: TestServer;
before(async () => {
  t = await startTestServer({}, { users: [USER] });
});
after(() => t.stop());

async function session(): Promise<ImapTestClient> {
  const c = await ImapTestClient.connect(t.imapsPort, { tls: true });
  assert.equal((await c.login(USER, 'secret')).status, 'OK');
  assert.equal((await c.command('ENABLE IMAP4rev2')).status, 'OK');
  assert.equal((await c.command('SELECT INBOX')).status, 'OK');
  return c;
}

function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

interface Msg {
  uid: number;
  flags: string;
}

const flagsIn = (line: string) => /FLAGS \(([^)]*)\)/.exec(line)?.[1] ?? null;

/** The session's picture, from a FETCH of everything: [seq - 1] → uid and flags. */
async function picture(c: ImapTestClient): Promise<Msg[]> {
  const r = await c.command('FETCH 1:* (UID FLAGS)');
  if (r.status === 'BAD' || r.status === 'NO') return [];
  const out: Msg[] = [];
  for (const l of r.lines) {
    const m = /^\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\)\)$/.exec(l);
    assert.ok(m, `unexpected response: ${l}`);
    assert.equal(Number(m[1]), out.length + 1, 'FETCH 1:* answers in sequence order');
    out.push({ uid: Number(m[2]), flags: m[3]! });
  }
  return out;
}

/** An actor's picture, caught up first. */
async function current(c: ImapTestClient): Promise<Msg[]> {
  assert.equal((await c.command('NOOP')).status, 'OK');
  return picture(c);
}

async function append(c: ImapTestClient, i: number): Promise<void> {
  const msg = `From: a@example.test\r\nSubject: step ${i}\r\n\r\nbody ${i}\r\n`;
  // Some with flags: the views take them from the delivery, not from a read of the row.
  const flags = ['', '(\\Seen) ', '($Step \\Flagged) '][i % 3];
  const r = await c.command(`APPEND INBOX ${flags}{${msg.length}+}\r\n${msg}`);
  assert.equal(r.status, 'OK', r.text);
}

test('a session catching up at NOOP ends with exactly the server picture, after any mix of others\' APPEND, STORE and EXPUNGE', async () => {
  const a = await session();
  const b = await session();
  const watch = await session();
  const smtp = await SmtpTestClient.connect({ path: t.socketPath });
  try {
    for (let i = 0; i < 6; i++) await append(a, i);
    const account = (await t.server.ctx.data.getAccount(USER))!;
    const inbox = (await t.server.ctx.data.getMailbox(account.id, 'INBOX'))!.id;
    const rnd = prng(20261207);
    let model = await current(watch);
    assert.equal(model.length, 6);
    const before = { ...syncStats };
    for (let round = 0; round < 120; round++) {
      // One to three changes by the others before the watcher looks.
      const changes = 1 + Math.floor(rnd() * 3);
      for (let k = 0; k < changes; k++) {
        const actor = rnd() < 0.5 ? a : b;
        const all = await current(actor);
        const pick = () => all[Math.floor(rnd() * all.length)]!.uid;
        const op = rnd();
        const deleted = all.filter((m) => m.flags.includes('\\Deleted'));
        if (op < 0.12) {
          // A delivery: nothing in this process's view knows of it before a look at the row.
          const r = await smtp.sendMail({ from: 'bob@example.test', to: [USER], message: `From: bob@example.test\r\nSubject: mail ${round}.${k}\r\n\r\nbody\r\n` });
          assert.equal(r.data?.code, 250);
        } else if (op < 0.25 || all.length < 3) await append(actor, round * 10 + k);
        else if (op < 0.55) {
          const flag = rnd() < 0.5 ? '\\Seen' : '$Step';
          assert.equal((await actor.command(`UID STORE ${pick()} ${rnd() < 0.5 ? '+' : '-'}FLAGS.SILENT (${flag})`)).status, 'OK');
        } else if (op < 0.75 || !deleted.length) assert.equal((await actor.command(`UID STORE ${pick()} +FLAGS.SILENT (\\Deleted)`)).status, 'OK');
        // The expunge alone is one step for a watcher that saw the \Deleted already.
        else assert.equal((await actor.command(rnd() < 0.5 ? 'EXPUNGE' : `UID EXPUNGE ${deleted.map((m) => m.uid).join(',')}`)).status, 'OK');
      }
      // What the watcher is told, applied in order; EXISTS only says how many there are now.
      let exists: number | null = null;
      const apply = (lines: string[]) => {
        for (const l of lines) {
          let m: RegExpExecArray | null;
          if ((m = /^\* (\d+) EXPUNGE$/.exec(l))) {
            const seq = Number(m[1]);
            assert.ok(seq >= 1 && seq <= model.length, `EXPUNGE ${seq} of ${model.length}`);
            model.splice(seq - 1, 1);
            if (exists !== null) exists--;
          } else if ((m = /^\* (\d+) EXISTS$/.exec(l))) exists = Number(m[1]);
          else if ((m = /^\* (\d+) FETCH \((?:UID (\d+) )?FLAGS \(([^)]*)\)\)$/.exec(l))) {
            const seq = Number(m[1]);
            assert.ok(seq >= 1 && seq <= (exists ?? model.length), `FETCH ${seq}`);
            if (seq <= model.length) model[seq - 1]!.flags = m[3]!;
          } else assert.fail(`unexpected response: ${l}`);
        }
      };
      // Sometimes the watcher changes a flag itself first: its list becomes its own copy.
      if (rnd() < 0.25 && model.length) {
        const seq = 1 + Math.floor(rnd() * model.length);
        const r = await watch.command(`STORE ${seq} +FLAGS ($Mine)`);
        assert.equal(r.status, 'OK', r.text);
        apply(r.lines);
      }
      const r = await watch.command('NOOP');
      assert.equal(r.status, 'OK');
      apply(r.lines);
      const truth = await picture(watch);
      if (exists !== null) {
        assert.equal(truth.length, exists, 'EXISTS gives the new count');
        assert.ok(exists >= model.length);
        // The new messages: the client learns them by fetching (their flags come with it).
        model = model.concat(truth.slice(model.length));
      }
      assert.deepEqual(
        model.map((m) => m.uid),
        truth.map((m) => m.uid),
        `round ${round}: sequence numbers`,
      );
      assert.deepEqual(model, truth, `round ${round}: flags`);
      // And the session is caught up: its picture is the database's (not the views in memory: they are under test too).
      const stored = await t.server.ctx.data.db.selectFrom('messages').select(['uid', 'flags']).where('mailbox_id', '=', inbox).orderBy('uid').execute();
      assert.deepEqual(
        truth,
        stored.map((m) => ({ uid: Number(m.uid), flags: m.flags })),
        `round ${round}: the session's picture is not the store's`,
      );
      // Nothing is repeated at the next NOOP.
      assert.deepEqual((await watch.command('NOOP')).lines, []);
    }
    // Both ways of catching up ran (this test checks them both).
    assert.ok(syncStats.steps > before.steps, 'no sync applied a view step');
    assert.ok(syncStats.merges > before.merges, 'no sync merged');
    assert.ok(syncStats.fromMemory > before.fromMemory, 'no sync caught up from memory alone');
  } finally {
    for (const c of [a, b, watch]) c.close();
    await smtp.quit().catch(() => undefined);
  }
});

test("a session's own STORE takes the view's new list as it is (SQLite's writer thread): its NOOP then repeats nothing and merges nothing; another session's change still arrives", async () => {
  const a = await session();
  const b = await session();
  try {
    for (let i = 0; i < 3; i++) await append(b, 100 + i);
    await current(a);
    const n = (await picture(a)).length;
    for (let round = 0; round < 3; round++) {
      const before = { ...syncStats };
      const st = await a.command(`STORE ${n} ${round % 2 ? '-' : '+'}FLAGS ($OwnStore)`);
      assert.equal(st.status, 'OK');
      assert.equal(st.lines.length, 1, st.lines.join('\n'));
      assert.deepEqual((await a.command('NOOP')).lines, [], 'the own change was repeated');
      // (On PostgreSQL a write does not advance the view in memory: the own change is copied into the list and merged.)
      if (!TEST_PG) assert.equal(syncStats.merges, before.merges, "the own STORE's list was merged at the next sync");
      // b's change after it: reported to a at its next NOOP (its list is the view's again)
      assert.equal((await b.command(`STORE ${n - 1} ${round % 2 ? '-' : '+'}FLAGS ($OtherStore)`)).status, 'OK');
      const noop = await a.command('NOOP');
      assert.equal(noop.lines.length, 1, noop.lines.join('\n'));
      assert.match(noop.lines[0]!, new RegExp(`^\\* ${n - 1} FETCH \\(.*FLAGS \\(`));
    }
    const stored = (await picture(b)).map((m) => m.flags);
    assert.deepEqual((await picture(a)).map((m) => m.flags), stored);
  } finally {
    a.close();
    b.close();
  }
});
