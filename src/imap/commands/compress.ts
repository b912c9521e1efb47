import { argCount, atomUpper } from '../args.ts';
import { bad, no } from '../errors.ts';
import { status } from '../writer.ts';
import type { Command } from '../parser.ts';
import type { ImapSession } from '../session.ts';
import type { CommandSpec } from './index.ts';

/**
 * COMPRESS DEFLATE (RFC 4978 §3). Only after login (our choice: nothing before it
 * is worth compressing, and it keeps the pre-login surface small), once per
 * connection (again: NO [COMPRESSIONACTIVE]). The tagged OK goes out uncompressed;
 * from the byte after it every response is compressed and every command is expected
 * compressed (session.startCompression, ../compress.ts).
 *
 * "The client MUST NOT send any further commands until it has seen the result of
 * COMPRESS": bytes pipelined behind COMPRESS would be ambiguous (compressed or
 * not?), so a COMPRESS with input behind it is refused with BAD and compression is
 * not started; the pipelined commands then run uncompressed.
 */

export const COMPRESS_CAPABILITIES = ['COMPRESS=DEFLATE'];

async function compress(s: ImapSession, cmd: Command): Promise<null> {
  argCount(cmd, 1);
  const mech = atomUpper(cmd.args[0]);
  if (mech !== 'DEFLATE') throw bad(`${cmd.name}: unknown compression mechanism`);
  if (s.compressed) throw no('DEFLATE is already active', 'COMPRESSIONACTIVE');
  if (s.reader.pendingBytes) throw bad(`${cmd.name}: commands were sent before the result of COMPRESS`);
  s.write(status(cmd.tag, 'OK', 'DEFLATE active'));
  s.startCompression();
  return null;
}

export const compressCommands: CommandSpec[] = [{ name: 'COMPRESS', states: ['authenticated', 'selected'], run: compress }];
