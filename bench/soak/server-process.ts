/**
 * Running server binaries for the fault kit: in the foreground, as user `postgres` when this runs as root
 * (PostgreSQL and PgBouncer refuse root), their output kept, tracked until they exit ({@link trackProcess}).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trackProcess } from './tracked-processes.js';

/** A user and group id to run as. */
export interface Identity {
  readonly uid: number;
  readonly gid: number;
}

let postgresIdentity: Identity | null | undefined;

/**
 * The `postgres` user's ids when this process runs as root (servers are then started as `postgres`); undefined when
 * it does not (servers run as the current user).
 */
export function serverIdentity(): Identity | undefined {
  if (postgresIdentity === undefined) {
    postgresIdentity = null;
    if (process.getuid?.() === 0) {
      const line = readFileSync('/etc/passwd', 'utf8')
        .split('\n')
        .find((entry) => entry.startsWith('postgres:'));
      if (!line) throw new Error('running as root, and there is no user postgres to run the servers as');
      const [, , uid, gid] = line.split(':');
      postgresIdentity = { uid: Number(uid), gid: Number(gid) };
    }
  }
  return postgresIdentity ?? undefined;
}

/** A new temporary directory (mode 0700) owned by the user the servers run as. */
export function serverTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const identity = serverIdentity();
  if (identity) chownSync(dir, identity.uid, identity.gid);
  return dir;
}

/** Gives `path` to the user the servers run as (a file written by this process). */
export function giveToServer(path: string): void {
  const identity = serverIdentity();
  if (identity) chownSync(path, identity.uid, identity.gid);
}

/** Removes a directory made by {@link serverTempDir}. */
export function removeServerDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A server running in the foreground. */
export interface ServerProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The last 16 kB of its output. */
  log(): string;
  running(): boolean;
  /** Resolves when it exits, with its exit code or signal. */
  readonly exited: Promise<number | string>;
  /** Sends `signal`, waits up to `timeoutMs` for the exit, then SIGKILLs. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>;
}

/** Options of {@link spawnServer} and {@link runServerTool}. */
export interface ServerSpawnOptions {
  /** Says what this is in errors and in the stray-process check, e.g. `pgbouncer on 127.0.0.1:23456`. */
  readonly what: string;
  /** Run as `postgres` when this runs as root. Default true. */
  readonly asServerUser?: boolean;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

function spawnOptions(options: ServerSpawnOptions): Parameters<typeof spawn>[2] {
  const identity = options.asServerUser === false ? undefined : serverIdentity();
  return {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...(options.env ?? process.env), ...(identity ? { HOME: tmpdir(), USER: 'postgres' } : {}) },
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(identity ? { uid: identity.uid, gid: identity.gid } : {}),
  };
}

/** Starts `command args` in the foreground as the server user, tracked until it exits. */
export function spawnServer(command: string, args: readonly string[], options: ServerSpawnOptions): ServerProcess {
  const child = spawn(command, args, spawnOptions(options));
  let output = '';
  const keep = (data: Buffer): void => {
    output = (output + data.toString()).slice(-16_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1));
    child.once('error', (error) => {
      output += `\n${error.message}`;
      resolve(-1);
    });
  });
  trackProcess(child, options.what);
  const running = (): boolean => child.exitCode === null && child.signalCode === null && child.pid !== undefined;
  return {
    child,
    pid: child.pid ?? -1,
    log: () => output,
    running,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000) {
      if (!running()) return exited;
      child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([
        exited.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
      ]);
      clearTimeout(timer);
      if (!done) child.kill('SIGKILL');
      return exited;
    },
  };
}

/** Runs `command args` to completion as the server user; fails naming `what` and its output on a non-zero exit. */
export async function runServerTool(
  command: string,
  args: readonly string[],
  options: ServerSpawnOptions & { timeoutMs?: number },
): Promise<string> {
  const child = spawn(command, args, spawnOptions(options));
  let output = '';
  child.stdout!.on('data', (data: Buffer) => (output += data.toString()));
  child.stderr!.on('data', (data: Buffer) => (output += data.toString()));
  const timeoutMs = options.timeoutMs ?? 60_000;
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${options.what} did not finish within ${timeoutMs} ms: ${output.slice(-4000)}`));
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`${options.what} could not start: ${error.message}`));
    });
    child.once('close', (exitCode) => {
      clearTimeout(timer);
      resolve(exitCode);
    });
  });
  if (code !== 0) throw new Error(`${options.what} failed (exit ${code}): ${output.slice(-4000)}`);
  return output;
}
