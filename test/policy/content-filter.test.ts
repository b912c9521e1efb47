import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { openPostgresStores, openStores, type Stores } from '../../src/store/open.ts';
import { Ingest } from '../../src/core/ingest.ts';
import { GTUBE, RULES, scoreRules } from '../../src/policy/content/rules.ts';
import { Bayes, bayesHits, chiSquaredCombine, tokenProbability } from '../../src/policy/content/bayes.ts';
import { builtinFilter } from '../../src/policy/content/builtin.ts';
import { learnMessage, messageId, messageTokens } from '../../src/policy/content/learn.ts';
import { BayesTrainer } from '../../src/policy/content/trainer.ts';
import { hashToken } from '../../src/policy/content/tokenize.ts';
import type { AuthSummary, ContentInput } from '../../src/policy/content/types.ts';
import { tempDir } from '../helpers/server.ts';
import { dropTestStore, pgStore, storeToml, TEST_PG, type TestStore } from '../helpers/backend.ts';
import { postern, ROOT, writeConfig } from '../helpers/cli.ts';

/**
 * The builtin content filter (issue #9): the rules, the Bayesian classifier, its training from
 * Junk moves and `postern spam train`, and precision/recall on the hand-written corpus in
 * test/fixtures/spam-corpus. On the suite's backend: SQLite, or PostgreSQL with POSTERN_TEST_PG.
 */

const CORPUS = path.join(ROOT, 'test/fixtures/spam-corpus');
/** The corpus messages are dated November 2026; the Date rules look from here. */
const NOW = Date.parse('2026-12-02T12:00:00Z');
const quiet = pino({ level: 'silent' });

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A fresh store on the suite's backend. */
async function store(): Promise<Stores> {
  let s: Stores;
  if (TEST_PG) {
    const st: TestStore = pgStore();
    s = await openPostgresStores({ url: st.url, schema: st.schema, poolSize: 4 }, 1024, undefined, false);
    cleanups.push(async () => {
      await s.close();
      await dropTestStore(st);
    });
  } else {
    const dir = tempDir('postern-content-');
    s = await openStores(path.join(dir, 'data'));
    cleanups.push(async () => {
      await s.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });
  }
  await s.data.ensureDomain('example.test');
  return s;
}

const DEFAULT_HEADERS: Record<string, string> = {
  From: 'Sender <sender@remote.test>',
  To: 'alice@example.test',
  Subject: 'Minutes of the meeting',
  Date: 'Sat, 28 Nov 2026 05:00:00 +0000',
  'Message-ID': '<minutes.1@remote.test>',
  'Content-Type': 'text/plain; charset=utf-8',
};
const CLEAN_BODY = 'Hello Alice,\n\nhere are the minutes of the meeting. We agreed to meet again next week.\n\nRegards,\nSam\n';

/** A message from the default headers (a null value drops one) and a body; LF becomes CRLF. */
function mail(headers: Record<string, string | null> = {}, body = CLEAN_BODY): Buffer {
  const h = { ...DEFAULT_HEADERS, ...headers };
  const lines = Object.entries(h)
    .filter((e): e is [string, string] => e[1] !== null)
    .map(([k, v]) => `${k}: ${v}`);
  return Buffer.from(`${lines.join('\n')}\n\n${body}`.replace(/\r?\n/g, '\r\n'));
}

function input(message: Buffer, extra: Partial<ContentInput> = {}): ContentInput {
  return { message, ip: '192.0.2.1', helo: 'mail.remote.test', from: 'sender@remote.test', recipients: ['alice@example.test'], auth: null, dnsblHits: [], ...extra };
}

const auth = (a: Partial<AuthSummary>): AuthSummary => ({ spf: 'none', dkim: [], dmarc: 'none', dmarcPolicy: null, arc: 'none', fromDomain: 'remote.test', ...a });
const html = (body: string) => ({ 'Content-Type': 'text/html; charset=utf-8', _body: `<html><body>${body}</body></html>` });
const attachment = (name: string, text: string) => [
  { 'Content-Type': 'multipart/mixed; boundary="b"' },
  `--b\nContent-Type: text/plain\n\n${text}\n--b\nContent-Type: application/octet-stream; name="${name}"\nContent-Disposition: attachment; filename="${name}"\nContent-Transfer-Encoding: base64\n\nAAAA\n--b--\n`,
] as const;

/** One crafted message per rule: the rule must match it. */
const CASES: Record<string, () => ContentInput> = {
  GTUBE: () => input(mail({}, `${CLEAN_BODY}${GTUBE}\n`)),
  SPF_FAIL: () => input(mail(), { auth: auth({ spf: 'fail' }) }),
  SPF_SOFTFAIL: () => input(mail(), { auth: auth({ spf: 'softfail' }) }),
  DKIM_VALID: () => input(mail(), { auth: auth({ dkim: [{ result: 'pass', domain: 'relay.test', aligned: false }] }) }),
  DKIM_VALID_AU: () => input(mail(), { auth: auth({ dkim: [{ result: 'pass', domain: 'remote.test', aligned: true }] }) }),
  DKIM_INVALID: () => input(mail(), { auth: auth({ dkim: [{ result: 'fail', domain: 'remote.test', aligned: true }] }) }),
  DMARC_FAIL: () => input(mail(), { auth: auth({ dmarc: 'fail', dmarcPolicy: 'none' }) }),
  RCVD_IN_DNSBL: () => input(mail(), { dnsblHits: ['bl.example.test'] }),
  MISSING_DATE: () => input(mail({ Date: null })),
  MISSING_FROM: () => input(mail({ From: null })),
  MISSING_MESSAGE_ID: () => input(mail({ 'Message-ID': null })),
  INVALID_MSGID: () => input(mail({ 'Message-ID': 'no-brackets-here' })),
  MISSING_SUBJECT: () => input(mail({ Subject: null })),
  MISSING_HEADERS: () => input(mail({ To: null })),
  UNDISCLOSED_RECIPIENTS: () => input(mail({ To: 'undisclosed-recipients:;' })),
  DATE_IN_FUTURE: () => input(mail({ Date: 'Mon, 01 Mar 2027 10:00:00 +0000' })),
  FORGED_MUA_OUTLOOK: () => input(mail({ 'X-Mailer': 'Microsoft Outlook 16.0' })),
  FROM_DISPLAY_NAME_HAS_ADDRESS: () => input(mail({ From: '"ceo@bigcorp.test" <someone@remote.test>' })),
  REPLYTO_DIFFERS_FREEMAIL: () => input(mail({ 'Reply-To': 'sender.private@gmail.com' })),
  FROM_NAME_BRAND_MISMATCH: () => input(mail({ From: '"PayPal Service" <service@pp-secure.test>' })),
  FROM_SUSPICIOUS_TLD: () => input(mail({ From: 'Deals <deals@offers.top>' })),
  SUBJ_ALL_CAPS: () => input(mail({ Subject: 'IMPORTANT MESSAGE FOR YOU' })),
  SUBJ_EXCLAMATIONS: () => input(mail({ Subject: 'Great news!!' })),
  SUBJ_RE_NO_THREAD: () => input(mail({ Subject: 'Re: your order' })),
  HTML_ONLY: () => input(mail({ 'Content-Type': 'text/html' }, `<html><body><p>${CLEAN_BODY}</p></body></html>`)),
  HTML_IMAGE_ONLY: () => input(mail({ 'Content-Type': 'text/html' }, '<html><body><img src="https://remote.test/offer.png"><p>Buy now</p></body></html>')),
  EMPTY_BODY_WITH_ATTACHMENT: () => input(mail(attachment('scan.pdf', '')[0], attachment('scan.pdf', '')[1])),
  DANGEROUS_ATTACHMENT: () => input(mail(attachment('invoice.pdf.exe', CLEAN_BODY)[0], attachment('invoice.pdf.exe', CLEAN_BODY)[1])),
  URI_IP_ADDRESS: () => input(mail({}, `${CLEAN_BODY}http://203.0.113.9/login\n`)),
  URL_SHORTENER: () => input(mail({}, `${CLEAN_BODY}https://bit.ly/3abcdef\n`)),
  URI_SUSPICIOUS_TLD: () => input(mail({}, `${CLEAN_BODY}https://great-offers.xyz/deal\n`)),
  URI_ANCHOR_MISMATCH: () => input(mail({ 'Content-Type': 'text/html' }, '<p>Log in at <a href="https://evil.test/bank">https://www.mybank.test/login</a></p>')),
  CLICK_HERE: () => input(mail({ 'Content-Type': 'text/html' }, '<p>For the agenda <a href="https://remote.test/agenda">click here</a>.</p>')),
  MIXED_CHARSET_TRICKS: () => input(mail({ Subject: 'Your P\u0430yPal receipt' })),
  ZERO_WIDTH_CHARS: () => input(mail({}, `${CLEAN_BODY}Che\u200Bap wa\u200Btches\n`)),
  OBFUSCATED_WORDS: () => input(mail({}, `${CLEAN_BODY}Cheap v1agra here\n`)),
  UPPERCASE_BODY: () => input(mail({}, `${CLEAN_BODY.toUpperCase()}THIS OFFER IS ONLY VALID FOR A SHORT TIME, SO PLEASE ANSWER SOON.\n`)),
  ADVANCE_FEE_2: () => input(mail({}, 'I am a barrister and you are the next of kin of my late client.\n')),
  ADVANCE_FEE_4: () => input(mail({}, 'I am a barrister. You are the next of kin and beneficiary of my late client. This is strictly confidential.\n')),
  PHARMA_2: () => input(mail({}, 'Viagra without prescription: no prescription needed.\n')),
  PHARMA_4: () => input(mail({}, 'Viagra, Cialis and Levitra from our online pharmacy.\n')),
  LOTTERY_WIN: () => input(mail({}, 'You have won 1,000,000 EUR.\n')),
  PHISH_ACCOUNT: () => input(mail({}, 'Please verify your account or it will be closed.\n')),
  URGENCY: () => input(mail({}, 'Act now, this is a limited time offer.\n')),
  MONEY_PROMISE: () => input(mail({}, 'Guaranteed returns of 20% a month.\n')),
  BITCOIN_ADDRESS: () => input(mail({}, 'Donations: 1BoatSLRHtKNngkdXEeobR76b53LETtpyT\n')),
  EXTORTION: () => input(mail({}, 'I hacked your phone and recorded you with the webcam.\n')),
  BITCOIN_EXTORTION: () => input(mail({}, 'I hacked your phone and recorded you. Pay to 1BoatSLRHtKNngkdXEeobR76b53LETtpyT.\n')),
  CALLBACK_PHISHING: () => input(mail({}, 'You were charged $499. To cancel, call 1-888-555-0100.\n')),
  GIFT_CARD_REQUEST: () => input(mail({}, 'Buy five gift cards, scratch them and send me the codes.\n')),
  CRYPTO_SEED_PHRASE: () => input(mail({}, 'Enter your secret recovery phrase to claim the airdrop.\n')),
};

test('GTUBE scores at least 1000 on its own', async () => {
  const f = builtinFilter({ data: (await store()).data, bayes: true, bayesMinLearned: 0, now: () => NOW });
  const s = await f.score(CASES.GTUBE!());
  assert.equal(s.filter, 'builtin');
  assert.ok(s.score >= 1000, String(s.score));
  assert.deepEqual(s.hits.map((h) => h.rule), ['GTUBE'], 'no Bayes rule for the test string, nothing else on a clean message');
});

test('a clean message matches no rule', async () => {
  const r = await scoreRules(input(mail()), NOW);
  assert.deepEqual(r.hits, []);
});

test('every rule matches its crafted message (and every rule has one)', async () => {
  assert.deepEqual(RULES.map((r) => r.name).filter((n) => !CASES[n]), [], 'rules without a test case');
  const names = new Set<string>();
  for (const r of RULES) {
    assert.ok(!names.has(r.name), `rule ${r.name} defined twice`);
    names.add(r.name);
    assert.ok(r.description.length > 10, r.name);
  }
  for (const [rule, make] of Object.entries(CASES)) {
    const { hits } = await scoreRules(make(), NOW);
    const hit = hits.find((h) => h.rule === rule);
    assert.ok(hit, `${rule} did not match; hits: ${hits.map((h) => h.rule).join(' ') || 'none'}`);
    assert.equal(hit.score, RULES.find((r) => r.name === rule)!.score);
  }
});

test('the obfuscation rules leave correct spellings and other scripts alone', async () => {
  const ok = await scoreRules(input(mail({ Subject: 'Привет из Москвы' }, 'Viagra is a brand name. Το ελληνικό κείμενο. Free software, casino royale, my password.\n')), NOW);
  assert.deepEqual(ok.hits.map((h) => h.rule).filter((r) => /MIXED|OBFUSCATED|ZERO/.test(r)), []);
});

test('Robinson probabilities and chi-squared combining', () => {
  assert.equal(tokenProbability(0, 0, 10, 10), 0.5);
  assert.ok(tokenProbability(10, 0, 10, 10) > 0.95);
  assert.ok(tokenProbability(0, 10, 10, 10) < 0.05);
  // A token seen once is pulled toward 0.5 by the prior.
  assert.ok(tokenProbability(1, 0, 10, 10) < 0.85);
  assert.equal(chiSquaredCombine([]), 0.5);
  assert.ok(chiSquaredCombine([0.99, 0.98, 0.95]) > 0.9);
  assert.ok(chiSquaredCombine([0.01, 0.02, 0.05]) < 0.1);
  assert.ok(Math.abs(chiSquaredCombine([0.99, 0.01]) - 0.5) < 0.05, 'mixed evidence stays near 0.5');
  assert.deepEqual(bayesHits({ probability: 0.995, used: 10 }).map((h) => h.rule), ['BAYES_99']);
  assert.deepEqual(bayesHits({ probability: 0.9995, used: 10 }).map((h) => h.rule), ['BAYES_99', 'BAYES_999']);
  assert.deepEqual(bayesHits({ probability: 0.001, used: 10 }).map((h) => h.rule), ['BAYES_00']);
  assert.deepEqual(bayesHits({ probability: 0.5, used: 0 }).map((h) => h.rule), ['BAYES_50']);
});

const spamText = (i: number) => mail({ Subject: `Cheap watches offer ${i}`, 'Message-ID': `<s${i}@shop.test>` }, `Replica watches at discount prices, rolex omega cartier, order ${i} today from our shop.\n`);
const hamText = (i: number) => mail({ Subject: `Meeting notes ${i}`, 'Message-ID': `<h${i}@remote.test>` }, `Hello team, the meeting notes for sprint ${i} are in the wiki; the review is on Thursday.\n`);

test('Bayes: silent until enough is learned; learning moves the probability; unlearning and relearning reverse it', async () => {
  const { data } = await store();
  const bayes = new Bayes(data, 3);
  const probe = await messageTokens(mail({ Subject: 'Cheap watches offer' }, 'Replica watches at discount prices, rolex and omega, order today.\n'));
  assert.equal(await bayes.classify(probe, ['alice@example.test']), null, 'nothing learned yet');
  for (let i = 0; i < 3; i++) {
    await learnMessage(bayes, null, `spam-${i}`, spamText(i), 'spam');
    await learnMessage(bayes, null, `ham-${i}`, hamText(i), 'ham');
  }
  assert.deepEqual(await data.bayesTotals(['']), new Map([['', { spam: 3, ham: 3 }]]));
  const spammy = await bayes.classify(probe, ['alice@example.test']);
  assert.ok(spammy && spammy.probability > 0.9, `spam probability ${spammy?.probability}`);
  const hammy = await bayes.classify(await messageTokens(hamText(99)), []);
  assert.ok(hammy && hammy.probability < 0.1, `ham probability ${hammy?.probability}`);

  // Learning the same message again changes nothing (sa-learn's "seen").
  assert.equal(await learnMessage(bayes, null, 'spam-0', spamText(0), 'spam'), 'spam');
  assert.equal((await data.bayesTotals(['']).then((t) => t.get('')))!.spam, 3);

  // Relearning the spam as ham: unlearned as spam first, so the counts move, not just grow.
  for (let i = 0; i < 3; i++) assert.equal(await learnMessage(bayes, null, `spam-${i}`, spamText(i), 'ham'), 'spam');
  assert.deepEqual((await data.bayesTotals([''])).get(''), { spam: 0, ham: 6 });
  const [row] = await data.bayesCounts([''], [hashToken('replica')]);
  assert.deepEqual(row, { scope: '', token: hashToken('replica'), spam: 0, ham: 3 });
  // Forgetting takes them out entirely; tokens nobody holds disappear.
  for (let i = 0; i < 3; i++) await learnMessage(bayes, null, `spam-${i}`, spamText(i), null);
  assert.deepEqual((await data.bayesTotals([''])).get(''), { spam: 0, ham: 3 });
  assert.deepEqual(await data.bayesCounts([''], [hashToken('replica')]), []);
});

test('Bayes: per-user statistics count on top of the global ones for a single recipient', async () => {
  const { data } = await store();
  const bayes = new Bayes(data, 2);
  // Globally (the other users) these newsletters are ham; alice calls them spam.
  const letter = (i: number) => mail({ Subject: `Weekly gardening tips ${i}`, From: 'Garden News <news@garden.test>' }, `This week in the garden: tulip bulbs, compost and pruning roses, issue ${i}.\n`);
  for (let i = 0; i < 6; i++) {
    await learnMessage(bayes, null, `g-ham-${i}`, letter(i), 'ham');
    await learnMessage(bayes, null, `g-spam-${i}`, spamText(i), 'spam');
  }
  for (let i = 6; i < 9; i++) await learnMessage(bayes, 'alice@example.test', `a-${i}`, letter(i), 'spam');
  const tokens = await messageTokens(letter(9));
  const forAlice = (await bayes.classify(tokens, ['alice@example.test']))!.probability;
  const forBob = (await bayes.classify(tokens, ['bob@example.test']))!.probability;
  const forBoth = (await bayes.classify(tokens, ['alice@example.test', 'bob@example.test']))!.probability;
  assert.ok(forAlice > forBob, `alice ${forAlice} > bob ${forBob}`);
  assert.ok(forAlice > forBoth, `alice ${forAlice} > both ${forBoth} (several recipients: global only)`);
});

/** The corpus: [file name, bytes] of one kind, by number. */
function corpus(kind: 'spam' | 'ham'): Array<{ n: number; data: Buffer }> {
  return fs
    .readdirSync(path.join(CORPUS, kind))
    .filter((f) => f.endsWith('.eml'))
    .sort()
    .map((f) => ({ n: Number.parseInt(f, 10), data: fs.readFileSync(path.join(CORPUS, kind, f)) }));
}

async function evaluate(filter: ReturnType<typeof builtinFilter>, spam: Buffer[], ham: Buffer[], tag: number) {
  let tp = 0;
  let fp = 0;
  for (const m of spam) if ((await filter.score(input(m))).score >= tag) tp++;
  for (const m of ham) if ((await filter.score(input(m))).score >= tag) fp++;
  const precision = tp + fp ? tp / (tp + fp) : 1;
  const recall = tp / spam.length;
  return { tp, fp, precision, recall, text: `recall ${recall.toFixed(2)} (${tp}/${spam.length} spam tagged), precision ${precision.toFixed(2)} (${fp}/${ham.length} ham tagged)` };
}

test('the corpus: precision and recall at tag = 5, before and after training on half of it', async (t) => {
  const spam = corpus('spam');
  const ham = corpus('ham');
  assert.ok(spam.length >= 50 && ham.length >= 50, `${spam.length} spam, ${ham.length} ham`);
  const { data } = await store();
  const filter = builtinFilter({ data, bayes: true, bayesMinLearned: 20, now: () => NOW });
  const odd = (l: typeof spam) => l.filter((m) => m.n % 2 === 1).map((m) => m.data);
  const even = (l: typeof spam) => l.filter((m) => m.n % 2 === 0);

  const all = await evaluate(filter, spam.map((m) => m.data), ham.map((m) => m.data), 5);
  t.diagnostic(`rules only, whole corpus: ${all.text}`);
  const before = await evaluate(filter, odd(spam), odd(ham), 5);
  t.diagnostic(`rules only, odd-numbered: ${before.text}`);
  assert.equal(all.fp, 0, 'no ham tagged by the rules alone');
  assert.ok(all.recall >= 0.25, all.text);

  const bayes = new Bayes(data, 0);
  for (const m of even(spam)) await learnMessage(bayes, null, messageId(m.data), m.data, 'spam');
  for (const m of even(ham)) await learnMessage(bayes, null, messageId(m.data), m.data, 'ham');
  // A new filter, as after the totals cache's 10 s: the running one reads learned counts lazily.
  const trained = builtinFilter({ data, bayes: true, bayesMinLearned: 20, now: () => NOW });
  const after = await evaluate(trained, odd(spam), odd(ham), 5);
  t.diagnostic(`rules + Bayes trained on the ${even(spam).length} even-numbered spam and ${even(ham).length} ham, odd-numbered: ${after.text}`);
  assert.ok(after.recall >= 0.8, after.text);
  assert.ok(after.precision >= 0.95, after.text);
  assert.ok(after.recall > before.recall, 'training helps');
});

test('the trainer learns Junk moves for the user and globally; moving back out relearns as ham', async () => {
  const stores = await store();
  const { data } = stores;
  const alice = await data.addAccount('alice@example.test', null);
  const ingest = new Ingest(data, stores.blobs, stores.pubsub, quiet);
  const msg = fs.readFileSync(path.join(CORPUS, 'spam/002.eml'));
  const res = await ingest.ingestBuffer(msg, { deliveries: [{ accountId: alice.id }], queue: null, internalDate: NOW });
  const inbox = (await data.getMailbox(alice.id, 'INBOX'))!;
  const junk = (await data.getMailbox(alice.id, 'Junk'))!;
  const trainer = new BayesTrainer({ data, blobs: stores.blobs, log: quiet });
  assert.equal(await trainer.runOnce(), 0, 'no signals yet');

  await data.moveMessages(inbox.id, [res.added[0]!.uid], junk.id);
  assert.equal(await trainer.runOnce(), 1);
  assert.equal(await trainer.runOnce(), 0, 'a signal is learned once');
  const totals = await data.bayesTotals(['', 'alice@example.test']);
  assert.deepEqual(totals.get('alice@example.test'), { spam: 1, ham: 0 });
  assert.deepEqual(totals.get(''), { spam: 1, ham: 0 });
  const viagra = hashToken('viagra');
  assert.deepEqual((await data.bayesCounts(['alice@example.test'], [viagra]))[0], { scope: 'alice@example.test', token: viagra, spam: 1, ham: 0 });

  // Out of Junk again: a mistake corrected — no longer spam, now ham.
  const back = (await data.listMessages(alice.id, 'Junk'))[0]!;
  await data.moveMessages(junk.id, [back.uid], inbox.id);
  assert.equal(await trainer.runOnce(), 1);
  const after = await data.bayesTotals(['', 'alice@example.test']);
  assert.deepEqual(after.get('alice@example.test'), { spam: 0, ham: 1 });
  assert.deepEqual(after.get(''), { spam: 0, ham: 1 });
  assert.deepEqual((await data.bayesCounts(['alice@example.test'], [viagra]))[0], { scope: 'alice@example.test', token: viagra, spam: 0, ham: 1 });

  // The start/stop loop (as the server runs it) picks new signals up by itself.
  const loop = new BayesTrainer({ data, blobs: stores.blobs, log: quiet, intervalMs: 20 });
  loop.start();
  const again = (await data.listMessages(alice.id, 'INBOX'))[0]!;
  await data.moveMessages(inbox.id, [again.uid], junk.id);
  const deadline = Date.now() + 5000;
  while ((await data.bayesTotals(['alice@example.test'])).get('alice@example.test')?.spam !== 1) {
    assert.ok(Date.now() < deadline, 'the trainer loop learned the move');
    await new Promise((r) => setTimeout(r, 20));
  }
  await loop.stop();
});

test('postern spam train on a Maildir and an mbox, then postern spam stats', async () => {
  const dir = tempDir('postern-spamcli-');
  const st = TEST_PG ? pgStore() : undefined;
  cleanups.push(async () => {
    await dropTestStore(st);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const cfg = writeConfig(dir, `hostname = "mx.example.test"\ndata_dir = "${path.join(dir, 'data')}"\ndomains = ["example.test"]\n${storeToml(st)}`);
  fs.mkdirSync(path.join(dir, 'data'));
  const maildir = path.join(dir, 'Maildir', '.Junk');
  for (const sub of ['cur', 'new', 'tmp']) fs.mkdirSync(path.join(maildir, sub), { recursive: true });
  const spam = corpus('spam').slice(0, 6);
  spam.forEach((m, i) => fs.writeFileSync(path.join(maildir, i % 2 ? 'new' : 'cur', `17640000${i}.M1P1.host:2,S`), m.data));
  fs.writeFileSync(path.join(maildir, 'tmp', 'partial'), 'not a message yet'); // tmp/ is never read
  // An mbox of three ham messages (">From " in a body is unescaped).
  const mbox = corpus('ham')
    .slice(0, 3)
    .map((m, i) => `From sender@remote.test Sat Nov 28 05:00:0${i} 2026\n${m.data.toString('utf8').replace(/\r\n/g, '\n').replace(/^From /gm, '>From ')}\n`)
    .join('');
  fs.writeFileSync(path.join(dir, 'ham.mbox'), mbox);

  const r = await postern(['spam', 'train', '--spam', '--user', 'Alice@example.test', '-c', cfg, maildir]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /learned 6 messages as spam, relearned 0 \(were ham\), 0 already learned as spam, 0 unreadable \(global and alice@example.test\)/);
  assert.match(r.stderr, /6 messages: 6 learned/);

  // The second run in-process (a spawn costs a second or two): same command tree, same output.
  const { buildProgram } = await import('../../src/cli/main.ts');
  const out: string[] = [];
  const log = console.log;
  const errWrite = process.stderr.write.bind(process.stderr);
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    await buildProgram().parseAsync(['node', 'postern', 'spam', 'train', '--ham', '-c', cfg, path.join(dir, 'ham.mbox')]);
    await buildProgram().parseAsync(['node', 'postern', 'spam', 'stats', '-c', cfg]);
  } finally {
    console.log = log;
    process.stderr.write = errWrite;
  }
  const text = out.join('\n');
  assert.match(text, /learned 3 messages as ham/);
  assert.match(text, /\(global\)\s+6\s+3\s+\d+/);
  assert.match(text, /alice@example\.test\s+6\s+0\s+\d+/);
  assert.match(text, /classifier: learning: scores once 20 spam and 20 ham/);
});
