import { pino, type Logger } from 'pino';
import { Writable } from 'node:stream';
import type { Config } from '../config/schema.ts';

/**
 * The mail log: one structured pino line per event. On a TTY (format "auto") it is
 * printed as a human line `time level msg key=value ...`, the way an admin reads
 * Postfix's maillog; elsewhere JSON, for log shippers. Never log passwords.
 */
export function createLogger(config: Config['log'], dest: NodeJS.WritableStream = process.stdout): Logger {
  const pretty = config.format === 'pretty' || (config.format === 'auto' && (dest as { isTTY?: boolean }).isTTY === true);
  const opts = { level: config.level, base: undefined, redact: ['password', '*.password', 'pass'] };
  if (!pretty) return pino(opts, dest as unknown as pino.DestinationStream);
  return pino(opts, humanStream(dest));
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

function humanStream(dest: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        try {
          const { time, level, msg, ...rest } = JSON.parse(line) as Record<string, unknown>;
          const t = new Date(Number(time)).toISOString().replace('T', ' ').slice(0, 19);
          const kv = Object.entries(rest)
            .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
            .join(' ');
          dest.write(`${t} ${(LEVELS[Number(level)] ?? String(level)).padEnd(5)} ${String(msg ?? '')}${kv ? ' ' + kv : ''}\n`);
        } catch {
          dest.write(line + '\n');
        }
      }
      cb();
    },
  });
}
