import net from 'node:net';
import type { ContentFilter, ContentInput, ContentScore, ScoreHit } from './types.ts';

/**
 * SpamAssassin's spamd as the content filter (issue #9; `[policy.spam] filter = "spamd"`), what
 * Postfix + spamc do. One connection per message, the SPAMC/1.5 protocol (spamd/PROTOCOL in the
 * SpamAssassin sources): we send `REPORT`, the message with its Content-length and, when
 * configured, a `User:` header (the per-user preferences spamd should apply); spamd answers
 *
 *   SPAMD/1.1 0 EX_OK
 *   Content-length: 766
 *   Spam: True ; 1000.0 / 5.0
 *
 *   …report text with the "pts rule name description" table…
 *
 * and closes. The score is what counts: Postern's own tag/reject thresholds apply to it, spamd's
 * threshold and True/False are not used. A failure (refused, timeout, `SPAMD/1.0 76 Bad header
 * line`, an answer over 1 MiB) rejects with an Error naming policy.spam.spamd; the caller then
 * delivers the message unscored.
 */

export interface SpamdOptions {
  /** "host:port", "host" (port 783), "[v6]:port", or the path of a unix socket ("/run/spamd.sock"). */
  address: string;
  /** For the whole exchange: connect, send, score, answer (policy.spam.timeout). */
  timeoutMs: number;
  /** spamd's `User:` header: whose preferences to apply (spamd -x ignores it). */
  user?: string;
}

export type SpamdAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** The largest answer we read; a REPORT is a few KiB. */
export const SPAMD_MAX_RESPONSE = 1024 * 1024;
const DEFAULT_PORT = 783;

/** Parses policy.spam.spamd; throws an Error naming the key when it is not an address. */
export function parseSpamdAddress(address: string): SpamdAddress {
  const bad = (why: string) => new Error(`policy.spam.spamd: invalid spamd address "${address}": ${why}`);
  const a = address.trim();
  if (!a) throw bad('empty');
  if (a.includes('/')) return { kind: 'unix', path: a };
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(a);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
    if (net.isIPv6(host) === false) throw bad(`"${host}" is not an IPv6 address`);
  } else {
    const parts = a.split(':');
    if (parts.length > 2) throw bad('write an IPv6 address in brackets: "[::1]:783"');
    host = parts[0]!;
    portText = parts[1];
    if (!host) throw bad('no host');
  }
  let port = DEFAULT_PORT;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) throw bad(`bad port "${portText}"`);
    port = Number(portText);
  }
  return { kind: 'tcp', host, port };
}

export function spamdFilter(opts: SpamdOptions): ContentFilter {
  const addr = parseSpamdAddress(opts.address);
  if (opts.user !== undefined && /[\r\n]/.test(opts.user)) throw new Error('policy.spam.spamd: the spamd user must not contain a line break');
  const where = addr.kind === 'unix' ? addr.path : addr.host.includes(':') ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
  return {
    name: 'spamd',
    score: (input: ContentInput) => exchange(addr, where, opts, input.message),
  };
}

function exchange(addr: SpamdAddress, where: string, opts: SpamdOptions, message: Buffer): Promise<ContentScore> {
  return new Promise<ContentScore>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err: Error | null, result?: ContentScore) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(result!);
    };
    const socket = addr.kind === 'unix' ? net.connect({ path: addr.path }) : net.connect({ host: addr.host, port: addr.port });
    const timer = setTimeout(
      () => finish(new Error(`policy.spam.spamd: spamd at ${where} did not answer within ${opts.timeoutMs} ms (policy.spam.timeout)`)),
      opts.timeoutMs,
    );
    let connected = false;
    socket.on('connect', () => {
      connected = true;
      let head = `REPORT SPAMC/1.5\r\nContent-length: ${message.length}\r\n`;
      if (opts.user) head += `User: ${opts.user}\r\n`;
      socket.write(`${head}\r\n`);
      socket.end(message);
    });
    socket.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > SPAMD_MAX_RESPONSE) {
        finish(new Error(`policy.spam.spamd: spamd at ${where} sent an answer over ${SPAMD_MAX_RESPONSE} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    socket.on('end', () => {
      try {
        finish(null, parseSpamdResponse(Buffer.concat(chunks), where));
      } catch (err) {
        finish(err as Error);
      }
    });
    socket.on('error', (err: Error) => {
      // spamd may answer an error line and close before it read everything (EPIPE/ECONNRESET on
      // our side): its answer says more than the socket error.
      const status = statusError(Buffer.concat(chunks), where);
      if (status) return finish(status);
      const verb = connected ? 'connection failed with' : 'cannot connect to';
      finish(new Error(`policy.spam.spamd: ${verb} spamd at ${where}: ${err.message}`));
    });
  });
}

const STATUS = /^SPAMD\/(\d+\.\d+) (\d+) ?(.*)$/;

/** A non-zero status line ("SPAMD/1.0 76 Bad header line: …") as an Error, or null. */
function statusError(data: Buffer, where: string): Error | null {
  const eol = data.indexOf('\n');
  if (eol < 0) return null;
  const m = STATUS.exec(data.subarray(0, eol).toString('latin1').replace(/\r$/, ''));
  if (!m || m[2] === '0') return null;
  return new Error(`policy.spam.spamd: spamd at ${where} answered ${m[2]} ${m[3]}`.trimEnd());
}

/** Parses spamd's answer to REPORT (also CHECK and SYMBOLS: their bodies give no table). */
export function parseSpamdResponse(data: Buffer, where: string): ContentScore {
  const protocolError = (why: string) => new Error(`policy.spam.spamd: protocol error from spamd at ${where}: ${why}`);
  const text = data.toString('utf8');
  if (!text) throw protocolError('it closed the connection without an answer');
  const failed = statusError(data, where);
  if (failed) throw failed;
  const headEnd = text.indexOf('\r\n\r\n');
  const headText = headEnd >= 0 ? text.slice(0, headEnd) : text.replace(/\r\n$/, '');
  const lines = headText.split('\r\n');
  const status = STATUS.exec(lines[0]!);
  if (!status) throw protocolError(`unexpected first line "${lines[0]!.slice(0, 100)}"`);
  let score: number | null = null;
  for (const line of lines.slice(1)) {
    const m = /^Spam:\s*(True|False|Yes|No)\s*;\s*(-?\d+(?:\.\d+)?)\s*\/\s*(-?\d+(?:\.\d+)?)\s*$/i.exec(line);
    if (m) score = Number(m[2]);
  }
  if (score === null) throw protocolError('no "Spam: True|False ; score / threshold" header');
  const body = headEnd >= 0 ? text.slice(headEnd + 4) : '';
  return { score, hits: parseReport(body), filter: 'spamd' };
}

/**
 * The rules from the report's table:
 *
 *    pts rule name              description
 *   ---- ---------------------- --------------------------------------------------
 *   1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email
 *   -0.0 NO_RELAYS              Informational: message was not relayed via SMTP
 *
 * A description that does not fit continues on indented lines. A SYMBOLS body
 * ("GTUBE,NO_RECEIVED") gives the names with score 0.
 */
export function parseReport(body: string): ScoreHit[] {
  const lines = body.split(/\r?\n/);
  const header = lines.findIndex((l) => /^\s*pts\s+rule name\s+description/.test(l));
  if (header < 0) {
    const symbols = body.trim();
    if (/^[A-Za-z0-9_]+(,[A-Za-z0-9_]+)*$/.test(symbols)) return symbols.split(',').map((rule) => ({ rule, score: 0, description: rule }));
    return [];
  }
  const hits: ScoreHit[] = [];
  for (const line of lines.slice(header + 1)) {
    if (/^[\s-]+$/.test(line) && line.includes('-')) continue; // the dashes under the header
    if (!line.trim()) break;
    const m = /^\s*(-?\d+(?:\.\d+)?)\s+([A-Za-z0-9_]+)\s*(.*)$/.exec(line);
    if (m) hits.push({ rule: m[2]!, score: Number(m[1]), description: m[3]!.trim() || m[2]! });
    else if (/^\s/.test(line) && hits.length) hits[hits.length - 1]!.description += ` ${line.trim()}`;
  }
  return hits;
}
