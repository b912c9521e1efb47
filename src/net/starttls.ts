import type net from 'node:net';
import tls from 'node:tls';

/**
 * The in-band TLS upgrade shared by every line protocol we serve by hand (IMAP
 * STARTTLS, RFC 9051 §6.2.1; POP3 STLS, RFC 2595 §4). SMTP's STARTTLS lives in
 * smtp-server, which follows the same rule.
 *
 * The rule (CVE-2011-0411 and its IMAP/POP3 cousins, CVE-2021-33515 …): bytes the
 * client sent after the STARTTLS command, in plaintext, must never be read as
 * commands of the TLS session — an attacker on the path can inject them there. So:
 * 1. the caller stops parsing and throws away whatever its line reader still
 *    buffers (it passes that byte count as `bufferedPlaintext`);
 * 2. here, anything still unread in the plain socket is dropped as well;
 * 3. only then is the socket wrapped; the new session reads only decrypted bytes.
 * The caller also resets its session state (RFC 3207 §4.2, RFC 9051 §6.2.1).
 */
export interface UpgradeResult {
  socket: tls.TLSSocket;
  /** Plaintext bytes that followed the STARTTLS command and were discarded (for the log). */
  discarded: number;
}

export function upgradeToTls(
  plain: net.Socket,
  options: tls.TlsOptions,
  opts: { bufferedPlaintext?: number; handshakeTimeoutMs?: number } = {},
): Promise<UpgradeResult> {
  plain.removeAllListeners('data');
  plain.pause();
  let discarded = opts.bufferedPlaintext ?? 0;
  // What the stream has read from the kernel but nobody consumed yet.
  for (let chunk: Buffer | null; (chunk = plain.read() as Buffer | null) !== null; ) discarded += chunk.length;
  return new Promise<UpgradeResult>((resolve, reject) => {
    const secure = new tls.TLSSocket(plain, { ...options, isServer: true });
    const timer = setTimeout(() => secure.destroy(new Error('TLS handshake timeout')), opts.handshakeTimeoutMs ?? 30_000);
    timer.unref();
    const fail = (err: Error) => {
      clearTimeout(timer);
      secure.destroy();
      plain.destroy();
      reject(err);
    };
    secure.once('error', fail);
    secure.once('secure', () => {
      clearTimeout(timer);
      secure.off('error', fail);
      resolve({ socket: secure, discarded });
    });
  });
}
