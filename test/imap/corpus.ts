/**
 * Test helper for test/imap/corpus/: NN-name.eml messages with hand-written
 * NN-name.bodystructure and NN-name.envelope expectations.
 *
 * The .eml files are stored with LF line endings (25-lone-lf.eml mixes CRLF, LF) and
 * go through the same LineEndingNormalizer as SMTP ingest, so the indexed bytes are
 * CRLF like a stored blob. Sizes in the expected files count CRLF line ends.
 *
 * Expected files hold one line; a literal is written as "{n}" followed by a line
 * break, which stands for "{n}" CRLF.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MimeIndexer } from '../../src/mime/indexer.ts';
import { LineEndingNormalizer } from '../../src/smtp/line-endings.ts';
import type { MessageIndex } from '../../src/mime/types.ts';

export const corpusDir = fileURLToPath(new URL('./corpus/', import.meta.url));

export function corpusNames(): string[] {
  return readdirSync(corpusDir)
    .filter((f) => f.endsWith('.eml'))
    .map((f) => f.slice(0, -4))
    .sort();
}

/** The message as ingest would store it: line endings normalised to CRLF. */
export function loadMessage(name: string): Buffer {
  const n = new LineEndingNormalizer();
  const raw = readFileSync(corpusDir + name + '.eml');
  return Buffer.concat([n.push(raw), n.end()]);
}

export function loadExpected(name: string, kind: 'bodystructure' | 'envelope'): string {
  return readFileSync(corpusDir + `${name}.${kind}`, 'utf8').replace(/\n$/, '').replace(/\{(\d+)\}\n/g, '{$1}\r\n');
}

/** Runs the indexer the way src/core/ingest.ts does: write() chunks, end(), result(). */
export async function indexChunks(chunks: Iterable<Buffer>): Promise<MessageIndex> {
  const ix = new MimeIndexer();
  for (const c of chunks) {
    if (!ix.write(c)) await new Promise<void>((r) => ix.once('drain', r));
  }
  ix.end();
  return ix.result();
}

/** Feeds the message in small pieces, so lines and delimiters straddle chunk boundaries. */
export function indexMessage(buf: Buffer, chunk = 7): Promise<MessageIndex> {
  const pieces: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunk) pieces.push(buf.subarray(i, i + chunk));
  return indexChunks(pieces);
}
