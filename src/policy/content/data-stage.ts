import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Config } from '../../config/schema.ts';
import type { DnsResolver } from '../../net/dns.ts';
import type { PolicyReply } from '../verdict.ts';
import { authenticateMessage } from './authenticate.ts';
import { domainZones, lookupDomainLists, messageDomains } from './domain-lists.ts';
import type { AuthSummary, ContentFilter, ContentScore } from './types.ts';

/**
 * The DATA stage of inbound mail (issue #9): authentication (SPF/DKIM/DMARC/ARC), then one
 * content filter, then the decision. Refusals happen here, before the 250, so nothing is
 * ever bounced after acceptance (no backscatter). A check that fails or times out never
 * refuses mail: it is logged and the message delivered without that evidence.
 */
export interface DataStageInput {
  /** The whole message as it would be stored after our trace headers (for DKIM: exact bytes). */
  message: () => Readable;
  /** The same in memory when it is no larger than policy.spam.max_size, else null (not scored). */
  buffer: Buffer | null;
  /** Our Return-Path and Received fields, shown to the filter in front of the message. */
  trace: Buffer;
  ip: string;
  helo: string;
  from: string;
  recipients: string[];
  dnsblHits: string[];
}

export interface DataStageOutcome {
  /** Set: refuse the message with this reply (550 5.7.1). */
  reject: PolicyReply | null;
  /** Fields to put in front of the message (Received-SPF, Authentication-Results, X-Spam-*). */
  headers: string;
  /** Deliver to the recipients' Junk mailbox. */
  junk: boolean;
  /** Prefix the Subject with policy.spam.subject_tag. */
  tagSubject: boolean;
  auth: AuthSummary | null;
  score: ContentScore | null;
  /** For the mail log: what decided, and why. */
  decision: 'accept' | 'tag' | 'junk' | 'reject';
  reasons: string[];
}

export interface DataStageDeps {
  config: Pick<Config, 'hostname' | 'policy'>;
  dns: DnsResolver;
  filter: ContentFilter | null;
  log: Logger;
}

export async function runDataStage(deps: DataStageDeps, input: DataStageInput): Promise<DataStageOutcome> {
  const { auth: authCfg, spam } = deps.config.policy;
  const reasons: string[] = [];
  let headers = '';
  let auth: AuthSummary | null = null;
  if (authCfg.enabled) {
    try {
      const a = await withTimeout(authenticateMessage(input.message(), { ip: input.ip, helo: input.helo, sender: input.from, hostname: deps.config.hostname, dns: deps.dns }), spam.timeout, 'authentication');
      auth = a.summary;
      headers += a.headers;
    } catch (err) {
      deps.log.warn({ err, client: input.ip }, 'SPF/DKIM/DMARC verification failed; the message is delivered without Authentication-Results');
      reasons.push(`authentication not checked: ${(err as Error).message}`);
    }
  }
  let reject: PolicyReply | null = null;
  let junk = false;
  let tagged = false;
  if (auth) {
    reasons.push(`spf=${auth.spf} dkim=${auth.dkim.map((d) => `${d.result}(${d.domain})`).join(',') || 'none'} dmarc=${auth.dmarc}${auth.dmarcPolicy ? ` (p=${auth.dmarcPolicy})` : ''} arc=${auth.arc}`);
    if (auth.dmarc === 'fail' && auth.dmarcPolicy === 'reject' && authCfg.dmarc_reject) {
      // RFC 7489 §6.6.3 and §7.3: refuse during the transaction, saying why.
      reject = { code: 550, enhanced: '5.7.1', text: `Message rejected: ${auth.fromDomain || 'the sender domain'} publishes a DMARC policy of reject and this message failed DMARC` };
    } else if (auth.dmarc === 'fail' && (auth.dmarcPolicy === 'quarantine' || auth.dmarcPolicy === 'reject') && authCfg.dmarc_quarantine) {
      junk = true;
      reasons.push(`DMARC p=${auth.dmarcPolicy}: to Junk`);
    }
  }
  let score: ContentScore | null = null;
  if (!reject && spam.enabled && deps.filter) {
    if (!input.buffer) reasons.push(`not scored: larger than policy.spam.max_size (${spam.max_size} bytes)`);
    else {
      try {
        const message = Buffer.concat([input.trace, Buffer.from(headers, 'latin1'), input.buffer]);
        score = await withTimeout(deps.filter.score({ message, ip: input.ip, helo: input.helo, from: input.from, recipients: input.recipients, auth, dnsblHits: input.dnsblHits }), spam.timeout, deps.filter.name);
      } catch (err) {
        deps.log.warn({ err, client: input.ip, filter: deps.filter.name }, 'spam filter did not answer; the message is delivered unscored (see policy.spam.filter)');
        reasons.push(`not scored: ${deps.filter.name} failed: ${(err as Error).message}`);
      }
    }
  }
  const zones = domainZones(deps.config.policy.dnsbl.domain_zones);
  if (score && zones.length && input.buffer) {
    // Domain blocklists: evidence added to whichever filter scored.
    try {
      const names = await messageDomains(input.buffer, input.from);
      const hits = await lookupDomainLists(deps.dns, zones, names, deps.config.policy.dnsbl.timeout);
      if (hits.length) score = { ...score, score: score.score + hits.reduce((n, h) => n + h.score, 0), hits: [...score.hits, ...hits] };
    } catch (err) {
      reasons.push(`domain blocklists not checked: ${(err as Error).message}`);
    }
  }
  if (score) {
    const s = round(score.score);
    const isSpam = s >= spam.tag;
    headers += spamHeaders(score, spam.tag, isSpam);
    reasons.push(`score ${s} (${score.filter}${score.action ? `, which says "${score.action}"` : ''}: ${score.hits.map((h) => `${h.rule}=${round(h.score)}`).join(' ') || 'no rules'})`);
    if (s >= spam.reject) reject = { code: 550, enhanced: '5.7.1', text: `Message rejected as spam (score ${s}, limit ${spam.reject})` };
    else if (isSpam) {
      tagged = true;
      junk = true;
    }
  }
  const decision = reject ? 'reject' : tagged ? 'tag' : junk ? 'junk' : 'accept';
  return { reject, headers, junk, tagSubject: tagged, auth, score, decision, reasons };
}

const round = (n: number) => Math.round(n * 10) / 10;

/**
 * SpamAssassin's header names, which clients and sieve scripts already know: X-Spam-Flag
 * (tagged only), X-Spam-Score, X-Spam-Status ("Yes, score=… required=… tests=…") and
 * X-Spam-Report (one line per rule that matched).
 */
export function spamHeaders(score: ContentScore, required: number, isSpam: boolean): string {
  const s = round(score.score).toFixed(1);
  const tests = score.hits.map((h) => h.rule).join(',') || 'none';
  let out = isSpam ? 'X-Spam-Flag: YES\r\n' : '';
  out += `X-Spam-Score: ${s}\r\n`;
  out += fold(`X-Spam-Status: ${isSpam ? 'Yes' : 'No'}, score=${s} required=${required.toFixed(1)} tests=${tests} filter=${score.filter}`);
  if (score.hits.length) {
    const lines = score.hits.map((h) => ` * ${round(h.score).toFixed(1).padStart(5)} ${h.rule} ${h.description.replace(/[\r\n]+/g, ' ').slice(0, 120)}`);
    out += `X-Spam-Report:\r\n${lines.join('\r\n')}\r\n`;
  }
  return out;
}

/** Folds a long field at commas (RFC 5322 §2.2.3), keeping lines under 78 characters where it can. */
function fold(field: string): string {
  const parts = field.split(/(?<=,)/);
  let line = '';
  const lines: string[] = [];
  for (const p of parts) {
    if (line && line.length + p.length > 76) {
      lines.push(line);
      line = '\t' + p;
    } else line += p;
  }
  lines.push(line);
  return lines.join('\r\n') + '\r\n';
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (policy.spam.timeout)`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
