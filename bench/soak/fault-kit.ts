/**
 * Tools to inject faults from outside Windfall, shared by the fault-injection tests and the soak script:
 * throw-away Redis servers (AOF or not) on random loopback ports, worker processes of the `windfall` bin, and
 * PostgreSQL backends terminated for one database only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { trackProcess } from './tracked-processes.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The checkout's root, whether this runs from bench/soak (vitest) or dist/bench/soak (compiled). */
export const REPO_ROOT = here.includes(`${sep}dist${sep}bench${sep}`)
  ? resolve(here, '../../..')
  : resolve(here, '../..');
/** The `windfall` bin of this checkout (it runs the built dist/). */
export const WINDFALL_BIN = join(REPO_ROOT, 'bin', 'windfall.js');

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** True when nothing listens on 127.0.0.1:`port`. */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free random loopback port above 20000 (and, with `span`, the `span − 1` ports after it too). */
export async function randomPort(span = 1): Promise<number> {
  for (let tries = 0; tries < 100; tries += 1) {
    const port = 20_001 + Math.floor(Math.random() * (60_000 - 20_001 - span));
    let free = true;
    for (let offset = 0; offset < span && free; offset += 1) free = await portIsFree(port + offset);
    // cluster bus ports are port + 10000
    if (free) return port;
  }
  throw new Error('no free port found above 20000');
}

/** Options of {@link startRedisServer}. */
export interface RedisServerOptions {
  /** Default: a random free port above 20000. */
  readonly port?: number;
  /** Append-only file with fsync on every write. Default true. */
  readonly aof?: boolean;
  /** Working directory (AOF, cluster config). Default: a new temporary directory, removed by `destroy()`. */
  readonly dir?: string;
  /** More `redis-server` arguments (e.g. `['--cluster-enabled', 'yes']`). */
  readonly extraArgs?: readonly string[];
  /** Require this password (`--requirepass`); redis-cli calls here use it. */
  readonly password?: string;
}

/** A `redis-server` process this code started (never the shared one). */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  readonly aof: boolean;
  /** `redis-cli -p P shutdown` (with AOF the data survives; without it, `shutdown nosave` loses everything). */
  shutdown(): Promise<void>;
  /** Starts the server again on the same port and directory. */
  restart(): Promise<void>;
  /** Shuts down (if running) and removes the directory if it was created here. */
  destroy(): Promise<void>;
  running(): boolean;
  /** Sends `signal` (default SIGKILL: a crash, nothing saved) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

function runCommand(
  command: string,
  args: readonly string[],
  timeoutMs = 10_000,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (data: Buffer) => (output += data.toString()));
    child.stderr.on('data', (data: Buffer) => (output += data.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${timeoutMs} ms: ${output}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Runs `redis-cli -p port …args`. */
export function redisCli(
  port: number,
  args: readonly string[],
  timeoutMs = 30_000,
): Promise<{ code: number | null; output: string }> {
  return runCommand('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], timeoutMs);
}

/** Starts `redis-server` in the foreground (`--daemonize no`) and waits until it answers PING. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await randomPort());
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), `windfall-redis-${port}-`));
  const aof = options.aof ?? true;
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--daemonize',
    'no',
    '--save',
    '',
    '--appendonly',
    aof ? 'yes' : 'no',
    ...(aof ? ['--appendfsync', 'always'] : []),
    '--maxmemory-policy',
    'noeviction',
    '--loglevel',
    'warning',
    ...(options.password !== undefined ? ['--requirepass', options.password] : []),
    ...(options.extraArgs ?? []),
  ];
  const auth = options.password !== undefined ? ['-a', options.password, '--no-auth-warning'] : [];
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let log = '';

  const launch = async (): Promise<void> => {
    const started = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    trackProcess(started, `redis-server on 127.0.0.1:${port}`);
    started.stdout.on('data', (data: Buffer) => (log = (log + data.toString()).slice(-4000)));
    started.stderr.on('data', (data: Buffer) => (log = (log + data.toString()).slice(-4000)));
    exited = new Promise((resolve) => started.once('exit', () => resolve()));
    void exited.then(() => {
      if (child === started) child = undefined;
    });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (!child) throw new Error(`redis-server on port ${port} exited at start: ${log}`);
      const ping = await redisCli(port, [...auth, 'ping'], 5000).catch(() => ({ code: 1, output: '' }));
      if (ping.output.includes('PONG')) return;
      await sleep(50);
    }
    started.kill('SIGKILL');
    throw new Error(`redis-server on port ${port} did not answer within 15 s: ${log}`);
  };

  const shutdown = async (): Promise<void> => {
    if (!child) return;
    await redisCli(port, [...auth, 'shutdown', ...(aof ? [] : ['nosave'])]).catch(() => undefined);
    const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
    if (!done) {
      child?.kill('SIGKILL');
      await exited;
    }
  };

  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    aof,
    shutdown,
    restart: launch,
    running: () => child !== undefined,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!child) return;
      child.kill(signal);
      await exited;
    },
    async destroy() {
      await shutdown();
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A `windfall` process running in the background, its output collected. */
export interface WindfallProcess {
  readonly child: ChildProcess;
  output(): string;
  /** The exit code, or the signal name. */
  readonly exited: Promise<number | string>;
  /** SIGKILL, then waits for the exit. */
  kill9(): Promise<void>;
  /** SIGTERM, then waits for the exit code. */
  stop(): Promise<number | string>;
}

/** Starts `windfall …args` (e.g. `['worker']`) with exactly `env`. */
export function startWindfall(args: readonly string[], env: NodeJS.ProcessEnv): WindfallProcess {
  const child = spawn(process.execPath, [WINDFALL_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (data: Buffer): void => {
    output += data.toString();
    if (output.length > 2_000_000) output = output.slice(-1_000_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<number | string>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  return {
    child,
    output: () => output,
    exited,
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Runs `windfall …args` to completion, with `input` (if any) on its standard input. */
export function runWindfall(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
  input?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WINDFALL_BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `windfall ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`,
        ),
      );
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

/** The application name of the fault tests' own connections (spared by {@link terminateBackends}). */
const FAULT_TEST_APPLICATION = 'windfall-fault-test';

/**
 * Terminates every backend of database `database`, as an outage would (the `pg_terminate_backend` the issue
 * names), except the caller's own and the fault tests' own polling connections ({@link resilientPool}'s). Returns
 * how many of Windfall's connections (application name `windfall`) were terminated: the ones the fault is for.
 * Only ever pass a database you own.
 */
export async function terminateBackends(admin: Pick<pg.Pool, 'query'>, database: string): Promise<number> {
  const { rows } = await admin.query<{ terminated: boolean; windfall: boolean }>(
    `select pg_terminate_backend(pid) as terminated, application_name = 'windfall' as windfall
     from pg_stat_activity
     where datname = $1 and pid <> pg_backend_pid() and application_name is distinct from $2`,
    [database, FAULT_TEST_APPLICATION],
  );
  return rows.filter((row) => row.terminated && row.windfall).length;
}

/** How many of Windfall's connections (application name `windfall`) database `database` has now. */
export async function windfallBackends(admin: Pick<pg.Pool, 'query'>, database: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity where datname = $1 and application_name = 'windfall' and pid <> pg_backend_pid()`,
    [database],
  );
  return rows[0]!.n;
}

/** A pool that survives its connections being terminated (idle-client errors are ignored, not thrown). */
export function resilientPool(connectionString: string, max = 4): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, application_name: FAULT_TEST_APPLICATION });
  pool.on('error', () => undefined);
  return pool;
}

/** Runs `query` again after connection errors (the pool may hold connections a test just terminated). */
export async function queryRetrying<T extends pg.QueryResultRow>(
  pool: pg.Pool,
  text: string,
  values: unknown[] = [],
  tries = 10,
): Promise<pg.QueryResult<T>> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await pool.query<T>(text, values);
    } catch (error) {
      const code = (error as { code?: string }).code;
      const transient = code === undefined || code.startsWith('57') || code.startsWith('08');
      if (!transient || attempt >= tries) throw error;
      await sleep(100 * attempt);
    }
  }
}

/** Waits until every one of `workers` has logged that it started (they log at `info`). */
export function waitForStarted(workers: readonly WindfallProcess[], timeoutMs = 60_000): Promise<void> {
  return waitFor(
    () => workers.every((worker) => worker.output().includes('worker started')),
    `${workers.length} worker(s) to start`,
    timeoutMs,
    50,
  );
}

/** Polls `check` until it is true; fails naming `what` after `timeoutMs`. */
export async function waitFor(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 60_000,
  everyMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export { sleep };
