import net from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * HAProxy PROXY protocol, versions 1 (text) and 2 (binary), receiving side.
 * Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt (not an RFC).
 *
 * A TCP load balancer in front of the server opens its own connection to us, so the
 * socket's peer is the balancer. It prepends one header naming the real client; we
 * read and strip it before the SMTP session starts. The header is not authenticated
 * at all, which is why it is only accepted from configured addresses.
 */

export interface ProxyEndpoint {
  address: string;
  port: number;
}

export interface ProxyHeader {
  version: 1 | 2;
  /**
   * "proxy": relayed for a client, `source`/`destination` name it unless the family is
   * unknown. "local": v2 LOCAL, the balancer's own connection (health checks).
   */
  command: 'proxy' | 'local';
  /** tcp4/tcp6 carry addresses; "unknown" (v1 UNKNOWN, v2 UNSPEC or AF_UNIX) does not. */
  family: 'tcp4' | 'tcp6' | 'unknown';
  /** The real client, or null when the connection's own endpoints apply (LOCAL, UNKNOWN). */
  source: ProxyEndpoint | null;
  destination: ProxyEndpoint | null;
}

export type ProxyParseResult =
  | { state: 'incomplete' }
  | { state: 'invalid'; reason: string }
  /** `length`: bytes the header occupies; whatever follows belongs to the application protocol. */
  | { state: 'complete'; header: ProxyHeader; length: number };

/** v1: the longest possible line, "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n" (spec §2.1). */
export const V1_MAX_LENGTH = 107;
/** v2: the fixed part (signature, version/command, family, length). */
export const V2_FIXED_LENGTH = 16;
/**
 * v2: our cap on the variable part (addresses + TLVs). The format allows 64 KiB; the
 * addresses need at most 216 bytes and we ignore TLVs, so 1 KiB leaves room for the
 * usual TLVs (ALPN, authority, unique id, SSL) without letting a peer make us buffer much.
 */
export const V2_MAX_PAYLOAD = 1024;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** Whether the first `buf.length` bytes (possibly fewer than `sig`) agree with `sig`. */
function startsLike(buf: Buffer, sig: Buffer): boolean {
  const n = Math.min(buf.length, sig.length);
  return buf.compare(sig, 0, n, 0, n) === 0;
}

/**
 * Parses a PROXY header (v1 or v2, told apart by the first bytes) at the start of `buf`.
 * Incremental: call again with more bytes while the result is "incomplete". Bounded: a
 * result is "incomplete" only while `buf` is shorter than the largest header we accept
 * (107 bytes for v1, 16 + maxV2Payload for v2), so a reader never needs to keep more.
 */
export function parseProxyHeader(buf: Buffer, opts: { maxV2Payload?: number } = {}): ProxyParseResult {
  if (buf.length === 0) return { state: 'incomplete' };
  if (startsLike(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? { state: 'incomplete' } : parseV1(buf);
  if (startsLike(buf, V2_SIGNATURE)) return buf.length < V2_SIGNATURE.length ? { state: 'incomplete' } : parseV2(buf, opts.maxV2Payload ?? V2_MAX_PAYLOAD);
  return { state: 'invalid', reason: 'not a PROXY protocol header' };
}

const PORT = /^\d{1,5}$/;

function parseV1(buf: Buffer): ProxyParseResult {
  const window = buf.subarray(0, V1_MAX_LENGTH);
  const lf = window.indexOf(0x0a);
  if (lf < 0) {
    return buf.length >= V1_MAX_LENGTH ? { state: 'invalid', reason: `v1 header longer than ${V1_MAX_LENGTH} bytes` } : { state: 'incomplete' };
  }
  if (lf === 0 || window[lf - 1] !== 0x0d) return { state: 'invalid', reason: 'v1 header does not end with CRLF' };
  const line = window.toString('latin1', 0, lf - 1);
  // Only printable ASCII: the address ends up in logs and Received headers.
  if (!/^[\x20-\x7e]*$/.test(line)) return { state: 'invalid', reason: 'v1 header has control or non-ASCII characters' };
  const length = lf + 1;
  const parts = line.split(' ');
  const proto = parts[1];
  // Spec §2.1: with UNKNOWN the rest of the line is to be ignored; the real endpoints apply.
  if (proto === 'UNKNOWN') return { state: 'complete', length, header: { version: 1, command: 'proxy', family: 'unknown', source: null, destination: null } };
  if (proto !== 'TCP4' && proto !== 'TCP6') return { state: 'invalid', reason: `v1 header has an unknown protocol ${JSON.stringify(proto ?? '')}` };
  if (parts.length !== 6) return { state: 'invalid', reason: 'v1 header needs exactly: PROXY proto src dst sport dport' };
  const [, , src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const want = proto === 'TCP4' ? 4 : 6;
  if (net.isIP(src) !== want || net.isIP(dst) !== want || src.includes('%') || dst.includes('%')) {
    return { state: 'invalid', reason: `v1 header has an address that is not ${proto === 'TCP4' ? 'IPv4' : 'IPv6'}` };
  }
  if (!PORT.test(sport) || !PORT.test(dport) || Number(sport) > 65535 || Number(dport) > 65535) return { state: 'invalid', reason: 'v1 header has an invalid port' };
  return {
    state: 'complete',
    length,
    header: {
      version: 1,
      command: 'proxy',
      family: proto === 'TCP4' ? 'tcp4' : 'tcp6',
      source: { address: canonical(src), port: Number(sport) },
      destination: { address: canonical(dst), port: Number(dport) },
    },
  };
}

function parseV2(buf: Buffer, maxPayload: number): ProxyParseResult {
  // Refuse a wrong version as soon as its byte is in, rather than waiting for 16 bytes.
  if (buf.length > 12 && buf[12]! >> 4 !== 2) return { state: 'invalid', reason: `v2 header has version ${buf[12]! >> 4}` };
  if (buf.length < V2_FIXED_LENGTH) return { state: 'incomplete' };
  const command = buf[12]! & 0x0f;
  if (command !== 0 && command !== 1) return { state: 'invalid', reason: `v2 header has an unknown command ${command}` };
  const fam = buf[13]!;
  const payload = buf.readUInt16BE(14);
  if (payload > maxPayload) return { state: 'invalid', reason: `v2 header of ${V2_FIXED_LENGTH + payload} bytes is over our limit of ${V2_FIXED_LENGTH + maxPayload}` };
  const length = V2_FIXED_LENGTH + payload;
  if (buf.length < length) return { state: 'incomplete' };
  const unknown = (command: 'proxy' | 'local'): ProxyParseResult => ({ state: 'complete', length, header: { version: 2, command, family: 'unknown', source: null, destination: null } });
  // Spec §2.2: with LOCAL the receiver must ignore the address information.
  if (command === 0) return unknown('local');
  const body = buf.subarray(V2_FIXED_LENGTH, length);
  const inet = (family: 'tcp4' | 'tcp6', n: number): ProxyParseResult => {
    if (payload < 2 * n + 4) return { state: 'invalid', reason: `v2 header too short for ${family === 'tcp4' ? 'IPv4' : 'IPv6'} addresses` };
    return {
      state: 'complete',
      length,
      header: {
        version: 2,
        command: 'proxy',
        family,
        source: { address: fromBytes(body.subarray(0, n)), port: body.readUInt16BE(2 * n) },
        destination: { address: fromBytes(body.subarray(n, 2 * n)), port: body.readUInt16BE(2 * n + 2) },
      },
    };
  };
  switch (fam) {
    // AF_INET / AF_INET6, STREAM: two addresses (4 or 16 bytes), then two 2-byte ports; TLVs may follow (ignored).
    case 0x11:
      return inet('tcp4', 4);
    case 0x21:
      return inet('tcp6', 16);
    // UNSPEC, or a client on a unix socket of the balancer: the spec lets the receiver use
    // the real endpoints, which keeps such relays working (they simply count as the balancer).
    case 0x00:
    case 0x31:
      return unknown('proxy');
    default:
      // Datagram transports cannot carry an SMTP session, and other values are undefined
      // in v2, which the spec says receivers must reject.
      return { state: 'invalid', reason: `v2 header has an unsupported address family/transport 0x${fam.toString(16).padStart(2, '0')}` };
  }
}

/** An address as text the way every other part of the server prints it (RFC 5952 for IPv6). */
function canonical(address: string): string {
  return ipaddr.process(address).toString();
}

function fromBytes(bytes: Buffer): string {
  // process(): an IPv4-mapped IPv6 source (::ffff:a.b.c.d) is the IPv4 client it stands for.
  return canonical(ipaddr.fromByteArray([...bytes]).toString());
}

/**
 * Why a connection from a trusted proxy was closed before its session started. `kind`
 * lets the caller log a balancer's bare TCP health check ("closed") more quietly than a
 * misconfigured balancer ("invalid", "timeout").
 */
export class ProxyHeaderError extends Error {
  constructor(
    readonly kind: 'invalid' | 'timeout' | 'closed',
    message: string,
  ) {
    super(message);
  }
}

/** The spec (§2) asks receivers to give up on a header that does not arrive quickly. */
export const PROXY_HEADER_TIMEOUT_MS = 5000;

/**
 * Reads the PROXY header that must start `socket`, strips it, and leaves any bytes after
 * it in the socket for the next reader (socket.unshift). Never holds more than one
 * header's worth of bytes (see parseProxyHeader). On a malformed header, a header that
 * does not arrive within `timeoutMs`, or a connection that ends first, the socket is
 * destroyed without a reply (there is no protocol to reply in yet) and the promise
 * rejects with a ProxyHeaderError.
 */
export function readProxyHeader(socket: net.Socket, opts: { timeoutMs?: number; maxV2Payload?: number } = {}): Promise<ProxyHeader> {
  const timeoutMs = opts.timeoutMs ?? PROXY_HEADER_TIMEOUT_MS;
  return new Promise<ProxyHeader>((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    let settled = false;

    const finish = (err: ProxyHeaderError | null, header?: ProxyHeader): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onClose);
      socket.off('error', onError);
      if (err) {
        // Keep an error listener: a late ECONNRESET on the dying socket must not become an uncaught exception.
        socket.on('error', () => {});
        socket.destroy();
        reject(err);
      } else resolve(header!);
    };

    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (!settled && (chunk = socket.read() as Buffer | null) !== null) {
        buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
        const r = parseProxyHeader(buffered, opts);
        if (r.state === 'incomplete') continue;
        if (r.state === 'invalid') return finish(new ProxyHeaderError('invalid', r.reason));
        // Bytes after the header (a client that talks early) belong to the SMTP session.
        if (buffered.length > r.length) socket.unshift(buffered.subarray(r.length));
        return finish(null, r.header);
      }
    };
    const onEnd = () => finish(new ProxyHeaderError('closed', 'connection ended before the PROXY header was complete'));
    const onClose = () => finish(new ProxyHeaderError('closed', 'connection closed before the PROXY header was complete'));
    const onError = (e: Error) => finish(new ProxyHeaderError('closed', `connection failed before the PROXY header was complete: ${e.message}`));
    const timer = setTimeout(() => finish(new ProxyHeaderError('timeout', `no complete PROXY header within ${timeoutMs} ms`)), timeoutMs);
    // Not unref'd: the pending socket keeps the process alive anyway, and close() destroys it.

    socket.on('readable', onReadable);
    socket.on('end', onEnd);
    socket.on('close', onClose);
    socket.on('error', onError);
  });
}

/** Whether `value` is an IP address or an "address/prefix" CIDR (for config validation). */
export function isAddressOrCidr(value: string): boolean {
  const [addr, bits, extra] = value.split('/');
  if (extra !== undefined || !addr || addr.includes('%')) return false;
  const kind = net.isIP(addr);
  if (!kind) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (kind === 4 ? 32 : 128);
}

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/**
 * The addresses allowed to send PROXY headers (config listen.proxy_protocol): single
 * addresses and CIDRs, IPv4 and IPv6. An IPv4 peer seen as ::ffff:a.b.c.d on a
 * dual-stack listener matches its IPv4 entry.
 */
export class TrustedProxies {
  private readonly ranges: Range[];

  constructor(entries: readonly string[]) {
    this.ranges = entries.map((entry) => {
      if (!isAddressOrCidr(entry)) throw new Error(`not an IP address or CIDR: ${JSON.stringify(entry)}`);
      const [ip, bits] = entry.includes('/') ? ipaddr.parseCIDR(entry) : [ipaddr.parse(entry), -1];
      const prefix = bits < 0 ? (ip.kind() === 'ipv4' ? 32 : 128) : bits;
      // "::ffff:10.0.0.0/104" is the IPv4 range 10.0.0.0/8: compare like with like.
      if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress() && prefix >= 96) return [(ip as ipaddr.IPv6).toIPv4Address(), prefix - 96];
      return [ip, prefix];
    });
  }

  get size(): number {
    return this.ranges.length;
  }

  matches(address: string | undefined): boolean {
    if (!address || !this.ranges.length || !net.isIP(address)) return false;
    const ip = ipaddr.process(address);
    return this.ranges.some(([range, bits]) => range.kind() === ip.kind() && ip.match(range, bits));
  }
}
