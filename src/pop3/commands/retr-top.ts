import { MailError } from '../../core/errors.ts';
import { err } from '../errors.ts';
import { DotStuffer } from '../dot-stuffing.ts';
import type { CommandOf } from '../parser.ts';
import type { Pop3Session } from '../session.ts';
import type { CommandSpec } from './index.ts';

/** Bytes gathered before a write: one write for a small message, 64 KiB pieces for a large one. */
const WRITE_AT = 64 * 1024;

/**
 * RFC 1939 §5 RETR and §7 TOP: the message streams from its blob through the
 * dot-stuffer to the socket, waiting for the socket to drain (a 20 MB message is
 * never held in memory). The +OK goes out only with the first bytes read, so a
 * blob that cannot be read is still answered -ERR [SYS/TEMP]; a failure later in
 * the stream cannot be reported inside a multi-line response and ends the connection.
 * Returns false when the message was not sent completely.
 */
async function send(s: Pop3Session, msg: number, bodyLines: number | null): Promise<boolean> {
  const drop = s.maildrop!;
  const m = drop.get(msg);
  if (!m) throw err(drop.isDeleted(msg) ? `Message ${msg} is deleted` : 'No such message');
  const stuffer = new DotStuffer(bodyLines);
  const source = s.ctx.blobs.read(m.blobHash);
  let parts: Buffer[] = [Buffer.from(bodyLines === null ? `+OK ${m.size} octets\r\n` : '+OK Top of message follows\r\n')];
  let gathered = 0;
  let written = false;
  try {
    for await (const chunk of source) {
      const out = stuffer.push(chunk as Buffer);
      if (out.length) {
        parts.push(out);
        gathered += out.length;
      }
      if (gathered >= WRITE_AT) {
        const data = Buffer.concat(parts);
        parts = [];
        gathered = 0;
        written = true;
        await s.send(data);
        if (s.isClosed) return false;
      }
      if (stuffer.done) break;
    }
  } catch (e) {
    source.destroy();
    if (!written) {
      s.log.error({ err: e, uid: m.uid }, 'message could not be read');
      throw new MailError('TEMP_FAILURE', 'Cannot read the message now, try again later');
    }
    s.log.error({ err: e, uid: m.uid }, 'message read failed while it was being sent; closing the connection');
    s.close();
    return false;
  }
  parts.push(stuffer.end());
  await s.send(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
  return !s.isClosed;
}

export const retr: CommandSpec<CommandOf<'RETR'>> = {
  states: ['transaction'],
  async run(s, cmd) {
    if (await send(s, cmd.msg, null)) {
      s.maildrop!.retrieved.add(cmd.msg);
      s.stats.retr++;
      s.stats.retrBytes += s.maildrop!.get(cmd.msg)?.size ?? 0;
    }
  },
};

export const top: CommandSpec<CommandOf<'TOP'>> = {
  states: ['transaction'],
  async run(s, cmd) {
    if (await send(s, cmd.msg, cmd.lines)) s.stats.top++;
  },
};
