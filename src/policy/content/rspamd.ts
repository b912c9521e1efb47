import type { ContentFilter, ContentInput, ContentScore, ScoreHit } from './types.ts';

/**
 * Rspamd as the content filter (issue #9; `[policy.spam] filter = "rspamd"`), over its HTTP
 * protocol (rspamd.com/doc/developers/protocol.html): POST ${rspamd_url}/checkv2 with the message
 * as the body and the envelope in headers — IP, Helo, From ("<>" for the null sender), Rcpt for
 * the recipients, Deliver-To when there is one. fetch joins repeated headers into one line
 * ("Rcpt: a@x, b@x"), which Rspamd reads as the list of recipients (the tests check this against
 * a real Rspamd). The answer:
 *
 *   { "score": 7.3, "required_score": 15, "action": "add header",
 *     "symbols": { "RDNS_NONE": { "name": "RDNS_NONE", "score": 1, "description": "…" }, … } }
 *
 * The score is what counts: Postern's own tag/reject thresholds apply to it; Rspamd's action and
 * required_score are not used. A failure (refused, timeout, HTTP error, an answer that is not
 * that JSON or is over 1 MiB) rejects with an Error naming policy.spam.rspamd_url; the caller then
 * delivers the message unscored.
 */

export interface RspamdOptions {
  /** The normal worker's (or proxy's) base URL: "http://127.0.0.1:11333". */
  url: string;
  /** For the whole request, answer included (policy.spam.timeout). */
  timeoutMs: number;
}

export const RSPAMD_MAX_RESPONSE = 1024 * 1024;

interface RspamdSymbol {
  score?: unknown;
  metric_score?: unknown;
  description?: unknown;
}

export function rspamdFilter(opts: RspamdOptions): ContentFilter {
  let base: URL;
  try {
    base = new URL(opts.url);
  } catch {
    throw new Error(`policy.spam.rspamd_url: "${opts.url}" is not a URL`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error(`policy.spam.rspamd_url: "${opts.url}" is not an http or https URL`);
  const endpoint = `${opts.url.replace(/\/+$/, '')}/checkv2`;
  return { name: 'rspamd', score: (input) => check(endpoint, opts, input) };
}

async function check(endpoint: string, opts: RspamdOptions, input: ContentInput): Promise<ContentScore> {
  const fail = (why: string) => new Error(`policy.spam.rspamd_url: Rspamd at ${endpoint} ${why}`);
  const headers = new Headers();
  if (input.ip) headers.set('IP', input.ip);
  if (input.helo) headers.set('Helo', input.helo);
  headers.set('From', input.from ? input.from : '<>');
  for (const rcpt of input.recipients) headers.append('Rcpt', rcpt);
  if (input.recipients.length === 1) headers.set('Deliver-To', input.recipients[0]!);
  let text: string;
  let status: number;
  try {
    const res = await fetch(endpoint, { method: 'POST', headers, body: new Uint8Array(input.message.buffer as ArrayBuffer, input.message.byteOffset, input.message.length), signal: AbortSignal.timeout(opts.timeoutMs) });
    status = res.status;
    text = await readBounded(res, fail);
  } catch (err) {
    const e = err as Error;
    if (e.name === 'TimeoutError' || e.name === 'AbortError') throw fail(`did not answer within ${opts.timeoutMs} ms (policy.spam.timeout)`);
    if (e.message.startsWith('policy.spam.rspamd_url:')) throw e;
    const cause = (e as Error & { cause?: { message?: string; code?: string } }).cause;
    throw fail(`cannot be reached: ${cause?.message ?? cause?.code ?? e.message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  if (status !== 200) {
    const error = json && typeof json === 'object' && typeof (json as { error?: unknown }).error === 'string' ? (json as { error: string }).error : text.slice(0, 200);
    throw fail(`answered HTTP ${status}${error ? `: ${error}` : ''}`);
  }
  if (!json || typeof json !== 'object') throw fail('sent an answer that is not a JSON object');
  return parseRspamdResult(json as Record<string, unknown>, fail);
}

/** The body as text, refusing more than RSPAMD_MAX_RESPONSE bytes without reading them all. */
async function readBounded(res: Response, fail: (why: string) => Error): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > RSPAMD_MAX_RESPONSE) {
    await res.body?.cancel().catch(() => undefined);
    throw fail(`sent an answer over ${RSPAMD_MAX_RESPONSE} bytes`);
  }
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > RSPAMD_MAX_RESPONSE) {
      await reader.cancel().catch(() => undefined);
      throw fail(`sent an answer over ${RSPAMD_MAX_RESPONSE} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function parseRspamdResult(json: Record<string, unknown>, fail: (why: string) => Error = (why) => new Error(`policy.spam.rspamd_url: ${why}`)): ContentScore {
  const score = json.score;
  if (typeof score !== 'number' || !Number.isFinite(score)) throw fail('sent an answer without a numeric "score"');
  const hits: ScoreHit[] = [];
  const symbols = json.symbols;
  if (symbols && typeof symbols === 'object') {
    for (const [rule, raw] of Object.entries(symbols as Record<string, RspamdSymbol>)) {
      const sym: RspamdSymbol = raw && typeof raw === 'object' ? raw : {};
      const points = typeof sym.score === 'number' ? sym.score : typeof sym.metric_score === 'number' ? sym.metric_score : 0;
      hits.push({ rule, score: points, description: typeof sym.description === 'string' && sym.description ? sym.description : rule });
    }
  }
  hits.sort((a, b) => b.score - a.score);
  return { score, hits, filter: 'rspamd', ...(typeof json.action === 'string' ? { action: json.action } : {}) };
}
