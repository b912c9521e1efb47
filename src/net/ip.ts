import net from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * The unit a client is judged by for bans and rate limits: an IPv4 address, or an
 * IPv6 /64 (one customer site or host usually holds a whole /64, so banning single
 * IPv6 addresses would be trivially evaded). IPv4-mapped IPv6 ("::ffff:1.2.3.4") is
 * the IPv4 address. Anything that is not an IP (a unix socket) is returned as is.
 */
export function clientKey(address: string): string {
  if (!net.isIP(address)) return address;
  const ip = ipaddr.process(address);
  if (ip.kind() === 'ipv4') return ip.toString();
  const parts = (ip as ipaddr.IPv6).parts.slice(0, 4);
  return `${ipaddr.fromByteArray([...parts.flatMap((p) => [p >> 8, p & 0xff]), ...new Array<number>(8).fill(0)]).toString()}/64`;
}

/** Whether an address is loopback (127.0.0.0/8, ::1, or IPv4-mapped loopback). */
export function isLoopback(address: string | undefined): boolean {
  if (!address || !net.isIP(address)) return false;
  return ipaddr.process(address).range() === 'loopback';
}
