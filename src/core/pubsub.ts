import { EventEmitter } from 'node:events';

/** A change in an account, published after it is committed (wakes IDLE, push). */
export interface ChangeEvent {
  accountId: number;
  mailboxId: number | null;
  modseq: number;
}

/**
 * Change notifications. In-process for the embedded store; the PostgreSQL backend
 * implements the same interface over LISTEN/NOTIFY.
 */
export interface PubSub {
  publish(event: ChangeEvent): void;
  subscribe(accountId: number, listener: (event: ChangeEvent) => void): () => void;
}

export class LocalPubSub implements PubSub {
  private emitter = new EventEmitter();
  constructor() {
    this.emitter.setMaxListeners(0);
  }
  publish(event: ChangeEvent): void {
    this.emitter.emit(String(event.accountId), event);
  }
  subscribe(accountId: number, listener: (event: ChangeEvent) => void): () => void {
    this.emitter.on(String(accountId), listener);
    return () => this.emitter.off(String(accountId), listener);
  }
}
