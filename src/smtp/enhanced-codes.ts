import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

/**
 * smtp-server derives the RFC 3463 enhanced status code from the basic reply code
 * alone (554 → 5.6.0), which is wrong for e.g. "554 5.7.1 Relay access denied".
 * When our reply text already begins with an enhanced code, send it as is and let
 * smtp-server add none. Applied once, idempotently.
 */
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /;
const MARK = Symbol.for('postern.enhancedCodes');

interface Sendable {
  send(code: number, data: unknown, context?: unknown): void;
}

export function useOwnEnhancedCodes(): void {
  const proto = (SMTPConnection as unknown as { prototype: Sendable & { [MARK]?: boolean } }).prototype;
  if (proto[MARK]) return;
  const original = proto.send;
  proto.send = function (this: Sendable, code: number, data: unknown, context?: unknown) {
    if (code >= 400 && typeof data === 'string' && ENHANCED.test(data)) return original.call(this, code, data, false);
    return original.call(this, code, data, context);
  };
  proto[MARK] = true;
}
