import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, scrubSecrets } from '../src/log/logger.js';
import { useTestEnvironment } from './support/environment.js';
import { runCli } from './support/cli.js';
import { waitForBatchDone } from './support/batches.js';
import { repeatedJsonKeys } from './support/json-keys.js';
import {
  randomPort,
  redisCli,
  startRedisServer,
  startWindfall,
  waitFor,
  type RedisServer,
} from './support/redis-servers.js';

const env = useTestEnvironment();
const SECRET = 'S3cr3t-pa55-do-not-leak';
const API_TOKEN = 'api-token-0123456789abcdef-secret';
const ADMIN_TOKEN = 'admin-token-0123456789abcdef-secret';
const dir = mkdtempSync(join(tmpdir(), 'windfall-security-'));

/** A logger writing into a string, with the production options. */
function capture(): { logger: ReturnType<typeof createLogger>; text: () => string } {
  let out = '';
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      out += chunk.toString();
      done();
    },
  });
  return { logger: createLogger('debug', {}, destination), text: () => out };
}

let protectedRedis: RedisServer;
beforeAll(async () => {
  protectedRedis = await startRedisServer({ aof: false, password: SECRET });
});
afterAll(async () => {
  await protectedRedis?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe('secrets stay out of logs', () => {
  it('redacts secret fields at any depth, and URL passwords and bearer tokens inside any text, errors and bindings', () => {
    const { logger, text } = capture();
    const error = Object.assign(new Error(`connect to postgres://bob:${SECRET}@db:5432/x failed`), {
      input: `redis://:${SECRET}@h:1`,
    });
    logger.warn(
      {
        err: error,
        databaseUrl: `postgres://bob:${SECRET}@db/x`,
        config: { redisUrl: `redis://:${SECRET}@h`, adminToken: ADMIN_TOKEN },
        deep: { a: { b: { token: API_TOKEN } } },
      },
      `could not reach redis://:${SECRET}@h:6379 with Bearer ${API_TOKEN}`,
    );
    logger.info(
      { req: { headers: { authorization: `Bearer ${API_TOKEN}`, cookie: 'session=1' } }, password: SECRET },
      'request',
    );
    logger.child({ upstream: `rediss://user:${SECRET}@cache:6380/0` }).error(error);
    const out = text();
    for (const secret of [SECRET, API_TOKEN, ADMIN_TOKEN]) expect(out).not.toContain(secret);
    expect(out).toContain('postgres://bob:***@db:5432/x failed');
    expect(out).toContain('"databaseUrl":"[redacted]"');
    expect(out).toContain('Bearer [redacted]');
    expect(out).toContain('rediss://user:***@cache:6380/0');
    expect(out.split('\n').filter(Boolean)).toHaveLength(3);
  });

  it('scrubSecrets leaves text without credentials alone', () => {
    expect(scrubSecrets('redis://127.0.0.1:6379 is down')).toBe('redis://127.0.0.1:6379 is down');
    expect(scrubSecrets('postgres://user@host/db')).toBe('postgres://user@host/db');
    expect(scrubSecrets('a http://u:p@h and https://x:y@z')).toBe('a http://u:***@h and https://x:***@z');
  });

  it('a worker on a password-protected Redis logs neither the password nor the URL when Redis goes away (debug level)', async () => {
    const url = `redis://:${SECRET}@127.0.0.1:${protectedRedis.port}`;
    const worker = startWindfall(
      ['worker'],
      env.env({ REDIS_URL: url, LOG_LEVEL: 'debug', WINDFALL_RECOVERY_INTERVAL_MS: '1000' }),
    );
    const step = async (what: string, run: () => Promise<unknown>): Promise<void> => {
      await run().catch((error: Error) => {
        throw new Error(`${what}: ${error.message}\n${worker.output().slice(-3000)}`);
      });
    };
    await step('start', () => waitFor(() => worker.output().includes('worker started'), 'the worker to start', 20_000));
    await step('shutdown', () => protectedRedis.shutdown());
    await step('error', () =>
      waitFor(() => worker.output().includes('Redis connection error'), 'a connection error to be logged', 15_000),
    );
    await step('restart', () => protectedRedis.restart());
    expect(await worker.stop()).toBe(0);
    expect(worker.output()).not.toContain(SECRET);
    expect(worker.output()).toContain(`redis://:***@127.0.0.1:${protectedRedis.port}`);
  });
});

describe('a Redis password rotated under running workers', () => {
  const OLD = 'Old-r0tated-pa55word-xyz';
  const NEW = 'New-r0tated-pa55word-xyz';
  let rotating: RedisServer;
  beforeAll(async () => {
    rotating = await startRedisServer({ aof: false, password: OLD });
  });
  afterAll(async () => {
    // put the start-up password back so that the helper's redis-cli can shut the server down
    await redisCli(rotating.port, ['-a', NEW, '--no-auth-warning', 'config', 'set', 'requirepass', OLD]).catch(
      () => undefined,
    );
    await rotating?.destroy();
  });

  it('never appears in the output of a worker (debug and trace levels) or of the CLI, while every failure is still logged', async () => {
    const url = `redis://:${OLD}@127.0.0.1:${rotating.port}`;
    const cli = async (...args: string[]): Promise<string> => {
      const output = await redisCli(rotating.port, args);
      if (output.code !== 0) throw new Error(`redis-cli ${args.slice(2).join(' ')}: ${output.output}`);
      return output.output;
    };
    const settings = {
      REDIS_URL: url,
      WINDFALL_RECOVERY_INTERVAL_MS: '500',
      WINDFALL_REWARD_LOCK_RETRIES: '100',
      WINDFALL_REWARD_LOCK_DELAY_MS: '100',
      WINDFALL_REWARD_LOCK_FACTOR: '1',
      WINDFALL_SHARDS: '2',
      // a job whose lock lapsed while Redis refused the password is taken over soon after
      WINDFALL_JOB_LOCK_MS: '3000',
    };
    const workers = [
      startWindfall(['worker'], env.env({ ...settings, LOG_LEVEL: 'debug' })),
      startWindfall(['worker'], env.env({ ...settings, LOG_LEVEL: 'trace' })),
    ];
    const outputs = (): string => workers.map((worker) => worker.output()).join('\n');
    const step = async (what: string, run: () => Promise<unknown>): Promise<void> => {
      await run().catch((error: Error) => {
        throw new Error(`${what}: ${error.message}\n${outputs().slice(-4000)}`);
      });
    };
    try {
      await step('start', () =>
        waitFor(
          () => workers.every((worker) => worker.output().includes('worker started')),
          'both workers to start',
          30_000,
        ),
      );
      // work in flight when the password changes: one user's lock is held elsewhere, so its job stays active
      await cli('-a', OLD, '--no-auth-warning', 'set', `${env.prefix}:lock:rotation-held`, 'elsewhere', 'PX', '120000');
      const rows = [
        { rewardId: 'rot-held', uid: 'rotation-held', amount: 1 },
        ...Array.from({ length: 20 }, (_, n) => ({ rewardId: `rot-${n}`, uid: `rotation-${n}`, amount: 1 })),
      ];
      const enqueue = await runCli(
        ['enqueue', '--file', '-', '--format', 'jsonl', '--batch-id', 'rotation'],
        env.env({ REDIS_URL: url, WINDFALL_SHARDS: '2' }),
        rows.map((row) => JSON.stringify(row)).join('\n'),
      );
      expect(enqueue.code, enqueue.stderr).toBe(0);
      await step('progress', () =>
        waitFor(
          async () =>
            (await env.pool.query(`select count(*)::int as n from ledger_entries where batch_id = 'rotation'`)).rows[0]
              .n === 20,
          'the free users to be credited',
          30_000,
        ),
      );

      await cli('-a', OLD, '--no-auth-warning', 'config', 'set', 'requirepass', NEW);
      await cli('-a', NEW, '--no-auth-warning', 'client', 'kill', 'type', 'normal');
      await step('errors logged', () =>
        waitFor(
          () => workers.every((worker) => worker.output().includes('WRONGPASS')),
          'both workers to log the refused AUTH',
          30_000,
        ),
      );
      const runs = await Promise.all([
        runCli(['queues'], env.env({ REDIS_URL: url, LOG_LEVEL: 'debug' })),
        runCli(['batch', 'rotation', '--json'], env.env({ REDIS_URL: url, LOG_LEVEL: 'trace' })),
        runCli(['lock', 'status', 'rotation-held'], env.env({ REDIS_URL: url, LOG_LEVEL: 'debug' })),
      ]);
      for (const run of runs) {
        expect(run.code).toBe(1);
        expect(run.stderr).toContain('WRONGPASS');
        for (const secret of [OLD, NEW]) expect(run.stdout + run.stderr).not.toContain(secret);
      }

      // the old password is valid again: the workers reconnect by themselves and finish the batch
      await cli('-a', NEW, '--no-auth-warning', 'config', 'set', 'requirepass', OLD);
      await cli('-a', OLD, '--no-auth-warning', 'del', `${env.prefix}:lock:rotation-held`);
      await step('recovery', () => waitForBatchDone(env.pool, 'rotation', 60_000));
    } finally {
      const codes = await Promise.all(workers.map((worker) => worker.stop()));
      expect(codes).toEqual([0, 0]);
    }
    const output = outputs();
    for (const secret of [OLD, NEW]) expect(output).not.toContain(secret);
    // the failures were logged, with the command's name (ioredis 6 authenticates in its RESP3 handshake, HELLO 3 AUTH)
    expect(output).toContain('"command":{"name":"hello","args":"[4 hidden]"}');
    // the workers paused their use of Redis (logged once) rather than failing work, and resumed
    expect(output).toContain('Redis cannot work now: pausing');
    expect(output).toContain('Redis works again: resuming');
    for (const line of output.split('\n').filter((text) => text.startsWith('{')))
      expect(repeatedJsonKeys(line), line).toEqual([]);
  }, 180_000);
});

describe('secrets stay out of error messages', () => {
  it('a wrong Redis password, an unreachable Redis or PostgreSQL, a malformed URL: the message names the place, never the secret', async () => {
    const closed = await randomPort();
    const runs = await Promise.all([
      runCli(
        ['batch', 'x'],
        env.env({ REDIS_URL: `redis://:wrong-${SECRET}@127.0.0.1:${protectedRedis.port}`, LOG_LEVEL: 'debug' }),
      ),
      runCli(['batch', 'x'], env.env({ REDIS_URL: `redis://:${SECRET}@127.0.0.1:${closed}` })),
      runCli(['migrate'], env.env({ DATABASE_URL: `postgres://postgres:${SECRET}@127.0.0.1:${closed}/windfall` })),
      runCli(['reconcile'], env.env({ DATABASE_URL: `postgres://postgres:${SECRET}@127.0.0.1:${closed}/windfall` })),
      runCli(['batch', 'x'], env.env({ REDIS_URL: `redis://:${SECRET}@127.0.0.1:notaport` })),
      runCli(['batch', 'x', '--database-url', `postgres://u:${SECRET}@[::1`], env.env()),
    ]);
    expect(runs.map((run) => run.code)).toEqual([1, 1, 1, 1, 2, 2]);
    for (const run of runs) {
      expect(run.stderr.length).toBeGreaterThan(0);
      expect(run.stdout + run.stderr).not.toContain(SECRET);
    }
    expect(runs[1].stderr).toContain(`127.0.0.1:${closed}`);
    expect(runs[4].stderr).toContain('REDIS_URL');
  });

  it('the HTTP API never echoes or logs a token, right or wrong (debug level)', async () => {
    const port = await randomPort();
    const server = startWindfall(
      ['serve', '--port', String(port), '--host', '127.0.0.1'],
      env.env({ WINDFALL_API_TOKEN: API_TOKEN, WINDFALL_ADMIN_TOKEN: ADMIN_TOKEN, LOG_LEVEL: 'debug' }),
    );
    try {
      await waitFor(() => server.output().includes('HTTP server listening'), 'the HTTP server to listen', 30_000);
      const base = `http://127.0.0.1:${port}`;
      const answers = await Promise.all([
        fetch(`${base}/v1/batches/none`, { headers: { authorization: `Bearer ${API_TOKEN}` } }),
        fetch(`${base}/v1/batches/none`, { headers: { authorization: `Bearer wrong-${API_TOKEN}` } }),
        fetch(`${base}/v1/locks/u1`, { headers: { authorization: `Bearer ${API_TOKEN}` } }),
        fetch(`${base}/v1/locks/u1`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
        fetch(`${base}/admin/queues`, {
          headers: { authorization: `Basic ${Buffer.from(`admin:wrong-${ADMIN_TOKEN}`).toString('base64')}` },
        }),
      ]);
      expect(answers.map((answer) => answer.status)).toEqual([404, 401, 403, 200, 401]);
      const bodies = await Promise.all(answers.map((answer) => answer.text()));
      for (const body of bodies) for (const secret of [API_TOKEN, ADMIN_TOKEN]) expect(body).not.toContain(secret);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    for (const secret of [API_TOKEN, ADMIN_TOKEN]) expect(server.output()).not.toContain(secret);
    expect(server.output()).toContain('http request');
  });
});

describe('limits', () => {
  const file = (name: string, content: string | Buffer): string => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };

  it('refuses a batch over WINDFALL_MAX_BATCH_ROWS as a whole (exit 2), recording nothing', async () => {
    const path = file(
      'six.jsonl',
      Array.from({ length: 6 }, (_, n) => JSON.stringify({ rewardId: `lim-${n}`, uid: 'u', amount: 1 })).join('\n'),
    );
    const run = await runCli(
      ['enqueue', '--file', path, '--batch-id', 'lim-rows'],
      env.env({ WINDFALL_MAX_BATCH_ROWS: '5' }),
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('more than 5 rewards (WINDFALL_MAX_BATCH_ROWS)');
    const { rows } = await env.pool.query(`select 1 from reward_batches where batch_id = 'lim-rows'`);
    expect(rows).toHaveLength(0);
  });

  it('refuses rows over the line length, field lengths and JSON depth, naming each row (exit 2)', async () => {
    const lines = [
      JSON.stringify({ rewardId: 'ok-1', uid: 'u', amount: 1 }),
      JSON.stringify({ rewardId: 'long-line', uid: 'u', amount: 1, description: 'x'.repeat(2 * 1024 * 1024) }),
      JSON.stringify({ rewardId: 'r'.repeat(129), uid: 'u', amount: 1 }),
      JSON.stringify({ rewardId: 'uid-long', uid: 'u'.repeat(129), amount: 1 }),
      JSON.stringify({ rewardId: 'desc-long', uid: 'u', amount: 1, description: 'd'.repeat(501) }),
      `{"rewardId":"deep","uid":"u","amount":1,"description":${'['.repeat(70)}${']'.repeat(70)}}`,
    ];
    const run = await runCli(
      ['enqueue', '--file', file('limits.jsonl', lines.join('\n')), '--batch-id', 'lim-fields', '--json'],
      env.env(),
    );
    expect(run.code).toBe(2);
    const document = JSON.parse(run.stdout) as { errors: { row: number; field: string; reason: string }[] };
    expect(document.errors.map((error) => [error.row, error.field])).toEqual([
      [2, 'row'],
      [3, 'rewardId'],
      [4, 'uid'],
      [5, 'description'],
      [6, 'row'],
    ]);
    expect(document.errors[0]!.reason).toContain('longer than 1048576 bytes');
    expect(document.errors[4]!.reason).toContain('deeper than 64');
    const tooLongId = await runCli(
      ['enqueue', '--file', file('one.jsonl', lines[0]!), '--batch-id', 'b'.repeat(129)],
      env.env(),
    );
    expect(tooLongId.code).toBe(2);
    expect(tooLongId.stderr).toContain('batchId is 129 characters long');
  });
});

describe('SQL is parameterized', () => {
  /**
   * Interpolations allowed inside SQL text: quoted identifiers, Kysely identifiers, constant fragments, placeholder
   * numbers, Kysely's bound values (`sql.val`).
   */
  const SAFE = [
    /^quoteIdentifier\(/,
    /^sql\.(table|ref|id)\(/,
    // Kysely's bound value: sent as a parameter, never as text
    /^sql\.val\(/,
    /^[A-Z][A-Z0-9_]*$/,
    // a constant fragment builder called with literals only
    /^[A-Z][A-Z0-9_]*\((\s*'[^']*'\s*,?)*\)$/,
    /^values\.length$/,
  ];
  /**
   * Reviewed one by one (`file: expression`). None now: the dead-letter list built its `where` from fixed conditions
   * with $n placeholders until it became a Kysely query.
   */
  const REVIEWED = new Set<string>();
  const root = fileURLToPath(new URL('..', import.meta.url));

  function sources(folder: string): string[] {
    return readdirSync(join(root, folder)).flatMap((name) => {
      const path = join(root, folder, name);
      if (statSync(path).isDirectory()) return sources(join(folder, name));
      return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [path] : [];
    });
  }

  it('no query text is built from values: every interpolation into SQL is an identifier, a constant fragment or a placeholder number', () => {
    const findings: string[] = [];
    let checked = 0;
    for (const path of [...sources('src'), ...sources('migrations')]) {
      const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.ES2022, true);
      const file = relative(root, path);
      const constants = new Map<string, ts.Expression>();
      const collect = (node: ts.Node): void => {
        if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer)
          constants.set(node.name.text, node.initializer);
        ts.forEachChild(node, collect);
      };
      collect(source);
      const inspect = (template: ts.Node | undefined): void => {
        if (!template) return;
        if (ts.isIdentifier(template) && constants.has(template.text)) template = constants.get(template.text);
        if (!template || !ts.isTemplateExpression(template)) return;
        checked += 1;
        for (const span of template.templateSpans) {
          const expression = span.expression.getText(source);
          if (!SAFE.some((pattern) => pattern.test(expression)) && !REVIEWED.has(`${file}: ${expression}`)) {
            findings.push(
              `${file}:${source.getLineAndCharacterOfPosition(span.getStart()).line + 1}: \${${expression}}`,
            );
          }
        }
      };
      const visit = (node: ts.Node): void => {
        if (
          ts.isCallExpression(node) &&
          ts.isPropertyAccessExpression(node.expression) &&
          node.expression.name.text === 'query'
        ) {
          const first = node.arguments[0];
          if (first && ts.isObjectLiteralExpression(first)) {
            const textProperty = first.properties.find(
              (p) => ts.isPropertyAssignment(p) && p.name.getText(source) === 'text',
            );
            inspect(textProperty && ts.isPropertyAssignment(textProperty) ? textProperty.initializer : undefined);
          } else inspect(first);
        }
        if (
          ts.isTaggedTemplateExpression(node) &&
          node.tag.getText(source) === 'sql' &&
          ts.isTemplateExpression(node.template)
        )
          inspect(node.template);
        if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && /_SQL$|_CTE$/.test(node.name.text))
          inspect(node.initializer);
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
    expect(findings).toEqual([]);
    expect(checked).toBeGreaterThan(5);
  });
});
