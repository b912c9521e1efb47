import net from 'node:net';
import type { ChildProcess } from 'node:child_process';

/**
 * For tests that start a third-party daemon (slapd, spamd, rspamd) as a child process: a free
 * loopback port to give it, and a clean stop.
 */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process exited (at once if it had). */
export async function stopDaemon(child: ChildProcess | null, graceMs = 10_000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
