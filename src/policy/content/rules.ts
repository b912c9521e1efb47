import type { ContentInput, ScoreHit } from './types.ts';
import { parseContent, type ParsedContent } from './parse.ts';
import { ADVANCE_FEE, BRANDS, CALLBACK, EXTORTION, FREEMAIL, GIFT_CARD, MONEY_PROMISE, OBFUSCATED, PHARMA, PHISH_ACCOUNT, LOTTERY, SEED_PHRASE, SHORTENERS, SUSPICIOUS_TLDS, URGENCY, countPhrases } from './rule-data.ts';

/**
 * The builtin rule set: SpamAssassin's idea in a form one can read in one sitting. Each rule has
 * a name (SpamAssassin's where there is one), points, and a test over the parsed message and the
 * evidence the SMTP server gathered (authentication results, DNSBL listings). The scores follow
 * SpamAssassin's defaults in spirit: no single weak sign tags a message (policy.spam.tag = 5);
 * only GTUBE, the test string, decides alone. docs/antispam.md lists every rule.
 */

export interface RuleContext {
  input: ContentInput;
  p: ParsedContent;
  /** Subject + body, for phrase rules. */
  all: string;
  /** The clock, for the Date checks. */
  now: number;
}

export interface Rule {
  name: string;
  score: number;
  description: string;
  /** true, or a string with details (appended to the description), when the rule matches. */
  test(c: RuleContext): boolean | string;
}

/** SpamAssassin's GTUBE (Generic Test for Unsolicited Bulk Email), spamassassin.apache.org/gtube/. */
export const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

const header = (c: RuleContext, name: string): string | null => c.p.headers.get(name)?.[0] ?? null;
const domainOf = (a: string) => a.slice(a.lastIndexOf('@') + 1).toLowerCase();
/** The last two labels: enough to tell example.com from example.net (no public suffix list here). */
const regDomain = (host: string) => host.split('.').slice(-2).join('.');
const isIpHost = (h: string) => /^\d{1,3}(\.\d{1,3}){3}$/.test(h) || h.includes(':') || /^(0x[0-9a-f]+|\d{8,10})$/i.test(h);
/** Latin letters next to Cyrillic or Greek ones in one word: "Pаypal" with a Cyrillic "а". */
const MIXED_WORD = /(?=[\p{L}]*\p{Script=Latin})(?=[\p{L}]*[\p{Script=Cyrillic}\p{Script=Greek}])[\p{L}]{3,}/u;
const ZERO_WIDTH = /\p{L}[\u200B-\u200D\u2060\uFEFF\u00AD]+\p{L}/gu;
/** Bitcoin addresses: bech32 (bc1…) or base58 (1…, 3…). */
const BTC_ADDRESS = /\b(bc1[ac-hj-np-z02-9]{25,60}|[13][a-km-zA-HJ-NP-Z1-9]{25,34})\b/;
/** A North American phone number: what call-back scams print. */
const PHONE = /(\+?1[\s.-]?)?\(?\b[2-9][0-9]{2}\)?[\s.-][0-9]{3}[\s.-][0-9]{4}\b/;
const DANGEROUS_EXT = /\.(exe|scr|pif|com|bat|cmd|js|jse|vbs|vbe|wsf|hta|jar|lnk|iso|img|msi|ps1)$/i;

export const RULES: Rule[] = [
  // ---- the test string ----
  { name: 'GTUBE', score: 1000, description: 'the GTUBE anti-spam test string', test: (c) => c.input.message.includes(GTUBE) },

  // ---- authentication (src/policy/content/authenticate.ts) and DNSBL evidence ----
  { name: 'SPF_FAIL', score: 0.9, description: 'SPF: the sending host is not allowed to send for the envelope domain (RFC 7208 "fail")', test: (c) => c.input.auth?.spf === 'fail' },
  { name: 'SPF_SOFTFAIL', score: 0.7, description: 'SPF: the envelope domain says the host is probably not allowed ("softfail")', test: (c) => c.input.auth?.spf === 'softfail' },
  { name: 'DKIM_VALID', score: -0.1, description: 'a valid DKIM signature (RFC 6376)', test: (c) => !!c.input.auth?.dkim.some((d) => d.result === 'pass') },
  { name: 'DKIM_VALID_AU', score: -0.1, description: "a valid DKIM signature of the From domain", test: (c) => !!c.input.auth?.dkim.some((d) => d.result === 'pass' && d.aligned) },
  {
    name: 'DKIM_INVALID',
    score: 0.5,
    description: 'DKIM signed, but no signature verifies',
    test: (c) => {
      const d = c.input.auth?.dkim ?? [];
      return d.length > 0 && !d.some((s) => s.result === 'pass') && d.some((s) => s.result === 'fail' || s.result === 'neutral' || s.result === 'permerror');
    },
  },
  {
    name: 'DMARC_FAIL',
    score: 1.5,
    description: 'DMARC: the From domain publishes a policy and the message fails it (RFC 7489)',
    test: (c) => (c.input.auth?.dmarc === 'fail' ? `p=${c.input.auth.dmarcPolicy ?? 'none'}` : false),
  },
  {
    name: 'RCVD_IN_DNSBL',
    score: 1.5,
    description: 'the client is listed by a DNS blocklist (below the rejection threshold)',
    test: (c) => (c.input.dnsblHits.length ? c.input.dnsblHits.join(', ') : false),
  },

  // ---- missing and malformed headers (RFC 5322 §3.6 requires Date and From) ----
  { name: 'MISSING_DATE', score: 1.4, description: 'no Date header (RFC 5322 §3.6.1 requires one)', test: (c) => !c.p.headers.has('date') },
  { name: 'MISSING_FROM', score: 1.0, description: 'no From header (RFC 5322 §3.6.2 requires one)', test: (c) => !c.p.headers.has('from') },
  { name: 'MISSING_MESSAGE_ID', score: 0.5, description: 'no Message-ID header (RFC 5322 §3.6.4: every message should have one)', test: (c) => !c.p.headers.has('message-id') },
  { name: 'INVALID_MSGID', score: 0.6, description: 'Message-ID is not <left@right>', test: (c) => (header(c, 'message-id') !== null ? !/^<[^<>@\s]+@[^<>@\s]+>$/.test(header(c, 'message-id')!.trim()) : false) },
  { name: 'MISSING_SUBJECT', score: 1.0, description: 'no Subject header', test: (c) => !c.p.headers.has('subject') },
  { name: 'MISSING_HEADERS', score: 1.0, description: 'neither To nor Cc', test: (c) => !c.p.headers.has('to') && !c.p.headers.has('cc') },
  {
    name: 'UNDISCLOSED_RECIPIENTS',
    score: 1.0,
    description: 'To: undisclosed-recipients (sent to a hidden list)',
    test: (c) => /undisclosed[- ]recipients/i.test(header(c, 'to') ?? ''),
  },
  {
    name: 'DATE_IN_FUTURE',
    score: 1.5,
    description: 'the Date header is more than 12 hours ahead',
    test: (c) => {
      const d = Date.parse(header(c, 'date') ?? '');
      return Number.isFinite(d) && d > c.now + 12 * 3_600_000;
    },
  },
  {
    name: 'FORGED_MUA_OUTLOOK',
    score: 2.0,
    description: 'claims to be Microsoft Outlook, but lacks the Thread-Index header Outlook always writes',
    test: (c) => /microsoft (office )?outlook/i.test(header(c, 'x-mailer') ?? '') && !c.p.headers.has('thread-index'),
  },
  {
    name: 'FROM_DISPLAY_NAME_HAS_ADDRESS',
    score: 2.0,
    description: "the From display name shows another address than the sender's",
    test: (c) => {
      const m = /[\w.+-]+@[\w-]+(\.[\w-]+)+/.exec(c.p.from?.name ?? '');
      return m && c.p.from && m[0].toLowerCase() !== c.p.from.address ? m[0] : false;
    },
  },
  {
    name: 'REPLYTO_DIFFERS_FREEMAIL',
    score: 1.5,
    description: 'Reply-To sends answers to a freemail mailbox of another domain than From',
    test: (c) => {
      const r = c.p.replyTo;
      return !!r && !!c.p.from && FREEMAIL.has(domainOf(r)) && domainOf(r) !== domainOf(c.p.from.address) ? r : false;
    },
  },
  {
    name: 'FROM_NAME_BRAND_MISMATCH',
    score: 2.0,
    description: "the From display name names a well-known brand, the address is not the brand's",
    test: (c) => {
      if (!c.p.from) return false;
      const dom = domainOf(c.p.from.address);
      const b = BRANDS.find((x) => x.re.test(c.p.from!.name));
      return b && !b.domains.some((d) => dom === d || dom.endsWith(`.${d}`)) ? `${c.p.from.name} <${c.p.from.address}>` : false;
    },
  },
  {
    name: 'FROM_SUSPICIOUS_TLD',
    score: 1.0,
    description: 'the sender address is in a top-level domain mostly used for abuse',
    test: (c) => SUSPICIOUS_TLDS.has(domainOf(c.p.from?.address ?? '').split('.').pop() ?? '') || SUSPICIOUS_TLDS.has(domainOf(c.input.from).split('.').pop() ?? ''),
  },
  {
    name: 'SUBJ_ALL_CAPS',
    score: 1.0,
    description: 'the Subject is written in capitals',
    test: (c) => {
      const letters = c.p.subject.replace(/[^\p{L}]/gu, '');
      return letters.length >= 10 && letters === letters.toUpperCase() && letters !== letters.toLowerCase();
    },
  },
  { name: 'SUBJ_EXCLAMATIONS', score: 0.8, description: 'the Subject shouts: "!!" or three "!"', test: (c) => /!!/.test(c.p.subject) || (c.p.subject.match(/!/g) ?? []).length >= 3 },
  {
    name: 'SUBJ_RE_NO_THREAD',
    score: 0.8,
    description: 'the Subject starts with "Re:" but the message answers nothing (no In-Reply-To, no References)',
    test: (c) => /^\s*re\s*:/i.test(c.p.subject) && !c.p.headers.has('in-reply-to') && !c.p.headers.has('references'),
  },

  // ---- body structure ----
  { name: 'HTML_ONLY', score: 0.7, description: 'HTML without a plain text version', test: (c) => !!c.p.html && !c.p.text.trim() },
  {
    name: 'HTML_IMAGE_ONLY',
    score: 1.5,
    description: 'HTML that is mostly images, with little text',
    test: (c) => !!c.p.html && c.p.images > 0 && c.p.body.replace(/\s+/g, '').length < 100,
  },
  {
    name: 'EMPTY_BODY_WITH_ATTACHMENT',
    score: 1.5,
    description: 'an attachment and (almost) no text',
    test: (c) => c.p.attachments.length > 0 && c.p.body.replace(/\s+/g, '').length < 20,
  },
  {
    name: 'DANGEROUS_ATTACHMENT',
    score: 2.5,
    description: 'an executable or disk image attachment (.exe, .js, .iso …)',
    test: (c) => c.p.attachments.find((a) => DANGEROUS_EXT.test(a.filename))?.filename ?? false,
  },

  // ---- links ----
  { name: 'URI_IP_ADDRESS', score: 1.5, description: 'a link to a numeric IP address instead of a name', test: (c) => c.p.urls.find((u) => isIpHost(u.host))?.host ?? false },
  { name: 'URL_SHORTENER', score: 1.0, description: 'a link through a URL shortener (hides where it goes)', test: (c) => c.p.urls.find((u) => SHORTENERS.has(u.host.replace(/^www\./, '')))?.host ?? false },
  {
    name: 'URI_SUSPICIOUS_TLD',
    score: 0.8,
    description: 'a link into a top-level domain mostly used for abuse',
    test: (c) => c.p.urls.find((u) => SUSPICIOUS_TLDS.has(u.host.split('.').pop() ?? ''))?.host ?? false,
  },
  {
    name: 'URI_ANCHOR_MISMATCH',
    score: 2.0,
    description: 'a link whose text shows one web address but leads to another domain (phishing)',
    test: (c) => {
      for (const u of c.p.urls) {
        const shown = /^(?:https?:\/\/)?((?:[\w-]+\.)+[a-z]{2,})(?:[/:?#]\S*)?$/i.exec(u.anchor?.trim() ?? '');
        if (shown && regDomain(shown[1]!.toLowerCase()) !== regDomain(u.host)) return `${shown[1]} → ${u.host}`;
      }
      return false;
    },
  },
  { name: 'CLICK_HERE', score: 0.3, description: 'a link labelled "click here"', test: (c) => c.p.urls.some((u) => /^click here\b/i.test(u.anchor ?? '')) },

  // ---- obfuscation ----
  {
    name: 'MIXED_CHARSET_TRICKS',
    score: 2.0,
    description: 'a word mixing Latin letters with look-alike Cyrillic or Greek ones',
    test: (c) => {
      for (const m of `${c.p.from?.name ?? ''} ${c.p.from?.address ?? ''} ${c.all}`.matchAll(/[\p{L}]{3,}/gu)) if (MIXED_WORD.test(m[0])) return m[0];
      return false;
    },
  },
  { name: 'ZERO_WIDTH_CHARS', score: 1.5, description: 'invisible characters inside words (defeats word filters)', test: (c) => (c.all.match(ZERO_WIDTH) ?? []).length >= 2 },
  {
    name: 'OBFUSCATED_WORDS',
    score: 2.0,
    description: 'a spam word spelt to dodge filters (v1agra, c-i-a-l-i-s, ca$ino)',
    test: (c) => {
      for (const { re, plain } of OBFUSCATED) {
        for (const m of c.all.matchAll(re)) if (m[0].toLowerCase() !== plain) return m[0];
      }
      return false;
    },
  },
  {
    name: 'UPPERCASE_BODY',
    score: 1.0,
    description: 'more than half of the text in capitals',
    test: (c) => {
      const letters = c.p.body.replace(/[^\p{L}]/gu, '');
      return letters.length >= 100 && letters.replace(/[^\p{Lu}]/gu, '').length > letters.length / 2;
    },
  },

  // ---- phrases ----
  { name: 'ADVANCE_FEE_2', score: 1.5, description: 'two or three phrases of advance-fee ("419") fraud', test: (c) => ((n) => n >= 2 && n < 4)(countPhrases(c.all, ADVANCE_FEE)) },
  { name: 'ADVANCE_FEE_4', score: 3.0, description: 'four or more phrases of advance-fee ("419") fraud', test: (c) => countPhrases(c.all, ADVANCE_FEE) >= 4 },
  { name: 'PHARMA_2', score: 1.5, description: 'two or three phrases of pharmacy spam (drug names, "no prescription")', test: (c) => ((n) => n >= 2 && n < 4)(countPhrases(c.all, PHARMA)) },
  { name: 'PHARMA_4', score: 3.0, description: 'four or more phrases of pharmacy spam', test: (c) => countPhrases(c.all, PHARMA) >= 4 },
  { name: 'LOTTERY_WIN', score: 2.0, description: 'you have won a prize or lottery you never entered', test: (c) => countPhrases(c.all, LOTTERY) >= 1 },
  { name: 'PHISH_ACCOUNT', score: 1.5, description: 'your account will be closed unless you confirm it (phishing)', test: (c) => countPhrases(c.all, PHISH_ACCOUNT) >= 1 },
  { name: 'URGENCY', score: 0.5, description: 'pressure to act now', test: (c) => countPhrases(c.all, URGENCY) >= 2 },
  { name: 'MONEY_PROMISE', score: 1.5, description: 'guaranteed returns, easy money, double your bitcoin', test: (c) => countPhrases(c.all, MONEY_PROMISE) >= 1 },
  { name: 'BITCOIN_ADDRESS', score: 1.0, description: 'a Bitcoin address in the text', test: (c) => BTC_ADDRESS.test(c.p.body) },
  { name: 'EXTORTION', score: 2.5, description: 'blackmail: "I recorded you", "your device was hacked", pay or else', test: (c) => countPhrases(c.all, EXTORTION) >= 2 },
  {
    name: 'BITCOIN_EXTORTION',
    score: 2.0,
    description: 'blackmail and a Bitcoin address to pay to',
    test: (c) => countPhrases(c.all, EXTORTION) >= 2 && BTC_ADDRESS.test(c.p.body),
  },
  {
    name: 'CALLBACK_PHISHING',
    score: 2.0,
    description: 'call this number to cancel a charge or remove a virus (call-back phishing, tech support scams)',
    test: (c) => /\bcall\b/i.test(c.all) && PHONE.test(c.all) && countPhrases(c.all, CALLBACK) >= 1,
  },
  { name: 'GIFT_CARD_REQUEST', score: 2.0, description: 'a request to buy gift cards and send the codes (CEO fraud)', test: (c) => countPhrases(c.all, GIFT_CARD) >= 2 },
  { name: 'CRYPTO_SEED_PHRASE', score: 2.0, description: "asks for a wallet's recovery phrase or to connect a wallet (crypto phishing)", test: (c) => countPhrases(c.all, SEED_PHRASE) >= 1 },
];

/** Runs every rule; a rule that throws is skipped (a bug in one rule must not lose the message). */
export async function scoreRules(input: ContentInput, now = Date.now()): Promise<{ hits: ScoreHit[]; parsed: ParsedContent }> {
  const p = await parseContent(input.message);
  const c: RuleContext = { input, p, all: `${p.subject}\n${p.body}`, now };
  const hits: ScoreHit[] = [];
  for (const r of RULES) {
    let m: boolean | string;
    try {
      m = r.test(c);
    } catch {
      continue;
    }
    if (m === false) continue;
    hits.push({ rule: r.name, score: r.score, description: typeof m === 'string' ? `${r.description}: ${m}` : r.description });
  }
  return { hits, parsed: p };
}
