import crypto from 'node:crypto';

/** A Postfix-like queue id: 12 characters, unique enough to grep the log by. */
const ALPHABET = '0123456789BCDFGHJKLMNPQRSTVWXYZ';
/** Random bytes drawn in bulk: one crypto call per 340 ids instead of one per id. */
const pool = Buffer.alloc(4096);
let poolUsed = pool.length;

export function newQueueId(): string {
  if (poolUsed + 12 > pool.length) {
    crypto.randomFillSync(pool);
    poolUsed = 0;
  }
  let s = '';
  for (let i = 0; i < 12; i++) s += ALPHABET[pool[poolUsed + i]! % ALPHABET.length];
  poolUsed += 12;
  return s;
}

/** RFC 5322 §3.3 date-time, e.g. "Sat, 28 Nov 2026 05:12:00 +0000". */
export function rfc5322Date(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]}, ${d.getUTCDate()} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** Characters that could end or forge a header line never reach a trace field. */
function clean(s: string): string {
  return s.replace(/[\x00-\x20\x7f()\[\]\\]/g, '?').slice(0, 255);
}

export interface TraceInfo {
  returnPath: string;
  /** The client's HELO/EHLO name; null leaves the "from" clause out (submission.hide_client_ip). */
  helo: string | null;
  clientHostname: string | null;
  clientAddress: string;
  hostname: string;
  /** RFC 3848 "with" keyword: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, LMTP, LMTPS. */
  protocol: string;
  queueId: string;
  /** Included only for single-recipient messages (RFC 5321 §4.4: privacy of Bcc). */
  recipient: string | null;
  tls: string | null;
  date: Date;
}

/**
 * The Return-Path (RFC 5321 §4.4) and Received trace header fields that open every
 * stored message, as one CRLF-terminated block.
 */
export function traceHeaders(t: TraceInfo): Buffer {
  let r: string;
  if (t.helo === null) {
    // Privacy: nothing about the submitting client (its address, name or HELO) is recorded.
    r = `Received: by ${clean(t.hostname)} (Postern) with ${t.protocol} id ${t.queueId}`;
  } else {
    const from = t.clientHostname && !t.clientHostname.startsWith('[') && t.clientHostname !== t.clientAddress ? `${clean(t.clientHostname)} ` : '';
    r = `Received: from ${clean(t.helo || 'unknown')} (${from}[${clean(t.clientAddress)}])\r\n`;
    if (t.tls) r += `\t(using ${clean(t.tls)})\r\n`;
    r += `\tby ${clean(t.hostname)} (Postern) with ${t.protocol} id ${t.queueId}`;
  }
  if (t.recipient) r += `\r\n\tfor <${t.recipient.replace(/[\r\n<>]/g, '')}>`;
  r += `; ${rfc5322Date(t.date)}\r\n`;
  const rp = `Return-Path: <${t.returnPath.replace(/[\r\n<>]/g, '')}>\r\n`;
  return Buffer.from(rp + r, 'utf8');
}
