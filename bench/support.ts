import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { ServerProcesses } from './cpu-accounting.js';
import { postmasterOf, processCpuSeconds, redisProcessOf } from './cpu-accounting.js';
import { WINDFALL_BIN } from './soak/fault-kit.js';

export { WINDFALL_BIN };

/** Where the bench finds its servers: the same ones the tests and the demo use. */
export interface Servers {
  /** A PostgreSQL URL of the server; the database part is replaced per run. */
  readonly databaseUrl: string;
  readonly redisUrl: string;
}

export function serversFromEnv(env: NodeJS.ProcessEnv = process.env): Servers {
  return {
    databaseUrl: env['DATABASE_URL'] || 'postgres://postgres@127.0.0.1:5432/postgres',
    redisUrl: env['REDIS_URL'] || 'redis://127.0.0.1:6379',
  };
}

/** `url` with its database replaced by `name`. */
export function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/** A short random id naming one bench run's databases and Redis prefixes. */
export function runId(): string {
  return randomBytes(4).toString('hex');
}

/** Milliseconds to wait. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** An environment for a child process: ours without WINDFALL_* settings (the bench decides them), plus `extra`. */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env))
    if (!key.startsWith('WINDFALL_') && key !== 'LOG_LEVEL') env[key] = value;
  return { ...env, ...extra };
}

/** A child process with its output collected. */
export interface Child {
  readonly child: ChildProcess;
  readonly pid: number;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code, or the signal name. */
  readonly exited: Promise<number | string>;
}

export function startProcess(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (data: Buffer) => {
    out += data.toString();
  });
  child.stderr.on('data', (data: Buffer) => {
    err += data.toString();
    if (err.length > 4_000_000) err = err.slice(-1_000_000);
  });
  // 'close', not 'exit': by then the output has been read to its end
  const exited = new Promise<number | string>((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  return { child, pid: child.pid, stdout: () => out, stderr: () => err, exited };
}

/** Runs a process to completion; rejects when it exits non-zero. */
export async function runProcess(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ stdout: string; stderr: string }> {
  const proc = startProcess(command, args, env);
  const code = await proc.exited;
  if (code !== 0)
    throw new Error(
      `${command} ${args.join(' ')} exited ${code}\n${proc.stderr().slice(-4000)}\n${proc.stdout().slice(-2000)}`,
    );
  return { stdout: proc.stdout(), stderr: proc.stderr() };
}

/** Runs `windfall …args` (the real CLI) to completion. */
export function runWindfall(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ stdout: string; stderr: string }> {
  return runProcess(process.execPath, [WINDFALL_BIN, ...args], env);
}

/** Polls `check` until it is true; throws `what` after `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs: number,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Memory and CPU of a process, from /proc (Linux). Null fields where /proc is not available. */
export interface ProcessUsage {
  /** Peak resident set size (VmHWM), MB. */
  readonly peakRssMb: number | null;
  /** Current resident set size (VmRSS), MB. */
  readonly rssMb: number | null;
  /** User + system CPU seconds used so far. */
  readonly cpuSeconds: number | null;
}

export function processUsage(pid: number): ProcessUsage {
  let peakRssMb: number | null = null;
  let rssMb: number | null = null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
    const rss = /VmRSS:\s+(\d+) kB/.exec(status);
    if (hwm) peakRssMb = Number(hwm[1]) / 1024;
    if (rss) rssMb = Number(rss[1]) / 1024;
  } catch {
    // not Linux, or the process is gone
  }
  return { peakRssMb, rssMb, cpuSeconds: processCpuSeconds(pid) };
}

/** Opens a pg pool on database `name` of the server. */
export function poolOn(servers: Servers, name: string, max = 4): pg.Pool {
  return new pg.Pool({
    connectionString: withDatabase(servers.databaseUrl, name),
    max,
    application_name: 'windfall-bench',
  });
}

/** Creates and migrates database `name` with the real CLI (`windfall migrate`). */
export async function createBenchDatabase(servers: Servers, name: string): Promise<string> {
  const url = withDatabase(servers.databaseUrl, name);
  await runWindfall(['migrate'], childEnv({ DATABASE_URL: url, REDIS_URL: servers.redisUrl, LOG_LEVEL: 'warn' }));
  return url;
}

/** Drops a bench database (forcefully: the run is over). */
export async function dropBenchDatabase(servers: Servers, name: string): Promise<void> {
  if (!/^windfall_bench_[a-z0-9_]+$/.test(name)) throw new Error(`refusing to drop ${name}: not a bench database`);
  const admin = new pg.Client({ connectionString: withDatabase(servers.databaseUrl, 'postgres') });
  await admin.connect();
  try {
    await admin.query(`drop database if exists "${name}" with (force)`);
  } finally {
    await admin.end();
  }
}

/** Deletes every Redis key under `prefix:` (a bench prefix only). */
export async function deleteRedisPrefix(redisUrl: string, prefix: string): Promise<number> {
  if (!/^wfb-[a-z0-9-]+$/.test(prefix)) throw new Error(`refusing to delete keys of ${prefix}: not a bench prefix`);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 3 });
  let deleted = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 2000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return deleted;
}

/** Databases and prefixes created by this run, removed by {@link Cleanup.run}. */
export class Cleanup {
  private readonly databases = new Set<string>();
  private readonly prefixes = new Set<string>();
  private readonly processes = new Set<Child>();

  constructor(
    private readonly servers: Servers,
    readonly keep: boolean,
  ) {}

  database(name: string): string {
    this.databases.add(name);
    return name;
  }

  prefix(prefix: string): string {
    this.prefixes.add(prefix);
    return prefix;
  }

  process(child: Child): Child {
    this.processes.add(child);
    void child.exited.then(() => this.processes.delete(child));
    return child;
  }

  /** Kills processes still running, then (unless `keep`) drops databases and deletes keys. */
  async run(): Promise<void> {
    for (const child of this.processes) {
      child.child.kill('SIGKILL');
      await child.exited;
    }
    if (this.keep) return;
    for (const name of this.databases)
      await dropBenchDatabase(this.servers, name).catch((error: unknown) =>
        warn(`could not drop ${name}: ${(error as Error).message}`),
      );
    for (const prefix of this.prefixes)
      await deleteRedisPrefix(this.servers.redisUrl, prefix).catch((error: unknown) =>
        warn(`could not delete keys of ${prefix}: ${(error as Error).message}`),
      );
    this.databases.clear();
    this.prefixes.clear();
  }
}

/** Progress notes go to stderr; stdout carries the report (or the `--json` document). */
export function note(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export function warn(message: string): void {
  process.stderr.write(`[bench] warning: ${message}\n`);
}

/** The value at quantile `q` (0..1) of sorted numbers (nearest rank). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index]!;
}

export function median(values: readonly number[]): number {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Rounds for display and JSON. */
export function round(value: number, digits = 0): number {
  if (!Number.isFinite(value)) return value;
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** The machine the figures come from. */
export interface MachineInfo {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGb: number;
  readonly node: string;
  readonly postgres: string;
  readonly redis: string;
  readonly synchronousCommit: string;
  readonly fsync: string;
  readonly sharedBuffers: string;
  readonly loadAverage: readonly number[];
  /** The servers' processes on this machine, for CPU accounting (null PIDs when a server runs elsewhere). */
  readonly processes: ServerProcesses;
}

export async function machineInfo(servers: Servers): Promise<MachineInfo> {
  const client = new pg.Client({ connectionString: withDatabase(servers.databaseUrl, 'postgres') });
  await client.connect();
  let postgres = '?';
  let synchronousCommit = '?';
  let fsync = '?';
  let sharedBuffers = '?';
  let postmaster: number | null = null;
  try {
    // found while this connection's backend is alive: its parent is the postmaster
    postmaster = postmasterOf((await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid);
    postgres = (await client.query<{ server_version: string }>('show server_version')).rows[0]!.server_version;
    synchronousCommit = (await client.query<{ synchronous_commit: string }>('show synchronous_commit')).rows[0]!
      .synchronous_commit;
    fsync = (await client.query<{ fsync: string }>('show fsync')).rows[0]!.fsync;
    sharedBuffers = (await client.query<{ shared_buffers: string }>('show shared_buffers')).rows[0]!.shared_buffers;
  } finally {
    await client.end();
  }
  const redis = new Redis(servers.redisUrl, { maxRetriesPerRequest: 3 });
  let redisVersion = '?';
  let redisPid: number | null = null;
  try {
    const info = await redis.info('server');
    redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
    redisPid = redisProcessOf(info);
  } finally {
    redis.disconnect();
  }
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '?',
    memoryGb: round(totalmem() / 1024 ** 3, 1),
    node: process.version,
    postgres,
    redis: redisVersion,
    synchronousCommit,
    fsync,
    sharedBuffers,
    loadAverage: loadavg().map((value) => round(value, 2)),
    processes: { postmaster, redis: redisPid },
  };
}
