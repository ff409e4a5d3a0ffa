import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHttpServer } from '../src/http/server.js';
import { createLogger } from '../src/log/logger.js';
import { WindfallMetrics } from '../src/metrics/metrics.js';
import { openWindfall } from '../src/runtime/windfall.js';
import { useTestEnvironment } from './support/environment.js';
import { eventually, runCli, startCli } from './support/cli.js';
import { balances, ledgerMismatches } from './support/batches.js';
import { recordDeadLetters } from './support/dead-letter-fixtures.js';
import { randomPort, redisCli, startRedisServer } from './support/redis-servers.js';
import { randomToken, startServe, type ServeProcess } from './support/serve.js';

const env = useTestEnvironment();
/** Small enough to test 413 cheaply. */
const BODY_LIMIT = 64 * 1024;
let server: ServeProcess;

beforeAll(async () => {
  server = await startServe(
    env.env({
      WINDFALL_HTTP_BODY_LIMIT: String(BODY_LIMIT),
      WINDFALL_JOB_ATTEMPTS: '1',
      WINDFALL_JOB_BACKOFF_MS: '10',
    }),
  );
});
afterAll(async () => {
  await server?.stop();
});

/** A logger with the production options writing into memory. */
function captureLogger() {
  let out = '';
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      out += chunk.toString();
      done();
    },
  });
  return {
    logger: createLogger('debug', {}, destination),
    text: () => out,
    lines: () => out.split('\n').filter(Boolean),
  };
}

type Auth = 'none' | 'api' | 'admin' | 'admin-basic' | 'api-basic' | 'wrong';
function headersFor(auth: Auth): Record<string, string> {
  switch (auth) {
    case 'none':
      return {};
    case 'api':
      return { authorization: `Bearer ${server.apiToken}` };
    case 'admin':
      return { authorization: `Bearer ${server.adminToken}` };
    case 'admin-basic':
      return { authorization: `Basic ${Buffer.from(`operator:${server.adminToken}`).toString('base64')}` };
    case 'api-basic':
      return { authorization: `Basic ${Buffer.from(`operator:${server.apiToken}`).toString('base64')}` };
    case 'wrong':
      return { authorization: 'Bearer wrong-token-0123456789abcdef' };
  }
}

async function call(
  method: string,
  path: string,
  auth: Auth,
  body?: string | object,
): Promise<{ status: number; body: any; headers: Headers; text: string }> {
  const response = await fetch(`${server.baseUrl}${path}`, {
    method,
    headers: { ...headersFor(auth), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (metrics, HTML)
  }
  return { status: response.status, body: parsed, headers: response.headers, text };
}

const CONTRACT_METRICS = [
  'windfall_lock_acquire_total',
  'windfall_lock_retries',
  'windfall_lock_wait_seconds',
  'windfall_lock_hold_seconds',
  'windfall_rewards_total',
  'windfall_dead_letter_total',
  'windfall_user_tx_seconds',
  'windfall_queue_jobs',
];

function expectContractMetrics(text: string): void {
  for (const name of CONTRACT_METRICS)
    expect(text, name).toMatch(new RegExp(`^# TYPE ${name} (counter|gauge|histogram)$`, 'm'));
  expect(text).toMatch(/^windfall_lock_acquire_total\{policy="reward",outcome="acquired"\} \d+/m);
  expect(text).toMatch(/^windfall_rewards_total\{outcome="dead_lettered"\} \d+/m);
  expect(text).toMatch(/^windfall_dead_letter_total\{reason="LOCK_BUSY"\} \d+/m);
  expect(text).toMatch(/^windfall_lock_retries_bucket\{le="0",policy="reward"\} \d+/m);
  expect(text).toMatch(/^windfall_user_tx_seconds_count \d+/m);
  expect(text).toMatch(/^windfall_queue_jobs\{queue="dead-letter",state="waiting"\} \d+/m);
  expect(text).toMatch(/^windfall_queue_jobs\{queue="shard-7",state="active"\} \d+/m);
  expect(text).toMatch(/^windfall_queue_oldest_waiting_seconds\{queue="shard-0"\} [\d.]+/m);
}

describe('windfall serve: start-up', () => {
  it('refuses to start without an API token (exit 2, naming WINDFALL_API_TOKEN), or with the admin token equal to it', async () => {
    const missing = await runCli(['serve', '--port', '0'], env.env());
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('WINDFALL_API_TOKEN');
    const same = randomToken('same');
    const equal = await runCli(
      ['serve', '--port', '0'],
      env.env({ WINDFALL_API_TOKEN: same, WINDFALL_ADMIN_TOKEN: same }),
    );
    expect(equal.code).toBe(2);
    expect(equal.stderr).toContain('WINDFALL_ADMIN_TOKEN equals WINDFALL_API_TOKEN');
    expect(equal.stderr).not.toContain(same);
  });
});

describe('windfall serve: producer routes', () => {
  it('answers 401 without a token or with a wrong one', async () => {
    const batch = { rewards: [{ rewardId: 'h-401', uid: 'h-u', amount: 1 }] };
    for (const auth of ['none', 'wrong'] as const) {
      const post = await call('POST', '/v1/batches', auth, batch);
      expect(post.status, auth).toBe(401);
      expect(post.body).toMatchObject({ error: 'unauthorized' });
      expect(post.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect((await call('GET', '/v1/batches/anything', auth)).status).toBe(401);
    }
    expect((await call('POST', '/v1/batches', 'none', 'not even json')).status).toBe(401);
    const { rows } = await env.pool.query(`select count(*)::int as n from ledger_entries where operation_id = 'h-401'`);
    expect(rows[0].n).toBe(0);
  });

  it('answers 400 naming the row and field for a bad body, and enqueues nothing', async () => {
    const cases: { body: string | object; errors: [number, string][] }[] = [
      { body: '{"rewards":[{"rewardId":"h-b1","uid":"u","amount":100.0}]}', errors: [[1, 'amount']] },
      {
        body: '{"rewards":[{"rewardId":"h-b1","uid":"u","amount":10},{"rewardId":"h-b2","uid":"u","amount":1e2}]}',
        errors: [[2, 'amount']],
      },
      {
        body: {
          rewards: [
            { rewardId: 'h-b1', uid: '', amount: '5' },
            { rewardId: 'h-b2', uid: 'u', amount: 5, amout: 5 },
          ],
        },
        errors: [
          [1, 'uid'],
          [2, 'amout'],
        ],
      },
      {
        body: {
          rewards: [
            { rewardId: 'h-b1', uid: 'u', amount: -3 },
            { rewardId: 'h-b3', uid: 'u', amount: 3 },
            { rewardId: 'h-b3', uid: 'v', amount: 3 },
          ],
        },
        errors: [
          [1, 'amount'],
          [3, 'rewardId'],
        ],
      },
      { body: { batchId: 'h-bad', rewards: [{ rewardId: 'h-b1', uid: 'u', amount: '1.5' }] }, errors: [[1, 'amount']] },
      { body: { rewards: [] }, errors: [[0, 'rewards']] },
      { body: { batchId: 'h-bad' }, errors: [[0, 'rewards']] },
      { body: { rewards: [{ rewardId: 'h-b1', uid: 'u', amount: 1 }], colour: 'red' }, errors: [[0, 'colour']] },
      { body: { batchId: 7, rewards: [{ rewardId: 'h-b1', uid: 'u', amount: 1 }] }, errors: [[0, 'batchId']] },
      { body: [{ rewardId: 'h-b1', uid: 'u', amount: 1 }], errors: [[0, 'body']] },
    ];
    for (const { body, errors } of cases) {
      const response = await call('POST', '/v1/batches', 'api', body);
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(response.body.error).toBe('invalid batch');
      expect(
        response.body.errors.map((e: { row: number; field: string }) => [e.row, e.field]),
        JSON.stringify(body),
      ).toEqual(errors);
      for (const error of response.body.errors) expect(typeof error.reason).toBe('string');
    }
    const broken = await call('POST', '/v1/batches', 'api', '{"rewards":[{"rewardId":"h-b1",');
    expect(broken.status).toBe(400);
    expect(broken.body).toMatchObject({ error: 'invalid JSON' });
    const duplicateKey = await call(
      'POST',
      '/v1/batches',
      'api',
      '{"rewards":[{"rewardId":"h-b1","uid":"u","amount":1,"amount":9}]}',
    );
    expect(duplicateKey.status).toBe(400);
    expect(duplicateKey.body.message).toContain('appears twice');
    const { rows } = await env.pool.query(
      `select count(*)::int as n from reward_batch_items where reward_id like 'h-b%'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('answers 400 for thousands of bad rows with the first 1,000 errors, counts per field and reason, and the totals', async () => {
    // 1,500 empty objects: 4,500 errors (rewardId, uid and amount missing) in a 3 KB body
    const body = `{"batchId":"h-many-bad","rewards":[${Array.from({ length: 1500 }, () => '{}').join(',')}]}`;
    const response = await call('POST', '/v1/batches', 'api', body);
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({
      error: 'invalid batch',
      message:
        'batch refused: 1,500 invalid rows out of 1,500 (4,500 errors); nothing was enqueued. Fix the rows and enqueue again.',
      totalErrors: 4500,
      badRows: 1500,
      rowsRead: 1500,
      summary: [
        { field: 'amount', code: 'missing', reason: 'is missing', count: 1500 },
        { field: 'rewardId', code: 'missing', reason: 'is missing', count: 1500 },
        { field: 'uid', code: 'missing', reason: 'is missing', count: 1500 },
      ],
    });
    expect(response.body.errors).toHaveLength(1000);
    expect(response.body.errors[0]).toEqual({ row: 1, field: 'rewardId', code: 'missing', reason: 'is missing' });
    expect(response.body.errors.at(-1)).toMatchObject({ row: 334, field: 'rewardId' });
    const { rows } = await env.pool.query(
      `select count(*)::int as n from reward_batches where batch_id = 'h-many-bad'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('answers 413 over the body-size limit and 415 for a body that is not JSON', async () => {
    const rewards = Array.from({ length: 1500 }, (_, n) => ({
      rewardId: `h-big-${n}`,
      uid: `h-big-user-${n}`,
      amount: 1,
      description: 'x'.repeat(20),
    }));
    const body = JSON.stringify({ rewards });
    expect(body.length).toBeGreaterThan(BODY_LIMIT);
    const response = await call('POST', '/v1/batches', 'api', body);
    expect(response.status).toBe(413);
    expect(response.body).toMatchObject({ error: 'payload too large' });
    expect(response.body.message).toContain(String(BODY_LIMIT));
    const text = await fetch(`${server.baseUrl}/v1/batches`, {
      method: 'POST',
      headers: { ...headersFor('api'), 'content-type': 'text/plain' },
      body: 'hello',
    });
    expect(text.status).toBe(415);
  });

  it('accepts a valid batch with 202, then reports it with 200 as the CLI does; re-posting the batchId is a no-op', async () => {
    const windfall = await env.open();
    await windfall.createWorker().start();
    const batch = {
      batchId: 'h-good',
      rewards: [
        { rewardId: 'h-g1', uid: 'h-user1', amount: 100, description: '活动奖励' },
        { rewardId: 'h-g2', uid: 'h-user2', amount: '9007199254740991' },
        { rewardId: 'h-g3', uid: 'h-user1', amount: 5 },
      ],
    };
    const accepted = await call('POST', '/v1/batches', 'api', batch);
    expect(accepted.status, accepted.text).toBe(202);
    expect(accepted.body).toEqual({ batchId: 'h-good', total: 3, created: true });

    const status = await call('GET', '/v1/batches/h-good', 'api');
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({ batchId: 'h-good', total: 3 });
    await eventually(
      async () => (await call('GET', '/v1/batches/h-good', 'api')).body.status === 'completed',
      'the batch to complete',
    );
    const done = await call('GET', '/v1/batches/h-good', 'api');
    const cli = await runCli(['batch', 'h-good', '--json'], env.env());
    expect(done.body).toEqual(JSON.parse(cli.stdout));
    expect(done.body).toMatchObject({ status: 'completed', applied: 3, duplicate: 0, deadLettered: 0, pending: 0 });

    const again = await call('POST', '/v1/batches', 'api', batch);
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ batchId: 'h-good', total: 3, created: false });
    const generated = await call('POST', '/v1/batches', 'api', {
      rewards: [{ rewardId: 'h-g1', uid: 'h-user1', amount: 100 }],
    });
    expect(generated.status).toBe(202);
    expect(generated.body.batchId).toMatch(/^[0-9a-f-]{36}$/);
    await eventually(
      async () => (await call('GET', `/v1/batches/${generated.body.batchId}`, 'api')).body.duplicate === 1,
      'the repeat to count as a duplicate',
    );

    const wallet = await call('GET', '/v1/wallets/h-user2', 'admin');
    expect(wallet.body).toMatchObject({
      uid: 'h-user2',
      balance: '9007199254740991',
      entries: [{ operationId: 'h-g2', amount: '9007199254740991', batchId: 'h-good' }],
    });
    expect((await call('GET', '/v1/batches/no-such-batch', 'api')).status).toBe(404);
    expect((await balances(env.pool)).get('h-user1')).toBe(105n);
  });
});

describe('windfall serve: a known batchId', () => {
  it('answers 409 batch conflict for other rewards and records nothing of them; 202 created:false for the same rewards in another order', async () => {
    const rewards = [
      { rewardId: 'h-c1', uid: 'h-cu1', amount: 10, description: 'spring' },
      { rewardId: 'h-c2', uid: 'h-cu2', amount: '20' },
    ];
    expect((await call('POST', '/v1/batches', 'api', { batchId: 'h-conflict', rewards })).body).toEqual({
      batchId: 'h-conflict',
      total: 2,
      created: true,
    });
    const conflict = await call('POST', '/v1/batches', 'api', {
      batchId: 'h-conflict',
      rewards: [rewards[0], { ...rewards[1], amount: 2000 }],
    });
    expect(conflict.status).toBe(409);
    expect(conflict.body).toEqual({
      error: 'batch conflict',
      message: expect.stringMatching(/^batch "h-conflict" already exists with different rewards/),
    });
    const { rows } = await env.pool.query(
      `select reward_id, amount::text from reward_batch_items where batch_id = 'h-conflict' order by reward_id`,
    );
    expect(rows).toEqual([
      { reward_id: 'h-c1', amount: '10' },
      { reward_id: 'h-c2', amount: '20' },
    ]);
    const same = await call('POST', '/v1/batches', 'api', { batchId: 'h-conflict', rewards: [rewards[1], rewards[0]] });
    expect(same.status).toBe(202);
    expect(same.body).toEqual({ batchId: 'h-conflict', total: 2, created: false });
  });
});

describe('windfall serve: operator routes', () => {
  it('refuse the API token (403) and missing or wrong tokens (401); accept the admin token as bearer or basic password', async () => {
    const routes: [string, string, object?][] = [
      ['GET', '/v1/wallets/h-user1'],
      ['GET', '/v1/locks/h-user1'],
      ['DELETE', '/v1/locks/h-nobody'],
      ['GET', '/v1/dead-letters'],
      ['GET', '/v1/dead-letters/1'],
      ['POST', '/v1/dead-letters/replay', { all: true, dryRun: true }],
    ];
    for (const [method, path, body] of routes) {
      for (const [auth, status] of [
        ['none', 401],
        ['wrong', 401],
        ['api', 403],
        ['api-basic', 403],
      ] as const) {
        const response = await call(method, path, auth, body);
        expect(response.status, `${method} ${path} with ${auth}`).toBe(status);
      }
      for (const auth of ['admin', 'admin-basic'] as const) {
        const response = await call(method, path, auth, body);
        expect([200, 404], `${method} ${path} with ${auth}: ${response.text}`).toContain(response.status);
      }
    }
    expect((await call('GET', '/v1/wallets/h-user1', 'api')).body).toMatchObject({ error: 'forbidden' });
    expect((await call('GET', '/v1/wallets/h-user1?limit=abc', 'admin')).status).toBe(400);
    const unknown = await call('GET', '/v1/dead-letters?reason=NOPE', 'admin');
    expect(unknown.status).toBe(400);
    expect(unknown.body.errors[0]).toMatchObject({ field: 'reason' });
  });

  it('shows and force-releases a lock held elsewhere', async () => {
    await env.redis.set(
      `${env.prefix}:lock:h-locked`,
      JSON.stringify({ owner: 'other-host:77', acquiredAt: '2026-01-02T03:04:05.000Z', token: 't' }),
      'PX',
      60_000,
    );
    const status = await call('GET', '/v1/locks/h-locked', 'admin');
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({
      uid: 'h-locked',
      locked: true,
      owner: 'other-host:77',
      acquiredAt: '2026-01-02T03:04:05.000Z',
    });
    expect(status.body.ttlMs).toBeGreaterThan(0);
    const released = await call('DELETE', '/v1/locks/h-locked', 'admin');
    expect(released.body).toMatchObject({ uid: 'h-locked', released: true, previous: { owner: 'other-host:77' } });
    expect(await env.redis.exists(`${env.prefix}:lock:h-locked`)).toBe(0);
    expect((await call('GET', '/v1/locks/h-locked', 'admin')).body).toEqual({
      uid: 'h-locked',
      locked: false,
      ttlMs: null,
      owner: null,
      acquiredAt: null,
    });
    expect(server.process.output()).toMatch(
      /"level":"warn".*"uid":"h-locked".*"requestedBy":"http:admin@127\.0\.0\.1".*lock force-released/,
    );
  });

  it('lists a dead-lettered user, replays it by id exactly once, and the dead-letter queue ends empty', async () => {
    // a busy user with no lock retries and one job attempt is dead-lettered at once
    await env.redis.set(`${env.prefix}:lock:h-busy`, 'a lock someone else wrote', 'PX', 60_000);
    const windfall = await env.open({
      rewardLockPolicy: { name: 'reward', retries: 0, initialDelayMs: 10, factor: 1, ttlMs: 5000 },
    });
    await windfall.createWorker().start();
    const accepted = await call('POST', '/v1/batches', 'api', {
      batchId: 'h-dlq',
      rewards: [
        { rewardId: 'h-d1', uid: 'h-busy', amount: 40 },
        { rewardId: 'h-d2', uid: 'h-free', amount: 2 },
      ],
    });
    expect(accepted.status).toBe(202);
    await eventually(
      async () => (await call('GET', '/v1/batches/h-dlq', 'api')).body.pending === 0,
      'the batch to settle',
    );
    expect((await call('GET', '/v1/batches/h-dlq', 'api')).body).toMatchObject({
      status: 'completed_with_failures',
      applied: 1,
      deadLettered: 1,
    });

    const listed = await call('GET', '/v1/dead-letters?reason=LOCK_BUSY&batchId=h-dlq', 'admin');
    expect(listed.status).toBe(200);
    expect(listed.body).toHaveLength(1);
    const entry = listed.body[0];
    expect(entry).toMatchObject({
      batchId: 'h-dlq',
      uid: 'h-busy',
      reason: 'LOCK_BUSY',
      state: 'open',
      rewards: [{ rewardId: 'h-d1', amount: '40' }],
    });
    expect((await call('GET', `/v1/dead-letters/${entry.id}`, 'admin')).body).toMatchObject({
      id: entry.id,
      uid: 'h-busy',
    });
    expect((await call('GET', '/v1/locks/h-busy', 'admin')).body).toMatchObject({
      locked: true,
      owner: 'a lock someone else wrote',
    });

    const bad = await call('POST', '/v1/dead-letters/replay', 'admin', { ids: [entry.id], all: true });
    expect(bad.status).toBe(400);
    expect((await call('POST', '/v1/dead-letters/replay', 'admin', {})).status).toBe(400);

    expect((await call('DELETE', '/v1/locks/h-busy', 'admin')).body.released).toBe(true);
    const replay = await call('POST', '/v1/dead-letters/replay', 'admin', { ids: [entry.id] });
    expect(replay.status).toBe(200);
    expect(replay.body).toMatchObject({
      dryRun: false,
      replayed: [{ id: entry.id, uid: 'h-busy', rewards: 1 }],
      skipped: [],
    });
    await eventually(
      async () => (await call('GET', '/v1/batches/h-dlq', 'api')).body.status === 'completed',
      'the replay to be applied',
    );
    const second = await call('POST', '/v1/dead-letters/replay', 'admin', { ids: [entry.id] });
    expect(second.body).toMatchObject({ replayed: [], skipped: [{ id: entry.id, state: 'replayed' }] });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await call('GET', '/v1/wallets/h-busy', 'admin')).body).toMatchObject({ balance: '40' });
    expect(await ledgerMismatches(env.pool)).toEqual([]);
    expect((await call('GET', '/v1/dead-letters', 'admin')).body).toEqual([]);
    expect(await windfall.queues.deadLetters().getWaitingCount()).toBe(0);
  });

  it('bounds dead-letter answers: at most 100 rewards per entry unless asked, pages by id, at most 1,000 ids in a replay (400 beyond)', async () => {
    const [big, small] = await recordDeadLetters(
      env.pool,
      [300, 1].map((count, n) => ({
        source: `h-bound-${n}`,
        batchId: 'h-bound',
        chunkNo: 0,
        replayOf: null,
        uid: `h-bound-u${n}`,
        shard: 0,
        rewards: Array.from({ length: count }, (_, k) => ({
          rewardId: `h-bound-${n}-${k}`,
          uid: `h-bound-u${n}`,
          amount: 3n,
          description: null,
        })),
        // (not LOCK_BUSY: the metrics test below expects no open LOCK_BUSY entry)
        reason: 'INVALID' as const,
        error: 'invalid (test)',
        attempts: 1,
      })),
    );
    const listed = await call('GET', '/v1/dead-letters?batchId=h-bound', 'admin');
    expect(listed.status).toBe(200);
    expect(listed.body.map((entry: { rewards: unknown[] }) => entry.rewards.length)).toEqual([100, 1]);
    expect(listed.body[0]).toMatchObject({ id: big!.id, rewardCount: 300, amount: '900' });
    const few = await call('GET', '/v1/dead-letters?batchId=h-bound&rewards=2&limit=1', 'admin');
    expect(few.body.map((entry: { id: string; rewards: unknown[] }) => [entry.id, entry.rewards.length])).toEqual([
      [big!.id, 2],
    ]);
    const next = await call('GET', `/v1/dead-letters?batchId=h-bound&limit=1&after=${big!.id}`, 'admin');
    expect(next.body.map((entry: { id: string }) => entry.id)).toEqual([small!.id]);
    expect((await call('GET', '/v1/dead-letters?rewards=1001', 'admin')).status).toBe(400);
    const shown = await call('GET', `/v1/dead-letters/${big!.id}?rewards=100000`, 'admin');
    expect(shown.body.rewards).toHaveLength(300);
    expect((await call('GET', `/v1/dead-letters/${big!.id}`, 'admin')).body.rewards).toHaveLength(100);

    const ids = Array.from({ length: 1001 }, (_, n) => String(n + 1));
    const refused = await call('POST', '/v1/dead-letters/replay', 'admin', { ids, dryRun: true });
    expect(refused.status).toBe(400);
    expect(refused.body.message).toContain('1000');
    const console = await fetch(`${server.baseUrl}/console/actions/purge`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${server.adminToken}`,
        'content-type': 'application/json',
        'x-windfall-console': '1',
      },
      body: JSON.stringify({ ids, dryRun: true }),
    });
    expect(console.status).toBe(400);
    expect(((await console.json()) as { message: string }).message).toContain('at most 1000 entries in one action');
    const named = [big!.id, small!.id, ...Array.from({ length: 998 }, (_, n) => String(900_000 + n))];
    const accepted = await call('POST', '/v1/dead-letters/replay', 'admin', { ids: named, dryRun: true });
    expect(accepted.status).toBe(200);
    expect(accepted.body).toMatchObject({ replayedCount: 2, skippedCount: 998, truncated: false });
  });
});

describe('windfall serve: dashboard, health, metrics, OpenAPI', () => {
  it('guards the dashboard: 401 with a Basic challenge, 403 for the API token, the page for the admin token', async () => {
    const anonymous = await call('GET', '/admin/queues', 'none');
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    expect((await call('GET', '/admin/queues', 'wrong')).status).toBe(401);
    expect((await call('GET', '/admin/queues', 'api-basic')).status).toBe(403);
    expect((await call('GET', '/admin/queues/api/queues', 'none')).status).toBe(401);
    const page = await call('GET', '/admin/queues', 'admin-basic');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<base href="/admin/queues/"');
    const api = await call('GET', '/admin/queues/api/queues', 'admin');
    expect(api.status).toBe(200);
    const names = (api.body.queues as { name: string }[]).map((q) => q.name).sort();
    expect(names).toEqual(['dead-letter', 'events', ...Array.from({ length: 8 }, (_, n) => `shard-${n}`)].sort());
    // read-only: the board's actions are refused by the server, not only hidden
    for (const action of ['dead-letter/empty', 'shard-0/pause', 'dead-letter/clean/waiting']) {
      expect((await call('PUT', `/admin/queues/api/queues/${action}`, 'admin')).status, action).toBe(405);
    }
  });

  it('answers /healthz and /readyz without auth', async () => {
    expect(await call('GET', '/healthz', 'none')).toMatchObject({ status: 200, body: { status: 'ok' } });
    const ready = await call('GET', '/readyz', 'none');
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ status: 'ready', checks: { redis: { ok: true }, postgres: { ok: true } } });
  });

  it('answers /readyz with 503 naming the failing service only, and logs the driver error once per change', async () => {
    const password = 'readyz-Pa55word-xyz';
    const redisServer = await startRedisServer({ aof: false, password });
    const closed = await randomPort();
    try {
      const cases = [
        { which: 'redis', broken: { redisUrl: `redis://127.0.0.1:${closed}` }, detail: 'ECONNREFUSED' },
        {
          which: 'redis',
          broken: { redisUrl: `redis://:wrong-${password}@127.0.0.1:${redisServer.port}` },
          detail: 'WRONGPASS',
        },
        {
          which: 'postgres',
          broken: { databaseUrl: `postgres://postgres@127.0.0.1:${closed}/windfall` },
          detail: 'ECONNREFUSED',
        },
        {
          which: 'postgres',
          broken: { databaseUrl: `postgres://no_such_role_xyz@127.0.0.1:5432/windfall` },
          detail: 'role "no_such_role_xyz" does not exist',
        },
      ] as const;
      for (const { which, broken, detail } of cases) {
        const log = captureLogger();
        const windfall = await openWindfall(env.config(broken), log.logger, { checkServices: false });
        try {
          // the healthy service is connected before the probes, so its first probe does not race a new connection
          if (which === 'redis') await windfall.database.pool.query('select 1');
          else await windfall.redis.ping();
          const app = await buildHttpServer(windfall, { apiToken: randomToken('api'), readyTimeoutMs: 1000 });
          for (let probe = 0; probe < 3; probe += 1) {
            const response = await app.inject({ method: 'GET', url: '/readyz' });
            expect(response.statusCode, which).toBe(503);
            const body = response.json<{
              status: string;
              checks: Record<string, { ok: boolean; ms: number; error?: string }>;
            }>();
            expect(body.status).toBe('not ready');
            expect(body.checks[which]).toEqual({
              ok: false,
              ms: expect.any(Number),
              error: which === 'redis' ? 'Redis does not answer' : 'PostgreSQL does not answer',
            });
            expect(body.checks[which === 'redis' ? 'postgres' : 'redis']).toEqual({ ok: true, ms: expect.any(Number) });
            // no host, port, user name, password or driver text for an unauthenticated caller
            for (const secret of [
              '127.0.0.1',
              String(closed),
              String(redisServer.port),
              'no_such_role_xyz',
              password,
              'WRONGPASS',
              'ECONNREFUSED',
              'within',
            ]) {
              expect(response.body, `${which} ${detail}`).not.toContain(secret);
            }
          }
          expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
          // three failing probes, one log line, with the detail
          const failures = log.lines().filter((line) => line.includes('readiness check failed'));
          expect(failures, log.text()).toHaveLength(1);
          const failure = JSON.parse(failures[0]!) as {
            check: string;
            err: { message: string };
            connectionError?: { message: string };
          };
          expect(failure.check).toBe(which);
          expect(`${failure.err.message} ${failure.connectionError?.message ?? ''}`).toContain(detail);
          if (detail === 'WRONGPASS') {
            // the password the client uses becomes the right one: the next probes pass, logged once
            await redisCli(redisServer.port, [
              '-a',
              password,
              '--no-auth-warning',
              'config',
              'set',
              'requirepass',
              `wrong-${password}`,
            ]);
            await eventually(
              async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200,
              'readiness to pass again',
              20_000,
            );
            expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
            expect(
              log.lines().filter((line) => line.includes('readiness check passes again: Redis answers')),
            ).toHaveLength(1);
            expect(log.lines().filter((line) => line.includes('readiness check failed'))).toHaveLength(1);
            await redisCli(redisServer.port, [
              '-a',
              `wrong-${password}`,
              '--no-auth-warning',
              'config',
              'set',
              'requirepass',
              password,
            ]);
          }
          expect(log.text()).not.toContain(password);
          await app.close();
        } finally {
          await windfall.close();
        }
      }
    } finally {
      await redisServer.destroy();
    }
  });

  it('exposes every contract metric on /metrics without auth, with queue depths read from Redis', async () => {
    expect((await call('GET', '/healthz', 'none')).status).toBe(200);
    const metrics = await call('GET', '/metrics', 'none');
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    expectContractMetrics(metrics.text);
    expect(metrics.text).toMatch(/^windfall_dead_letters_open\{reason="LOCK_BUSY"\} 0$/m);
    expect(metrics.text).toMatch(
      /^windfall_http_requests_total\{method="GET",route="\/healthz",status="200"\} [1-9]\d*$/m,
    );
  });

  it('exposes every contract metric on a worker process --metrics-port', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const address = probe.address() as { port: number };
        probe.close(() => resolve(address.port));
      });
    });
    const worker = startCli(['worker', '--metrics-port', String(port)], env.env({ LOG_LEVEL: 'info' }));
    try {
      await eventually(() => worker.output().includes('metrics on /metrics'), 'the worker metrics server');
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(response.status).toBe(200);
      expectContractMetrics(await response.text());
    } finally {
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
    }
  });

  it('serves the OpenAPI document of every route, identical to docs/openapi.json', async () => {
    const document = await call('GET', '/openapi.json', 'none');
    expect(document.status).toBe(200);
    const paths = Object.keys(document.body.paths);
    for (const path of [
      '/v1/batches',
      '/v1/batches/{id}',
      '/v1/rewards/{rewardId}',
      '/v1/wallets/{uid}',
      '/v1/locks/{uid}',
      '/v1/dead-letters',
      '/v1/dead-letters/replay',
      '/admin/queues',
      '/metrics',
      '/healthz',
      '/readyz',
    ]) {
      expect(paths).toContain(path);
    }
    expect(Object.keys(document.body.paths['/v1/locks/{uid}'])).toEqual(['get', 'delete']);
    // the copy in docs/ must describe the same routes (the package version may move on without it)
    const file = JSON.parse(readFileSync(new URL('../docs/openapi.json', import.meta.url), 'utf8')) as {
      info: { version: string };
    };
    const served = document.body as { info: { version: string } };
    expect(
      { ...file, info: { ...file.info, version: '' } },
      'docs/openapi.json is stale: regenerate it with `npx windfall serve --openapi > docs/openapi.json`',
    ).toEqual({
      ...served,
      info: { ...served.info, version: '' },
    });
  });
});

describe('ops: alert rules, Grafana dashboard, docker-compose', () => {
  const read = (path: string): string => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');
  const exported = async (): Promise<Set<string>> =>
    new Set((await new WindfallMetrics().registry.getMetricsAsJSON()).map((metric) => metric.name));
  const used = (text: string): string[] =>
    [...new Set(text.match(/\bwindfall_[a-z_]+/g) ?? [])].map((name) => name.replace(/_(bucket|sum|count)$/, ''));

  it('alert rules and dashboard panels only use metrics Windfall exports', async () => {
    const names = await exported();
    const rules = read('ops/prometheus/alerts.yml');
    expect([...rules.matchAll(/^\s+- alert: (\w+)$/gm)].map((match) => match[1])).toEqual(
      expect.arrayContaining(['WindfallDeadLettersGrowing', 'WindfallLockFailureRate', 'WindfallOldestWaitingJob']),
    );
    for (const name of used(rules)) expect(names, `alerts.yml: ${name}`).toContain(name);
    const dashboard = JSON.parse(read('ops/grafana/dashboards/windfall.json')) as {
      panels: { title: string; targets?: { expr: string }[] }[];
    };
    const exprs = dashboard.panels.flatMap((panel) =>
      (panel.targets ?? []).map((target) => [panel.title, target.expr] as const),
    );
    expect(exprs.length).toBeGreaterThan(10);
    for (const [title, expr] of exprs)
      for (const name of used(expr)) expect(names, `${title}: ${name}`).toContain(name);
    for (const name of CONTRACT_METRICS)
      expect(
        exprs.some(([, expr]) => expr.includes(name)),
        `the dashboard shows ${name}`,
      ).toBe(true);
  });

  it('docker-compose runs the API, Prometheus and Grafana provisioned from ops/', () => {
    const compose = read('docker-compose.yml');
    for (const service of ['redis', 'postgres', 'worker', 'api', 'prometheus', 'grafana'])
      expect(compose, service).toMatch(new RegExp(`^  ${service}:$`, 'm'));
    expect(compose).toContain('command: ["dist/workers/api-server.js", "--port", "3000"]');
    for (const path of [
      './ops/prometheus/prometheus.yml',
      './ops/prometheus/alerts.yml',
      './ops/grafana/provisioning',
      './ops/grafana/dashboards',
    ]) {
      expect(compose, path).toContain(`- ${path}:`);
    }
    const prometheus = read('ops/prometheus/prometheus.yml');
    expect(prometheus).toContain('- /etc/prometheus/alerts.yml');
    expect([...prometheus.matchAll(/job_name: (\S+)/g)].map((match) => match[1])).toEqual([
      'windfall-api',
      'windfall-worker',
    ]);
  });
});

describe('windfall serve: logs', () => {
  it('never writes a token into its log, and stops cleanly on SIGTERM', async () => {
    const basic = Buffer.from(`operator:${server.adminToken}`).toString('base64');
    // requests with every kind of credential, right or wrong, then the log of the whole run is searched
    for (const auth of ['api', 'admin', 'admin-basic', 'api-basic', 'wrong'] as const) {
      await call('GET', '/v1/batches/no-such-batch', auth);
      await call('GET', '/v1/locks/log-check', auth);
      await call('GET', '/admin/queues', auth);
    }
    const code = await server.stop();
    expect(code).toBe(0);
    const output = server.process.output();
    expect(output).toContain('"msg":"http request"');
    expect(output).toContain('HTTP server stopped');
    for (const secret of [server.apiToken, server.adminToken, basic, 'wrong-token-0123456789abcdef']) {
      expect(output.includes(secret), 'a token appears in the server log').toBe(false);
    }
  });
});
