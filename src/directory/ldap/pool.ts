import net from 'node:net';
import type tls from 'node:tls';
import { Client, InvalidCredentialsError } from 'ldapts';

export interface PoolOptions {
  url: string;
  starttls: boolean;
  tlsOptions: tls.ConnectionOptions;
  /** Per operation (search, bind, compare). */
  timeout: number;
  connectTimeout: number;
  bindDn: string | null;
  bindPassword: string | null;
  /** Search connections; as many more for password binds. */
  size: number;
}

/**
 * LDAP connections for one process, opened on first use and re-opened by themselves:
 *
 * - search connections, bound as bind_dn, shared by concurrent searches (LDAP
 *   multiplexes operations by message id on one connection);
 * - password-check connections (auth = "bind"), one bind at a time each (RFC 4511
 *   §4.2.1: no other operation may be outstanding during a bind), handed out to
 *   waiting logins as they come free.
 *
 * A connection the server closed, or one that timed out (ldapts then destroys its
 * socket), is replaced at the next operation: ldapts re-connects and replays the
 * service bind (autoRebind). With StartTLS a connection is never re-opened by ldapts
 * (that would send the bind password in the clear before the upgrade); it is replaced
 * by a new one here instead. ldapts does not notice when the server closes a
 * connection it upgraded (its close handler stays on the plain socket, which is no
 * longer "the" socket): the plain socket is watched here, so a StartTLS connection
 * the server closed (a restart) is replaced before use instead of timing out.
 */
export class LdapPool {
  private readonly search: Array<Promise<Client> | null>;
  private turn = 0;
  private readonly idleBinders: Client[] = [];
  private binders = 0;
  private readonly waiting: Array<(c: Client | null) => void> = [];
  private closed = false;
  /** StartTLS only: each client's plain TCP socket (under the TLS layer), to see when the server closed it. */
  private readonly plainSockets = new WeakMap<Client, { socket: net.Socket | null }>();

  constructor(private readonly opts: PoolOptions) {
    this.search = new Array<Promise<Client> | null>(opts.size).fill(null);
  }

  private client(serviceBind: boolean): Client {
    let opened = false;
    const plain: { socket: net.Socket | null } = { socket: null };
    const client = new Client({
      url: this.opts.url,
      timeout: this.opts.timeout,
      connectTimeout: this.opts.connectTimeout,
      // ldapts speaks TLS from the first byte whenever tlsOptions are given: only for ldaps:// (StartTLS gets them in startTLS()).
      ...(/^ldaps:/i.test(this.opts.url) ? { tlsOptions: this.opts.tlsOptions } : {}),
      strictDN: false,
      autoRebind: serviceBind && !this.opts.starttls,
      // StartTLS connections are used once: a transparent re-connect would skip the upgrade.
      ...(this.opts.starttls
        ? {
            createConnection: ((port: number, host: string) => {
              if (!opened) {
                opened = true;
                plain.socket = net.connect(port, host);
                return plain.socket;
              }
              const s = new net.Socket();
              process.nextTick(() => s.destroy(new Error('LDAP connection lost; not re-opened without StartTLS')));
              return s;
            }) as typeof net.connect,
          }
        : {}),
    });
    if (this.opts.starttls) this.plainSockets.set(client, plain);
    return client;
  }

  private async open(serviceBind: boolean): Promise<Client> {
    if (this.closed) throw new Error('the LDAP directory is closed');
    const c = this.client(serviceBind);
    try {
      // A copy: ldapts stores the plain socket in the options it is given.
      if (this.opts.starttls) await c.startTLS({ ...this.opts.tlsOptions });
      if (serviceBind && this.opts.bindDn) await c.bind(this.opts.bindDn, this.opts.bindPassword ?? '');
      return c;
    } catch (err) {
      drop(c);
      throw err;
    }
  }

  /** Whether a connection can no longer be used as it is (StartTLS lost, or never connected). */
  private stale(c: Client): boolean {
    if (!this.opts.starttls) return false;
    const plain = this.plainSockets.get(c)?.socket;
    return !c.isConnected || !plain || plain.destroyed || plain.readyState !== 'open';
  }

  /** Runs one operation on a search connection (round robin). */
  async run<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    const i = this.turn++ % this.opts.size;
    let p = this.search[i];
    if (p) {
      const c = await p.catch(() => null);
      if (!c || this.stale(c)) {
        if (this.search[i] === p) this.search[i] = null;
        if (c) drop(c);
        p = null;
      }
    }
    if (!p) {
      const opening = this.open(true);
      this.search[i] = opening;
      opening.catch(() => {
        if (this.search[i] === opening) this.search[i] = null;
      });
      p = opening;
    }
    return fn(await p);
  }

  /**
   * Checks a password by binding as `dn`: true when the server accepts it, false on
   * invalidCredentials (49). Anything else (unreachable, timeout, other result codes)
   * is thrown: it says nothing about the password.
   */
  async bindAs(dn: string, password: string): Promise<boolean> {
    // RFC 4513 §5.1.2: a simple bind with an empty password is an unauthenticated bind that succeeds.
    if (!password) return false;
    const c = await this.acquireBinder();
    let reusable = true;
    try {
      await c.bind(dn, password);
      return true;
    } catch (err) {
      if (err instanceof InvalidCredentialsError) return false;
      reusable = c.isConnected;
      throw err;
    } finally {
      this.releaseBinder(c, reusable);
    }
  }

  private async acquireBinder(): Promise<Client> {
    for (;;) {
      const idle = this.idleBinders.pop();
      if (idle) {
        if (!this.stale(idle)) return idle;
        drop(idle);
        this.binders--;
        continue;
      }
      if (this.binders < this.opts.size) {
        this.binders++;
        try {
          return await this.open(false);
        } catch (err) {
          this.binders--;
          this.wakeOne();
          throw err;
        }
      }
      const c = await new Promise<Client | null>((r) => this.waiting.push(r));
      if (c) return c;
    }
  }

  private releaseBinder(c: Client, reusable: boolean): void {
    if (!reusable || this.closed) {
      drop(c);
      this.binders--;
      this.wakeOne();
      return;
    }
    const w = this.waiting.shift();
    if (w) w(c);
    else this.idleBinders.push(c);
  }

  /** A waiter retries (opens a connection) after one was dropped. */
  private wakeOne(): void {
    this.waiting.shift()?.(null);
  }

  async close(): Promise<void> {
    this.closed = true;
    const all: Client[] = [...this.idleBinders.splice(0)];
    for (const p of this.search.splice(0)) {
      const c = p ? await p.catch(() => null) : null;
      if (c) all.push(c);
    }
    for (const w of this.waiting.splice(0)) w(null);
    await Promise.all(all.map((c) => c.unbind().catch(() => undefined)));
  }
}

function drop(c: Client): void {
  c.unbind().catch(() => undefined);
}
