import net from 'node:net';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Config } from '../config/schema.ts';

/** sysexits(3) codes, as mail clients expect from sendmail. */
export const EX = { USAGE: 64, DATAERR: 65, NOUSER: 67, UNAVAILABLE: 69, SOFTWARE: 70, TEMPFAIL: 75, CONFIG: 78 } as const;

export class SubmitError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/**
 * Hands a message to the running server over its local unix socket (trusted
 * submission: no auth, may relay), the way Postfix's sendmail hands mail to
 * postdrop/pickup — never by writing files behind the server's back.
 */
export async function submitLocal(config: Config, envelope: { from: string; to: string[] }, message: Buffer): Promise<string> {
  const path = config.listen.local!;
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(path);
    s.once('connect', () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'is the server running? start it with `postern serve`' : err.message;
      reject(new SubmitError(`cannot connect to the Postern server at ${path} (config key listen.local): ${why}`, EX.TEMPFAIL));
    });
  });
  const conn = new SMTPConnection({ connection: socket, name: config.hostname, ignoreTLS: true, lmtp: false } as SMTPConnection.Options);
  try {
    await new Promise<void>((resolve, reject) => {
      conn.once('error', reject);
      conn.connect(() => resolve());
    });
    const info = await new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) => {
      conn.send({ from: envelope.from, to: envelope.to }, message, (err, i) => (err ? reject(err) : resolve(i)));
    });
    conn.quit();
    return info.response ?? '';
  } catch (err) {
    conn.close();
    const e = err as Error & { responseCode?: number; response?: string; rejectedErrors?: Array<{ response?: string }> };
    const detail = e.rejectedErrors?.map((r) => r.response).join('; ') || e.response || e.message;
    const code = e.responseCode ?? 0;
    throw new SubmitError(`the server refused the message: ${detail}`, code >= 500 ? (code === 550 ? EX.NOUSER : EX.UNAVAILABLE) : EX.TEMPFAIL);
  }
}
