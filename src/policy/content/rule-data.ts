/**
 * Word lists behind the builtin rules (rules.ts). Phrases are matched case-insensitively on
 * word boundaries over Subject + body text; each phrase counts once however often it occurs.
 */

/** Free mailbox providers (a Reply-To there with a company From is a fraud classic). */
export const FREEMAIL = new Set([
  'gmail.com', 'googlemail.com', 'yahoo.com', 'yahoo.co.uk', 'ymail.com', 'hotmail.com', 'outlook.com', 'live.com', 'msn.com',
  'aol.com', 'mail.com', 'gmx.com', 'gmx.net', 'gmx.de', 'web.de', 'yandex.ru', 'yandex.com', 'mail.ru', 'protonmail.com',
  'proton.me', 'icloud.com', 'me.com', 'zoho.com', 'qq.com', '163.com', 'rediffmail.com', 'tutanota.com', 'laposte.net', 'libero.it',
]);

export const SHORTENERS = new Set([
  'bit.ly', 'tinyurl.com', 't.co', 'goo.gl', 'ow.ly', 'is.gd', 'buff.ly', 'rebrand.ly', 'cutt.ly', 'shorturl.at', 'tiny.cc',
  'rb.gy', 't.ly', 's.id', 'v.gd', 'bl.ink', 'shorte.st', 'adf.ly', 'tiny.one', 'lnkd.in',
]);

/** Top-level domains with the most abuse per registration (Spamhaus' "most abused TLDs" lists). */
export const SUSPICIOUS_TLDS = new Set(['xyz', 'top', 'click', 'loan', 'work', 'gq', 'tk', 'ml', 'cf', 'ga', 'icu', 'buzz', 'rest', 'cam', 'monster', 'sbs', 'cfd', 'quest', 'zip', 'mov']);

export const ADVANCE_FEE = [
  'next of kin', 'beneficiary', 'transfer of (the )?funds?', 'strictly confidential', 'barrister', 'late client', 'consignment',
  'diplomat(ic)?', 'compensation fund', 'inheritance', 'deceased', '(million|m) (united states |us )?dollars', 'usd ?[0-9.,]+ ?(million|m)\\b',
  '[0-9.,]+ million', 'foreign (partner|account)', 'bank of (nigeria|ghana|benin)', 'god bless', 'dormant account', 'your urgent (response|reply)',
  'trust(ed)? (and|&) confiden', 'percent of the (total )?(sum|fund)', '\\d+% (of the (total )?(sum|fund)|for your assistance)',
];

export const PHARMA = [
  'viagra', 'cialis', 'levitra', 'tramadol', 'xanax', 'valium', 'oxycodone', 'phentermine', 'no prescription', 'online pharmacy',
  'erectile', 'male enhancement', 'weight loss pills?', 'generic pills?', 'meds? online', 'lowest prices?', 'discreet (shipping|packaging)',
];

export const LOTTERY = [
  'you have won', "you've won", 'winning (notification|number)', 'lottery', 'claim your (prize|reward|winnings)', 'selected as (a|the|our) winner',
  'lucky winner', 'prize award',
];

export const PHISH_ACCOUNT = [
  'verify your (account|identity|mailbox|email)', 'confirm your (identity|account|password|login|details)',
  'account (will be|has been|is) (suspended|locked|limited|closed|deactivated|restricted|on hold)',
  'update your (billing|payment|account) (information|details|method)', 'mailbox (is )?(full|over quota|quota)',
  'unusual (sign-?in )?activity', 're-?activate your account', 'failure to (comply|verify|confirm)', 'validate your (account|mailbox|email)',
];

export const URGENCY = [
  'act now', 'urgent(ly)?', 'immediately', 'within (24|48|72) hours', 'limited time', 'expires? (today|soon|tonight)', 'final (notice|warning|reminder)',
  "don'?t miss", 'last chance', 'only \\d+ (left|remaining)',
];

export const MONEY_PROMISE = [
  'guaranteed (returns?|profits?|income)', 'double your (bitcoin|btc|money|investment|crypto)', 'risk[- ]free (investment|profit|returns?)',
  'passive income', 'earn (up to )?\\$?[0-9][0-9,]* (per|a|every) (day|week|hour)', 'work from home', 'financial freedom', '100% (free|guaranteed)',
  'be your own boss', 'make money (fast|online)', '[0-9]+x (returns?|profits?)',
];

export const EXTORTION = [
  'i (have )?hacked', 'recorded you', 'webcam', 'your (device|computer|phone) (was|has been) (infected|hacked|compromised)', 'intimate',
  'adult (web)?sites?', 'your contacts', 'pay(ment)? in bitcoin', 'within \\d+ hours', 'i will (send|share|release|delete)', 'do not (contact|reply to) (the )?police',
];

/** Brands phishers pretend to be, and the domains they really send from (a From display name naming one). */
export const BRANDS: ReadonlyArray<{ re: RegExp; domains: string[] }> = [
  { re: /\bpay ?pal\b/i, domains: ['paypal.com', 'paypal.de', 'paypal.co.uk'] },
  { re: /\bapple\b|\bicloud\b/i, domains: ['apple.com', 'icloud.com'] },
  { re: /\bmicrosoft\b|\boffice ?365\b|\boutlook\b/i, domains: ['microsoft.com', 'office.com', 'outlook.com', 'office365.com'] },
  { re: /\bnetflix\b/i, domains: ['netflix.com'] },
  { re: /\bamazon\b/i, domains: ['amazon.com', 'amazon.de', 'amazon.co.uk', 'amazon.fr', 'amazon.es', 'amazon.it'] },
  { re: /\bdhl\b/i, domains: ['dhl.com', 'dhl.de'] },
  { re: /\bfedex\b/i, domains: ['fedex.com'] },
  { re: /\bups\b/i, domains: ['ups.com'] },
  { re: /\bchase\b/i, domains: ['chase.com'] },
  { re: /\bwells fargo\b/i, domains: ['wellsfargo.com'] },
  { re: /\bdocusign\b/i, domains: ['docusign.net', 'docusign.com'] },
  { re: /\bnorton\b/i, domains: ['norton.com', 'nortonlifelock.com'] },
  { re: /\bmcafee\b/i, domains: ['mcafee.com'] },
  { re: /\bmetamask\b/i, domains: ['metamask.io'] },
  { re: /\bcoinbase\b/i, domains: ['coinbase.com'] },
  { re: /\bwalmart\b/i, domains: ['walmart.com'] },
  { re: /\bgoogle\b|\bgmail\b/i, domains: ['google.com', 'gmail.com'] },
  { re: /\bfacebook\b|\binstagram\b|\bmeta\b/i, domains: ['facebook.com', 'facebookmail.com', 'instagram.com', 'meta.com'] },
  { re: /\blinkedin\b/i, domains: ['linkedin.com'] },
];

/** Call-back phishing ("call us to cancel"): these with a phone number and a call to call. */
export const CALLBACK = ['refund', 'cancel', 'charged', 'renewed', 'infected', 'virus', 'hacked', 'unauthori[sz]ed'];

export const GIFT_CARD = ['gift ?cards?', 'scratch', 'send (me )?the codes', 'reimburse', 'i am in a meeting', "can'?t talk"];

export const SEED_PHRASE = ['(secret )?recovery phrase', 'seed phrase', 'private key', 'connect your wallet', 'wallet (is )?eligible'];

/** Filter words and the look-alike spellings spam uses for them; the correct spelling does not count here. */
const TARGETS = ['viagra', 'cialis', 'levitra', 'casino', 'pharmacy', 'bitcoin', 'password', 'paypal', 'lottery', 'winner', 'free', 'sex'];
const LEET: Record<string, string> = { a: 'a@4àáâ', i: 'i1!l|íï', o: 'o0ò', e: 'e3€é', s: 's$5', l: 'l1|', c: 'c(¢', t: 't7+', x: 'x×' };
const esc = (s: string) => s.replace(/[-[\]\\^$.*+?()|{}]/g, '\\$&');
export const OBFUSCATED: Array<{ re: RegExp; plain: string }> = TARGETS.map((w) => {
  // Each letter may be a look-alike and may be followed by one separator: "v.i.a.g.r.a", "v1agra".
  const parts = [...w].map((ch) => `[${esc(LEET[ch] ?? ch)}]`);
  return { re: new RegExp(`(?<![\\p{L}\\p{N}])${parts.join('[\\s._*-]?')}(?![\\p{L}\\p{N}])`, 'giu'), plain: w };
});

const compiled = new Map<readonly string[], RegExp[]>();

/** How many of the phrases occur in the text (each at most once). */
export function countPhrases(text: string, phrases: readonly string[]): number {
  let res = compiled.get(phrases);
  if (!res) {
    res = phrases.map((p) => new RegExp(`(?<![\\p{L}\\p{N}])(?:${p})(?![\\p{L}\\p{N}])`, 'iu'));
    compiled.set(phrases, res);
  }
  return res.reduce((n, re) => n + (re.test(text) ? 1 : 0), 0);
}
