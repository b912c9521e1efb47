import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

/**
 * smtp-server always waits 100 ms before the 220 greeting to catch clients that
 * talk first (it answers them "421 You talk too soon"). That wait is a fixed
 * 100 ms on every connection — for LMTP, local submission and the benchmark's
 * connection-per-message load it capped throughput at ~10 messages/s per session.
 * Here the wait comes from the server's `greetDelay` option (config
 * `smtp.greet_delay`, like Postfix's postscreen_greet_wait; 0 by default, as in
 * Postfix's smtpd). Applied once, idempotently; the rest of init is smtp-server's.
 * The server's `onEarlyTalker(address, command)` option hears of every client that talked first.
 */
const MARK = Symbol.for('postern.greetDelay');

interface Connection {
  _server: { options: { maxClients?: number; greetDelay?: number; onEarlyTalker?: (address: string, command: string) => void }; connections: Set<unknown>; _closeTimeout?: unknown };
  name: string;
  remoteAddress: string;
  _ready: boolean;
  _upgrading: boolean;
  _onCommand(command: Buffer, callback: () => void): void;
  _setListeners(cb: () => void): void;
  connectionReady(): void;
  send(code: number, data: string, context?: unknown): void;
}

export function useConfigurableGreetDelay(): void {
  const proto = (SMTPConnection as unknown as { prototype: Connection & { init(): void; [MARK]?: boolean } }).prototype;
  if (proto[MARK]) return;
  // A command before the greeting: smtp-server answers it "421 You talk too soon" and closes;
  // the server's onEarlyTalker option logs it first (pregreet detection, issue #9).
  const onCommand = proto._onCommand;
  proto._onCommand = function (this: Connection, command: Buffer, callback: () => void) {
    if (!this._ready && !this._upgrading && !this._server._closeTimeout) this._server.options.onEarlyTalker?.(this.remoteAddress, command.toString('latin1'));
    return onCommand.call(this, command, callback);
  };
  proto.init = function (this: Connection) {
    this._setListeners(() => {
      const opts = this._server.options;
      if (opts.maxClients && this._server.connections.size > opts.maxClients) {
        return this.send(421, this.name + ' Too many connected clients, try again in a moment', false);
      }
      const delay = opts.greetDelay ?? 0;
      if (delay <= 0) setImmediate(() => this.connectionReady());
      else setTimeout(() => this.connectionReady(), delay).unref();
    });
  };
  proto[MARK] = true;
}
