import { spawn, type ChildProcess } from 'node:child_process';
import { POSTERN } from './cli.ts';

export interface ChildServer {
  child: ChildProcess;
  endpoints: Record<string, string>;
  output: () => string;
}

/** Starts `postern serve` as a separate process and waits for its "postern ready" banner. */
export function startChildServer(configFile: string, timeoutMs = 20_000): Promise<ChildServer> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [POSTERN, 'serve', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start in time:\n${out}`));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (/postern ready[\s\S]*domains:/.test(out)) {
        clearTimeout(timer);
        const endpoints: Record<string, string> = {};
        for (const m of out.matchAll(/^ {2}(smtp|lmtp|local)\s+(\S+)$/gm)) endpoints[m[1]!] = m[2]!;
        resolve({ child, endpoints, output: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${out}`));
    });
  });
}

export function port(addr: string): number {
  return Number(addr.split(':').pop());
}
