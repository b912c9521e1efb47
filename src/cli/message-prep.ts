import crypto from 'node:crypto';
import os from 'node:os';
import addressparser from 'nodemailer/lib/addressparser';
import { rfc5322Date } from '../smtp/received.ts';

/**
 * What sendmail(1) does to a message read from stdin before submission:
 * classic "." termination unless -i, header completion (From, Date, Message-ID),
 * and with -t, recipients taken from To/Cc/Bcc and Bcc removed.
 */
export interface PrepOptions {
  extractRecipients: boolean;
  ignoreDots: boolean;
  from: string;
  fullName: string | null;
  hostname: string;
}

export function invokingUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? 'nobody';
  }
}

export function prepareMessage(input: Buffer, o: PrepOptions): { message: Buffer; recipients: string[] } {
  let text = input.toString('latin1'); // byte-preserving; 8-bit content passes through unchanged
  text = text.replace(/\r?\n/g, '\r\n');
  if (!o.ignoreDots) {
    // Without -i, a line with a single "." ends the message (sendmail(8)).
    const m = /(^|\r\n)\.\r\n|(^|\r\n)\.$/.exec(text);
    if (m) text = text.slice(0, m.index + (m[1] ?? m[2] ?? '').length);
  }
  // A message that does not start with a header (plain text piped in) gets only our header fields.
  const nl = text.indexOf('\r\n');
  const firstLine = nl >= 0 ? text.slice(0, nl) : text;
  let head = '';
  let body = text;
  if (/^[!-9;-~]+:/.test(firstLine)) {
    const sep = text.indexOf('\r\n\r\n');
    if (sep >= 0) {
      head = text.slice(0, sep + 2);
      body = text.slice(sep + 4);
    } else {
      head = text.endsWith('\r\n') ? text : text + '\r\n';
      body = '';
    }
  }
  const fields = splitFields(head);
  const has = (name: string) => fields.some((f) => f.name.toLowerCase() === name);
  const recipients: string[] = [];
  if (o.extractRecipients) {
    for (const f of fields) {
      if (['to', 'cc', 'bcc'].includes(f.name.toLowerCase())) {
        for (const a of flatten(addressparser(f.value.replace(/\r\n[ \t]/g, ' ')))) recipients.push(a);
      }
    }
  }
  const kept = fields.filter((f) => !(o.extractRecipients && f.name.toLowerCase() === 'bcc'));
  const added: string[] = [];
  if (!has('from')) added.push(`From: ${o.fullName ? `${quoteName(o.fullName)} ` : ''}<${o.from}>`);
  if (!has('date')) added.push(`Date: ${rfc5322Date(new Date())}`);
  if (!has('message-id')) added.push(`Message-ID: <${Date.now().toString(36)}.${crypto.randomBytes(6).toString('hex')}@${o.hostname}>`);
  const header = [...kept.map((f) => f.raw), ...added.map((l) => l + '\r\n')].join('');
  return { message: Buffer.from(header + '\r\n' + body, 'latin1'), recipients };
}

function quoteName(name: string): string {
  return /^[\w .-]+$/.test(name) ? `"${name}"` : `"${name.replace(/["\\]/g, '\\$&')}"`;
}

interface Field {
  name: string;
  value: string;
  raw: string;
}

function splitFields(head: string): Field[] {
  const out: Field[] = [];
  for (const line of head.split(/(?<=\r\n)/)) {
    if (!line) continue;
    if ((line.startsWith(' ') || line.startsWith('\t')) && out.length) {
      const last = out[out.length - 1]!;
      last.raw += line;
      last.value += line;
      continue;
    }
    const i = line.indexOf(':');
    out.push({ name: i > 0 ? line.slice(0, i).trim() : line.trim(), value: i > 0 ? line.slice(i + 1) : '', raw: line });
  }
  return out;
}

type Parsed = ReturnType<typeof addressparser>;
function flatten(list: Parsed): string[] {
  const out: string[] = [];
  for (const a of list as Array<{ address?: string; group?: Parsed }>) {
    if (a.group) out.push(...flatten(a.group));
    else if (a.address) out.push(a.address);
  }
  return out;
}
