/**
 * The process entry points of workers/ (the image's commands): started directly with `node`, they run behind the
 * CLI's process guards — a wrong Redis password exits 1 with a message naming the place, and the password appears
 * nowhere in their output, even where a dependency prints the URL with console.error.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestEnvironment } from './support/environment.js';
import { startRedisServer, waitFor, type RedisServer } from './support/redis-servers.js';

const env = useTestEnvironment();
const root = fileURLToPath(new URL('..', import.meta.url));
// the Node running the tests (on a supported Node, npm links none into node_modules/.bin)
const NODE = process.execPath;
/** Prints REDIS_URL and ioredis's error for it with console.error when the process exits. */
const DEPENDENCY_OUTPUT = join(root, 'test/support/dependency-output-at-exit.mjs');
const RIGHT = 'right-pa55word-for-entry-points';
const WRONG = 'wrong-secret-123';
const TOKENS = {
  WINDFALL_API_TOKEN: 'entry-points-api-token-0123456789',
  WINDFALL_ADMIN_TOKEN: 'entry-points-admin-token-0123456789',
};

interface Run {
  readonly output: () => string;
  readonly stderr: () => string;
  readonly exited: Promise<number | string>;
  stop(): void;
}

/** `node [--import dependency output] <script> ...args`, its stdout and stderr collected. */
function start(script: string, args: readonly string[], environment: NodeJS.ProcessEnv, dependency = true): Run {
  const child = spawn(NODE, [...(dependency ? ['--import', DEPENDENCY_OUTPUT] : []), script, ...args], {
    cwd: root,
    env: environment,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
  child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1));
    child.on('error', (error) => resolve(`not started: ${error.message}`));
  });
  return {
    output: () => stdout + stderr,
    stderr: () => stderr,
    exited,
    stop: () => child.kill('SIGTERM'),
  };
}

const ENTRY_POINTS = [
  { name: 'reward-worker', script: 'dist/workers/reward-worker.js', args: [] },
  { name: 'api-server', script: 'dist/workers/api-server.js', args: ['--port', '0', '--host', '127.0.0.1'] },
] as const;

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedisServer({ aof: false, password: RIGHT });
});
afterAll(async () => {
  await redis?.destroy();
});

describe('workers/ entry points started with node', () => {
  it('the dependency output this test injects shows the password when nothing guards it', async () => {
    const run = start('-e', [''], env.env({ REDIS_URL: `redis://:${WRONG}@127.0.0.1:${redis.port}` }));
    expect(await run.exited).toBe(0);
    expect(run.stderr()).toContain('Unexpected Error in AsyncFifoQueue');
    expect(run.stderr()).toContain(WRONG);
  });

  for (const entry of ENTRY_POINTS) {
    it(`${entry.name}: a wrong Redis password exits 1, saying so, and never prints the password`, async () => {
      const run = start(
        entry.script,
        entry.args,
        env.env({ ...TOKENS, REDIS_URL: `redis://:${WRONG}@127.0.0.1:${redis.port}`, LOG_LEVEL: 'trace' }),
      );
      expect(await run.exited, run.output()).toBe(1);
      expect(run.stderr()).toContain(`windfall: Redis at 127.0.0.1:${redis.port} does not answer (WRONGPASS`);
      // the dependency's report ran, scrubbed
      expect(run.stderr()).toContain(`Unexpected Error in AsyncFifoQueue (redis://:***@127.0.0.1:${redis.port})`);
      expect(run.output()).not.toContain(WRONG);
    });
  }

  it('with the right password they run until SIGTERM, then exit 0', async () => {
    const url = `redis://:${RIGHT}@127.0.0.1:${redis.port}`;
    const runs = ENTRY_POINTS.map((entry) =>
      start(entry.script, entry.args, env.env({ ...TOKENS, REDIS_URL: url, LOG_LEVEL: 'info' }), false),
    );
    const [worker, api] = runs as [Run, Run];
    try {
      await waitFor(() => worker.output().includes('worker started'), 'the worker to start', 30_000);
      await waitFor(() => api.output().includes('HTTP server listening'), 'the API to listen', 30_000);
    } finally {
      for (const run of runs) run.stop();
    }
    expect(await Promise.all(runs.map((run) => run.exited))).toEqual([0, 0]);
    expect(runs.map((run) => run.output()).join('\n')).not.toContain(RIGHT);
  }, 90_000);
});
