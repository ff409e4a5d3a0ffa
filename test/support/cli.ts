import type { ChildProcess } from 'node:child_process';
import { runWindfall, startWindfall, waitFor } from '../../bench/soak/fault-kit.js';
import { killTrackedProcesses } from '../../bench/soak/tracked-processes.js';

export { WINDFALL_BIN } from '../../bench/soak/fault-kit.js';

/** The outcome of a finished CLI run. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `windfall ...args` to completion, with `input` (if any) on its standard input. */
export function runCli(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  input?: string,
  timeoutMs = 60_000,
): Promise<CliResult> {
  return runWindfall(args, env, timeoutMs, input);
}

/** Runs `windfall ...args --json` and parses its stdout (null when empty). */
export async function runCliJson(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; json: any; stderr: string }> {
  const result = await runCli([...args, '--json'], env);
  return {
    code: result.code ?? -1,
    json: result.stdout.trim() ? JSON.parse(result.stdout) : null,
    stderr: result.stderr,
  };
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
 * Kills background `windfall` processes and the fault kit's servers (redis-server, sentinels, pgbouncer, postgres)
 * still running and returns what they were. The test environment calls it after each file and fails the file when
 * a test left one running (a leaked worker would steal later jobs; a leaked server holds a port and memory).
 */
export async function stopStrayProcesses(): Promise<string[]> {
  return [...(await stopStrayWindfalls()), ...(await killTrackedProcesses())];
}

async function stopStrayWindfalls(): Promise<string[]> {
  const strays = [...live.entries()];
  for (const [child] of strays) child.kill('SIGKILL');
  await Promise.all(
    strays.map(
      ([child]) =>
        new Promise((resolve) =>
          child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.once('exit', resolve),
        ),
    ),
  );
  return strays.map(([, command]) => command);
}

/** Starts `windfall ...args` in the background (killed by {@link stopStrayProcesses} if a test leaves it running). */
export function startCli(args: readonly string[], env: NodeJS.ProcessEnv): CliProcess {
  const started = startWindfall(args, env);
  live.set(started.child, `windfall ${args.join(' ')}`);
  started.child.on('exit', () => live.delete(started.child));
  return started;
}

/** Waits until `check` is true, polling every 100 ms; fails with `what` after `timeoutMs`. */
export function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
  return waitFor(check, what, timeoutMs, 100);
}
