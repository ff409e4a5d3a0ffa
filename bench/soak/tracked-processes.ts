/**
 * Server processes the fault kit starts (redis-server, sentinels, pgbouncer, postgres), remembered until they exit,
 * so that a test file that forgets to stop one is told (test/support/cli.ts `stopStrayProcesses`) and a runner that
 * dies takes them with it.
 */
import type { ChildProcess } from 'node:child_process';

const live = new Map<ChildProcess, string>();

// a runner that exits must not leave servers listening behind it
process.on('exit', () => {
  for (const child of live.keys()) child.kill('SIGKILL');
});

/** Remembers `child` (described by `what`, e.g. `pgbouncer on 127.0.0.1:23456`) until it exits. */
export function trackProcess(child: ChildProcess, what: string): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  live.set(child, what);
  child.once('exit', () => live.delete(child));
}

/** Descriptions of the tracked processes still running. */
export function trackedProcesses(): string[] {
  return [...live.values()];
}

/** SIGKILLs every tracked process still running, waits for their exits, and returns their descriptions. */
export async function killTrackedProcesses(): Promise<string[]> {
  const strays = [...live.entries()];
  await Promise.all(
    strays.map(
      ([child]) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve(null);
          child.once('exit', resolve);
          child.kill('SIGKILL');
        }),
    ),
  );
  return strays.map(([, what]) => what);
}
