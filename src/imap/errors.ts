/**
 * Command failures as values the session maps to responses in one place
 * (RFC 9051 §7.1): NO (the command failed), BAD (protocol error), with an optional
 * response code such as [TRYCREATE], [NONEXISTENT], [ALREADYEXISTS], [CANNOT].
 */
export class ImapError extends Error {
  constructor(
    readonly kind: 'NO' | 'BAD',
    text: string,
    readonly code?: string,
  ) {
    super(text);
  }
}

export const bad = (text: string, code?: string) => new ImapError('BAD', text, code);
export const no = (text: string, code?: string) => new ImapError('NO', text, code);
