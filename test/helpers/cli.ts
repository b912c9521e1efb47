import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const POSTERN = path.join(ROOT, 'bin/postern.js');
export const SENDMAIL = path.join(ROOT, 'bin/postern-sendmail.js');

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (async, so an in-process server keeps serving). */
export function run(cmd: string, args: string[], opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

export function postern(args: string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
  return run(process.execPath, [POSTERN, ...args], opts);
}

/** Whether a Debian tool is installed; tests that need it skip with this reason otherwise. */
export function missing(tool: string): string | false {
  // In CI every peer is installed by .ci/run: never skip there, fail loudly instead.
  if (process.env.CI) return false;
  const r = spawnSync('sh', ['-c', `command -v ${tool}`]);
  return r.status === 0 ? false : `${tool} is not installed (apt-get install ${tool}); CI installs it`;
}

export function writeConfig(dir: string, body: string): string {
  const file = path.join(dir, 'postern.toml');
  fs.writeFileSync(file, body);
  return file;
}
