import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';

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

/**
 * Spawns a daemon in the foreground and waits until `ready()` says it answers (polling every
 * 250 ms, up to `withinMs`); throws with its output when it exits or takes too long.
 */
export async function startDaemon(name: string, bin: string, args: string[], ready: () => Promise<boolean>, withinMs = 60_000): Promise<{ child: ChildProcess; output: () => string }> {
  let log = '';
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d) => (log += d.toString()));
  child.stderr!.on('data', (d) => (log += d.toString()));
  const deadline = Date.now() + withinMs;
  while (!(await ready())) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}):\n${log}`);
    if (Date.now() > deadline) {
      await stopDaemon(child, 1000);
      throw new Error(`${name} did not start within ${withinMs / 1000} s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { child, output: () => log };
}
