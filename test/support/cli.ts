import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The `windfall` bin of this checkout (runs the built dist/). */
export const WINDFALL_BIN = fileURLToPath(new URL('../../bin/windfall.js', import.meta.url));

/** The outcome of a finished CLI run. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `windfall ...args` to completion. */
export function runCli(args: readonly string[], env: NodeJS.ProcessEnv, input?: string, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WINDFALL_BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`windfall ${args.join(' ')} did not finish in ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

/** A long-running `windfall` process (a worker), with its output collected. */
export interface CliProcess {
  readonly child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  readonly exited: Promise<number | string>;
}

/** Background processes started by this test file and not yet exited. */
const live = new Map<ChildProcess, string>();
// a test runner that dies must not leave workers consuming queues behind it
process.on('exit', () => {
  for (const child of live.keys()) child.kill('SIGKILL');
});

/**
 * Kills background `windfall` processes still running and returns their command lines. The test environment calls
 * it after each file and fails the file when a test left one running (a leaked worker would steal later jobs).
 */
export async function stopStrayProcesses(): Promise<string[]> {
  const strays = [...live.entries()];
  for (const [child] of strays) child.kill('SIGKILL');
  await Promise.all(strays.map(([child]) => new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('exit', resolve)))));
  return strays.map(([, command]) => command);
}

/** Starts `windfall ...args` in the background. */
export function startCli(args: readonly string[], env: NodeJS.ProcessEnv): CliProcess {
  const child = spawn(process.execPath, [WINDFALL_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.set(child, `windfall ${args.join(' ')}`);
  child.on('exit', () => live.delete(child));
  let output = '';
  child.stdout!.on('data', (data: Buffer) => (output += data.toString()));
  child.stderr!.on('data', (data: Buffer) => (output += data.toString()));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, output: () => output, exited };
}

/** Waits until `check` is true, polling; fails with `what` after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
}
