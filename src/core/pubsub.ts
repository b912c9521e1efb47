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
  private relays: Array<(event: ChangeEvent) => void> = [];
  constructor() {
    this.emitter.setMaxListeners(0);
  }
  /** Tells this process's subscribers and every relay (the IMAP worker processes, see src/imap/workers.ts). */
  publish(event: ChangeEvent): void {
    this.deliver(event);
    for (const relay of this.relays) relay(event);
  }
  /** Tells only this process's subscribers: for an event that came in over a relay. */
  deliver(event: ChangeEvent): void {
    this.emitter.emit(String(event.accountId), event);
  }
  /** Also hands every event published here to `relay` (another process of the same server). */
  addRelay(relay: (event: ChangeEvent) => void): () => void {
    this.relays.push(relay);
    return () => {
      this.relays = this.relays.filter((r) => r !== relay);
    };
  }
  subscribe(accountId: number, listener: (event: ChangeEvent) => void): () => void {
    this.emitter.on(String(accountId), listener);
    return () => this.emitter.off(String(accountId), listener);
  }
}
