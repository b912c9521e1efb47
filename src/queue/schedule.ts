import type { Config } from '../config/schema.ts';

/**
 * Retry timing (RFC 5321 §4.5.4.1: at least 30 minutes between attempts is the
 * RFC's advice for a server; Postfix's defaults are the model here): the first
 * retry after `queue.first_retry` (5 min), then the wait doubles up to
 * `queue.max_retry_interval` (~67 min), until `queue.lifetime` (5 days).
 */
export function retryDelay(attempts: number, q: Config['queue']): number {
  const doubled = q.first_retry * 2 ** Math.min(30, Math.max(0, attempts - 1));
  return Math.min(doubled, q.max_retry_interval);
}

/** A recipient waiting longer than this is bounced (null-sender bounces have their own, shorter lifetime). */
export function lifetimeOf(sender: string, q: Config['queue']): number {
  return sender === '' ? q.bounce_lifetime : q.lifetime;
}

/** RFC 3461 §4.1: NOTIFY absent means FAILURE,DELAY; NEVER means no DSN at all. */
export function wantsNotice(notify: string | null, kind: 'SUCCESS' | 'FAILURE' | 'DELAY'): boolean {
  if (!notify) return kind !== 'SUCCESS';
  return notify.toUpperCase().split(',').includes(kind);
}

/** The RFC 3463 status in a reply ("550 5.1.1 …"), or the class default. */
export function enhancedStatus(code: number, reply: string): string {
  const m = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(reply);
  if (m) return m[1]!;
  if (code >= 200 && code < 300) return '2.0.0';
  if (code >= 500) return '5.0.0';
  // No reply at all (code 0): "no answer from host" (RFC 3463 §3.5).
  return code === 0 ? '4.4.1' : '4.0.0';
}
