import crypto from 'node:crypto';
import type { Bayes } from './bayes.ts';
import { parseContent } from './parse.ts';
import { tokenize } from './tokenize.ts';

/** The Bayes tokens of a raw message (the same parse the rules use). */
export async function messageTokens(message: Buffer): Promise<string[]> {
  return tokenize(await parseContent(message));
}

/** A message file's id in bayes_seen: its SHA-256, like a stored message's blob hash. */
export function messageId(message: Buffer): string {
  return crypto.createHash('sha256').update(message).digest('hex');
}

/**
 * Learns one message in the user's scope (if any) and the global one. Returns what it was
 * learned as before in the global scope (null: new; the same verdict: nothing changed).
 */
export async function learnMessage(bayes: Bayes, user: string | null, id: string, message: Buffer, verdict: 'spam' | 'ham' | null): Promise<'spam' | 'ham' | null> {
  const scopes = user ? ['', user.toLowerCase()] : [''];
  const before = await bayes.learn(scopes, id, await messageTokens(message), verdict);
  return before[0] ?? null;
}
