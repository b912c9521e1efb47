import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Context } from '../core/context.ts';
import { GroupCommitter } from '../core/group-commit.ts';
import type { DnsResolver } from '../net/dns.ts';
import type { QueueEntry, QueueOutcome } from '../store/data-store.ts';
import type { DsnRecipient } from './dsn.ts';
import { sendDsn, withoutReturnPath } from './bounce.ts';
import { RemoteSession, SessionError } from './remote-session.ts';
import { resolveRoute, type RouteHost } from './routing.ts';
import { enhancedStatus, lifetimeOf, retryDelay, wantsNotice } from './schedule.ts';

/**
 * The delivery agent (Postfix's qmgr + smtp): claims due recipients from the
 * durable queue, groups them by message and destination domain, and delivers them
 * over cached SMTP sessions — at most `queue.destination_concurrency` sessions per
 * domain and `queue.concurrency` in all, several messages per session. Every
 * outcome is committed (fsynced) before the session carries the next message, so
 * a recipient the remote answered 250 for is never sent twice after a crash once
 * the next command went out; DSNs are stored before the failed recipients leave
 * the queue.
 */

/** A claimed entry belongs to this node for this long; renewed while it is being delivered. */
const LEASE_MS = 10 * 60_000;
/** Claimed but unfinished recipients held in memory at most. */
const MAX_IN_FLIGHT = 2000;
const CLAIM_BATCH = 500;

interface Signer {
  sign(message: Buffer): Promise<string>;
}

interface Job {
  domain: string;
  queueId: string;
  entries: QueueEntry[];
}

interface Verdict {
  entry: QueueEntry;
  kind: 'sent' | 'deferred' | 'bounced';
  /** The reply (or our own reason), one line. */
  reply: string;
  status: string;
  relay: string | null;
}

class Destination {
  jobs: Job[] = [];
  sessions = 0;
  waiters: Array<(job: Job | null) => void> = [];
  constructor(readonly domain: string) {}
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}


function headerSection(message: Buffer): string {
  const end = message.indexOf('\r\n\r\n');
  return message.subarray(0, end < 0 ? message.length : end).toString('latin1');
}

function hasEightBit(message: Buffer): boolean {
  // latin1 maps bytes 1:1 to code points; the regex engine scans far faster than a JS loop.
  return /[\x80-\xff]/.test(message.toString('latin1'));
}

const nonAscii = (s: string) => /[^\x00-\x7f]/.test(s);

/** A node's lasting identity: a restarted node takes back the leases it held before. */
export function nodeId(dataDir: string): string {
  const file = path.join(dataDir, 'node-id');
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    const id = crypto.randomUUID();
    fs.writeFileSync(file, `${id}\n`, { mode: 0o644 });
    return id;
  }
}

export class DeliveryAgent {
  private readonly dests = new Map<string, Destination>();
  private readonly inFlight = new Set<number>();
  private readonly live = new Set<RemoteSession>();
  private sessions = 0;
  private stopped = false;
  private pumping = false;
  private again = false;
  private timers: NodeJS.Timeout[] = [];
  private idle: Array<() => void> = [];
  private readonly committer: GroupCommitter<QueueOutcome, null>;

  constructor(
    private readonly ctx: Context,
    private readonly resolver: DnsResolver,
    private readonly signer: Signer | null,
    readonly owner: string,
  ) {
    this.committer = new GroupCommitter<QueueOutcome, null>(async (items) => {
      await ctx.data.finishQueueEntries(items);
      return items.map(() => null);
    });
  }

  private get q() {
    return this.ctx.config.queue;
  }

  async start(): Promise<void> {
    const released = await this.ctx.data.releaseLeases(this.owner);
    if (released) this.ctx.log.info({ recipients: released }, 'queue: took back recipients this node was delivering when it stopped');
    // New mail wakes the agent at once; the poll catches retries that came due,
    // `postern queue flush` from another process, and other nodes' queues.
    this.ctx.ingest.onQueued = () => this.wake();
    const poll = setInterval(() => this.wake(), 1000);
    const heartbeat = setInterval(() => {
      if (this.inFlight.size) void this.ctx.data.renewLeases([...this.inFlight], this.ctx.now() + LEASE_MS).catch((err: unknown) => this.ctx.log.warn({ err }, 'queue: could not renew leases'));
    }, LEASE_MS / 4);
    poll.unref();
    heartbeat.unref();
    this.timers.push(poll, heartbeat);
    this.wake();
  }

  /** Stops claiming, lets sessions finish their message (up to `graceMs`), then closes them. */
  async stop(graceMs = 5000): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.ctx.ingest.onQueued = null;
    for (const d of this.dests.values()) for (const w of d.waiters.splice(0)) w(null);
    if (this.sessions) {
      await Promise.race([new Promise<void>((r) => this.idle.push(r)), new Promise((r) => setTimeout(r, graceMs).unref())]);
    }
    // Whatever is still in flight keeps its lease under this node's id: the next start takes it back.
    for (const s of this.live) s.close();
  }



  wake(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    void this.pump().finally(() => {
      this.pumping = false;
    });
  }

  private async pump(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.claim();
      } catch (err) {
        this.ctx.log.error({ err }, 'queue: could not claim due recipients');
        return;
      }
    } while (this.again && !this.stopped);
  }

  private async claim(): Promise<void> {
    const at = this.ctx.now();
    const bounces = await this.ctx.data.claimAdminBounces(100, LEASE_MS, this.owner, at);
    if (bounces.length) void this.adminBounce(bounces);
    const room = Math.min(CLAIM_BATCH, MAX_IN_FLIGHT - this.inFlight.size);
    if (room <= 0) return;
    const entries = await this.ctx.data.claimQueue(room, LEASE_MS, this.owner, at);
    if (entries.length === room) this.again = true;
    const jobs = new Map<string, Job>();
    for (const e of entries) {
      this.inFlight.add(e.id);
      const domain = domainOf(e.recipient);
      const key = `${e.queueId}\0${domain}`;
      let job = jobs.get(key);
      if (!job || job.entries.length >= this.q.recipients_per_transaction) {
        job = { domain, queueId: e.queueId, entries: [] };
        jobs.set(key, job);
        this.destination(domain).jobs.push(job);
      }
      job.entries.push(e);
    }
    this.dispatchAll();
  }

  private destination(domain: string): Destination {
    let d = this.dests.get(domain);
    if (!d) this.dests.set(domain, (d = new Destination(domain)));
    return d;
  }

  private dispatchAll(): void {
    for (const d of this.dests.values()) {
      while (d.waiters.length && d.jobs.length) d.waiters.shift()!(d.jobs.shift()!);
      while (d.jobs.length && d.sessions < this.q.destination_concurrency && this.sessions < this.q.concurrency && !this.stopped) {
        d.sessions++;
        this.sessions++;
        void this.runSession(d);
      }
      if (!d.jobs.length && !d.sessions) this.dests.delete(d.domain);
    }
  }

  /** Waits up to `queue.connection_idle` for another message to the same destination (connection reuse). */
  private nextJob(d: Destination): Promise<Job | null> | Job | null {
    const job = d.jobs.shift();
    if (job || this.stopped) return job ?? null;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        d.waiters = d.waiters.filter((w) => w !== take);
        resolve(null);
      }, this.q.connection_idle);
      const take = (j: Job | null) => {
        clearTimeout(timer);
        resolve(j);
      };
      d.waiters.push(take);
    });
  }

  private async runSession(d: Destination): Promise<void> {
    let session: RemoteSession | null = null;
    let job: Job | null = d.jobs.shift() ?? null;
    try {
      if (!job) return;
      const route = await resolveRoute(d.domain, this.ctx.config, this.resolver);
      if (route.kind === 'fail') {
        // One answer for the whole destination: every message waiting for it gets it.
        for (const j of [job, ...d.jobs.splice(0)]) {
          await this.finish(j, j.entries.map((entry) => ({ entry, kind: route.permanent ? 'bounced' : 'deferred', reply: `${route.status} ${route.message}`, status: route.status, relay: null })), null);
        }
        job = null;
        return;
      }
      const opened = await this.connect(route.hosts);
      if (opened instanceof SessionError) {
        // RFC 5321 §4.5.4.1: no host took the connection; try again later (never a bounce).
        for (const j of [job, ...d.jobs.splice(0)]) {
          await this.finish(j, j.entries.map((entry) => ({ entry, kind: 'deferred', reply: opened.message, status: opened.code >= 400 ? enhancedStatus(opened.code, opened.message).replace(/^5/, '4') : '4.4.1', relay: null })), null);
        }
        job = null;
        return;
      }
      session = opened;
      this.live.add(session);
      let sent = 0;
      while (job) {
        const current: Job = job;
        job = null;
        try {
          await this.deliver(session, current);
        } catch (err) {
          // Recipients of this job not finished yet go back to the queue as deferred.
          const open = current.entries.filter((e) => this.inFlight.has(e.id));
          this.ctx.log.error({ err, queue: current.queueId }, 'queue: delivery failed unexpectedly');
          if (open.length) await this.finish(current, open.map((entry) => ({ entry, kind: 'deferred', reply: `4.3.0 internal error: ${(err as Error).message}`, status: '4.3.0', relay: session?.label ?? null })), null);
          break;
        }
        sent++;
        if (!session.usable || sent >= this.q.messages_per_connection || this.stopped) break;
        job = await this.nextJob(d);
      }
    } catch (err) {
      this.ctx.log.error({ err, domain: d.domain }, 'queue: delivery failed unexpectedly');
      if (job) {
        const j = job;
        await this.finish(j, j.entries.map((entry) => ({ entry, kind: 'deferred', reply: `4.3.0 internal error: ${(err as Error).message}`, status: '4.3.0', relay: session?.label ?? null })), null).catch(() => undefined);
      }
    } finally {
      if (session) {
        session.close();
        this.live.delete(session);
      }
      d.sessions--;
      this.sessions--;
      if (!this.sessions) for (const r of this.idle.splice(0)) r();
      this.dispatchAll();
    }
  }

  /** RFC 5321 §5.1: the hosts in preference order, the next one when a host does not answer or refuses the session. */
  private async connect(hosts: RouteHost[]): Promise<RemoteSession | SessionError> {
    let last = new SessionError('no host to connect to', 0);
    for (const host of hosts) {
      if (this.stopped) break;
      try {
        return await RemoteSession.open(host, {
          hostname: this.ctx.config.hostname,
          connectTimeout: this.q.connect_timeout,
          commandTimeout: this.q.command_timeout,
          dataTimeout: this.q.data_timeout,
        });
      } catch (err) {
        last = err instanceof SessionError ? err : new SessionError(String(err), 0);
        last = new SessionError(`${host.name}[${host.address}]:${host.port}: ${last.message}`, last.code);
        this.ctx.log.info({ host: `${host.name}[${host.address}]:${host.port}`, reason: last.message }, 'queue: host unusable, trying the next one');
      }
    }
    return last;
  }

  /** The message as it goes out: without our Return-Path, DKIM-signed when we hold a key for its From domain. */
  private async message(job: Job): Promise<Buffer> {
    const stored = withoutReturnPath(await this.ctx.blobs.readAll(job.entries[0]!.blobHash));
    if (!this.signer || !this.ctx.config.dkim.sign) return stored;
    const signature = await this.signer.sign(stored);
    return signature ? Buffer.concat([Buffer.from(signature, 'latin1'), stored]) : stored;
  }

  /**
   * Delivers one job over the session. Each transaction's outcome is committed
   * before the next command goes out on this connection (a message split in
   * several transactions included), so after a crash only a 250 still in flight
   * can lead to a second copy.
   */
  private async deliver(session: RemoteSession, job: Job): Promise<void> {
    const message = await this.message(job);
    const relay = session.label;
    const received = (headerSection(message).match(/^received:/gim) ?? []).length;
    if (received > this.ctx.config.smtp.max_received_headers) {
      await this.finish(job, job.entries.map((entry) => ({ entry, kind: 'bounced', reply: `5.4.6 mail forwarding loop: ${received} Received header fields`, status: '5.4.6', relay: null })), null);
      return;
    }
    const eightBit = hasEightBit(message);
    // RFC 3461: NOTIFY and ORCPT belong to each recipient, nodemailer sets them per
    // transaction — recipients with different parameters go in separate transactions.
    const groups = new Map<string, QueueEntry[]>();
    const refused: Verdict[] = [];
    for (const e of job.entries) {
      // RFC 6531 §3.2: a non-ASCII address cannot go to a server without SMTPUTF8.
      if ((nonAscii(e.sender) || nonAscii(e.recipient)) && !session.supports('SMTPUTF8')) {
        refused.push({ entry: e, kind: 'bounced', reply: `5.6.7 ${relay} does not support SMTPUTF8, needed for a non-ASCII address (RFC 6531)`, status: '5.6.7', relay });
        continue;
      }
      const key = `${e.notify ?? ''}\0${e.orcpt ?? ''}`;
      const g = groups.get(key);
      if (g) g.push(e);
      else groups.set(key, [e]);
    }
    if (refused.length) await this.finish(job, refused, session);
    for (const entries of groups.values()) {
      if (!session.usable) {
        await this.finish(job, entries.map((entry) => ({ entry, kind: 'deferred', reply: `4.4.2 lost connection with ${relay}`, status: '4.4.2', relay })), session);
        continue;
      }
      const first = entries[0]!;
      const result = await session.send(
        {
          from: first.sender,
          to: entries.map((e) => e.recipient),
          size: message.length,
          eightBit,
          smtputf8: first.smtputf8,
          dsn: { ret: first.ret, envid: first.envid, notify: first.notify, orcpt: first.orcpt },
        },
        message,
      );
      const byRcpt = new Map(result.replies.map((r) => [r.recipient, r]));
      const verdicts: Verdict[] = [];
      let anyOk = false;
      for (const entry of entries) {
        const r = byRcpt.get(entry.recipient) ?? { code: 0, reply: 'no reply' };
        const kind = r.code >= 200 && r.code < 300 ? 'sent' : r.code >= 500 ? 'bounced' : 'deferred';
        if (kind === 'sent') anyOk = true;
        verdicts.push({ entry, kind, reply: r.reply, status: enhancedStatus(r.code, r.reply), relay });
      }
      await this.finish(job, verdicts, session);
      if (!anyOk && !result.broken) await session.reset();
    }
  }

  /**
   * Turns verdicts into queue changes: sent and bounced recipients leave, deferred
   * ones wait (or bounce when their lifetime is over). DSNs first, then the queue
   * rows, both durable before the caller goes on.
   */
  private async finish(job: Job, verdicts: Verdict[], session: RemoteSession | null): Promise<void> {
    const now = this.ctx.now();
    const outcomes: QueueOutcome[] = [];
    const notices: DsnRecipient[] = [];
    for (const v0 of verdicts) {
      let v = v0;
      const e = v.entry;
      if (v.kind === 'deferred' && now - e.createdAt >= lifetimeOf(e.sender, this.q)) {
        // RFC 3464 §2.3.4: failed after the queue lifetime, "5.4.7" with the last reply as diagnostic.
        v = { ...v, kind: 'bounced', reply: `${v.reply} (gave up: in the queue longer than queue.${e.sender ? 'lifetime' : 'bounce_lifetime'})`, status: '5.4.7' };
      }
      const log = { queue: e.queueId, from: e.sender, to: e.recipient, relay: v.relay ?? 'none', delay: Math.round((now - e.createdAt) / 100) / 10, attempts: e.attempts, dsn: v.status, reply: v.reply };
      if (v.kind === 'sent') {
        outcomes.push({ id: e.id, kind: 'done' });
        this.ctx.log.info({ ...log, status: 'sent' }, 'delivery');
        // RFC 3461 §5.2.2: a server without DSN cannot report success; we say "relayed".
        if (e.sender && wantsNotice(e.notify, 'SUCCESS') && session && !session.supports('DSN')) {
          notices.push({ recipient: e.recipient, originalRecipient: e.orcpt, action: 'relayed', status: v.status, remoteMta: session.host.name, diagnostic: v.reply, lastAttempt: new Date(now) });
        }
      } else if (v.kind === 'bounced') {
        outcomes.push({ id: e.id, kind: 'done' });
        this.ctx.log.info({ ...log, status: 'bounced' }, 'delivery');
        if (e.sender && wantsNotice(e.notify, 'FAILURE')) {
          notices.push({ recipient: e.recipient, originalRecipient: e.orcpt, action: 'failed', status: v.status, remoteMta: v.relay ? v.relay.replace(/\[.*$/, '') : null, diagnostic: v.reply, lastAttempt: new Date(now) });
        } else if (!e.sender) {
          this.ctx.log.warn({ queue: e.queueId, to: e.recipient }, 'a bounce (null sender) could not be delivered and is discarded');
        }
      } else {
        const warn = this.q.delay_warning > 0 && !e.warned && !!e.sender && now - e.createdAt >= this.q.delay_warning && wantsNotice(e.notify, 'DELAY');
        const nextAttempt = now + retryDelay(e.attempts, this.q);
        outcomes.push({ id: e.id, kind: 'retry', nextAttempt, error: v.reply, warned: warn });
        this.ctx.log.info({ ...log, status: 'deferred', next_attempt: new Date(nextAttempt).toISOString() }, 'delivery');
        if (warn) {
          notices.push({ recipient: e.recipient, originalRecipient: e.orcpt, action: 'delayed', status: v.status, remoteMta: v.relay ? v.relay.replace(/\[.*$/, '') : null, diagnostic: v.reply, lastAttempt: new Date(now), willRetryUntil: new Date(e.createdAt + lifetimeOf(e.sender, this.q)) });
        }
      }
    }
    if (notices.length) {
      const first = job.entries[0]!;
      try {
        await sendDsn(this.ctx, {
          queueId: job.queueId,
          to: first.sender,
          arrival: new Date(first.createdAt),
          now: new Date(now),
          envid: first.envid,
          recipients: notices,
          original: withoutReturnPath(await this.ctx.blobs.readAll(first.blobHash)),
          ret: first.ret === 'FULL' ? 'FULL' : 'HDRS',
        });
      } catch (err) {
        // The notice could not be stored: keep the recipients so it is tried again, rather than lose it.
        this.ctx.log.error({ err, queue: job.queueId }, 'queue: could not store a delivery status notification; retrying in a minute');
        const noticed = new Set(notices.map((n) => n.recipient));
        for (let i = 0; i < outcomes.length; i++) {
          const o = outcomes[i]!;
          const entry = verdicts[i]!.entry;
          if (noticed.has(entry.recipient)) outcomes[i] = { id: o.id, kind: 'retry', nextAttempt: now + 60_000, error: 'DSN could not be stored' };
        }
      }
    }
    await Promise.all(outcomes.map((o) => this.committer.submit(o)));
    for (const v of verdicts) this.inFlight.delete(v.entry.id);
    if (this.inFlight.size < MAX_IN_FLIGHT / 2) this.wake();
  }

  /** `postern queue bounce ID`: the recipients fail at once, the sender gets the DSN. */
  private async adminBounce(entries: QueueEntry[]): Promise<void> {
    const jobs = new Map<string, Job>();
    for (const e of entries) {
      this.inFlight.add(e.id);
      const job = jobs.get(e.queueId) ?? { domain: domainOf(e.recipient), queueId: e.queueId, entries: [] };
      job.entries.push(e);
      jobs.set(e.queueId, job);
    }
    for (const job of jobs.values()) {
      try {
        await this.finish(job, job.entries.map((entry) => ({ entry, kind: 'bounced', reply: `5.0.0 message returned by the administrator (postern queue bounce)${entry.lastError ? `; last error: ${entry.lastError}` : ''}`, status: '5.0.0', relay: null })), null);
      } catch (err) {
        this.ctx.log.error({ err, queue: job.queueId }, 'queue: could not bounce');
      }
    }
  }
}
