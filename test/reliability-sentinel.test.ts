import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { createLogger } from '../src/log/logger.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import { redisConnectOptions } from '../src/services/connections.js';
import { connectRedis, reactionToDemotion } from '../src/services/redis-connection.js';
import { balances, settledRewards } from './support/batches.js';
import { runCli } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { randomPort, startWindfall, waitFor, waitForStarted, type WindfallProcess } from './support/redis-servers.js';
import { startServe, type ServeProcess } from './support/serve.js';
import { startRedisSentinelSet, type RedisSentinelSet } from './support/topology.js';

const env = useTestEnvironment();
const NODE_PASSWORD = 'node-secret-0f3a9c';
const SENTINEL_PASSWORD = 'sentinel-secret-7be21d';
const dir = mkdtempSync(join(tmpdir(), 'windfall-sentinel-test-'));
let set: RedisSentinelSet;
let workers: WindfallProcess[] = [];
let serve: ServeProcess | undefined;

beforeAll(async () => {
  // down-after 2 s: a replica cut off for less than 10 × that is still promoted (the scenario cuts it on purpose)
  set = await startRedisSentinelSet({
    password: NODE_PASSWORD,
    sentinelPassword: SENTINEL_PASSWORD,
    downAfterMs: 2000,
  });
}, 120_000);
afterEach(async () => {
  await Promise.all(workers.map((worker) => worker.kill9()));
  workers = [];
  await serve?.stop();
  serve = undefined;
});
afterAll(async () => {
  await set?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

/** Environment that reaches Redis through the sentinels only: REDIS_URL's host and port name no server. */
function sentinelEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return env.env({
    REDIS_URL: `redis://:${NODE_PASSWORD}@127.0.0.1:1`,
    REDIS_SENTINELS: set.sentinelList,
    REDIS_SENTINEL_PASSWORD: SENTINEL_PASSWORD,
    ...extra,
  });
}

/** Writes a batch's rewards as JSON Lines and returns the file and each user's expected credit. */
function rewardFile(
  name: string,
  count: number,
  users: number,
): { file: string; expected: Map<string, bigint>; count: number } {
  const expected = new Map<string, bigint>();
  const lines: string[] = [];
  for (let n = 0; n < count; n += 1) {
    const uid = `${name}-u${(n * 13) % users}`;
    const amount = 1 + (n % 29);
    expected.set(uid, (expected.get(uid) ?? 0n) + BigInt(amount));
    lines.push(JSON.stringify({ rewardId: `${name}-${n}`, uid, amount }));
  }
  const file = join(dir, `${name}.jsonl`);
  writeFileSync(file, lines.join('\n') + '\n');
  return { file, expected, count };
}

describe('start-up through Redis Sentinel', () => {
  it('refuses a malformed REDIS_SENTINELS with exit 2 naming it', async () => {
    const result = await runCli(['queues'], env.env({ REDIS_SENTINELS: '127.0.0.1:26379,sentinel-without-port' }));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('REDIS_SENTINELS');
    expect(result.stderr).toContain('sentinel-without-port');
  });

  it('says which sentinels were tried when none answers, which name they do not know, which password they refuse — never a password', async () => {
    const nobody = [`127.0.0.1:${await randomPort()}`, `127.0.0.1:${await randomPort()}`];
    const down = await runCli(['queues'], sentinelEnv({ REDIS_SENTINELS: nobody.join(',') }));
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(`sentinels tried: ${nobody.join(', ')}`);
    expect(down.stderr).toContain(`does not answer: no sentinel gave the primary's address (${nobody[0]}: `);
    expect(down.stderr).toContain('REDIS_SENTINELS');
    const downJson = await runCli(['queues', '--json'], sentinelEnv({ REDIS_SENTINELS: nobody.join(',') }));
    expect(JSON.parse(downJson.stdout)).toMatchObject({ error: 'unavailable' });

    const unknown = await runCli(['queues'], sentinelEnv({ REDIS_SENTINEL_NAME: 'no-such-master' }));
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('the sentinels know no master named "no-such-master"');
    expect(unknown.stderr).toContain('REDIS_SENTINEL_NAME');

    const refused = await runCli(['queues'], sentinelEnv({ REDIS_SENTINEL_PASSWORD: 'wrong-sentinel-secret' }));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('a sentinel refused the credentials');
    expect(refused.stderr).toContain('REDIS_SENTINEL_PASSWORD');

    const wrongNode = await runCli(['queues'], sentinelEnv({ REDIS_URL: 'redis://:wrong-node-secret@127.0.0.1:1' }));
    expect(wrongNode.code).toBe(1);
    expect(wrongNode.stderr).toMatch(/the primary they named did not.*REDIS_URL/);

    for (const result of [down, unknown, refused, wrongNode]) {
      for (const secret of [NODE_PASSWORD, SENTINEL_PASSWORD, 'wrong-sentinel-secret', 'wrong-node-secret']) {
        expect(result.stderr).not.toContain(secret);
        expect(result.stdout).not.toContain(secret);
      }
    }
  }, 60_000);

  it('the CLI and `windfall serve` work through the sentinels while REDIS_URL names no server', async () => {
    const queues = await runCli(['queues', '--json'], sentinelEnv());
    expect(queues.code, queues.stderr).toBe(0);
    expect(JSON.parse(queues.stdout)).toBeTruthy();
    serve = await startServe(sentinelEnv());
    const ready = await fetch(`${serve.baseUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', checks: { redis: { ok: true } } });
  });
});

describe('a failover while the old primary stays up', () => {
  it('a Windfall connection follows a manual failover (the old primary stays up until Sentinel demotes it); no command fails', async () => {
    const config = loadConfig(sentinelEnv());
    const redis = connectRedis(config.redisUrl, createLogger('silent'), 'windfall-test', redisConnectOptions(config));
    const key = `${env.prefix}:failover-counter`;
    let acknowledged = 0;
    const failures: string[] = [];
    let stop = false;
    const writing = (async () => {
      while (!stop) {
        try {
          await redis.incr(key);
          acknowledged += 1;
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
    })();
    try {
      await waitFor(() => acknowledged >= 1000, 'writes before the failover', 30_000, 10);
      const old = await set.primary();
      expect(await set.sentinelCli(0, ['sentinel', 'failover', set.masterName])).toContain('OK');
      const promoted = await set.waitForNewPrimary(old.port);
      const promotedAt = Date.now();
      const counterOf = async (node: typeof old): Promise<number> =>
        Number((await set.nodeCli(node, ['get', key])).trim() || 0);
      const atPromotion = await counterOf(promoted);
      // the old primary takes writes until Sentinel demotes it and closes its clients; then they reach the new one
      await waitFor(
        async () => (await counterOf(promoted)) >= atPromotion + 1000,
        'writes to reach the new primary',
        60_000,
        20,
      );
      const followedAfterMs = Date.now() - promotedAt;
      expect(await set.nodeCli(old, ['role'])).toMatch(/^slave/);
      stop = true;
      await writing;
      expect(failures).toEqual([]);
      console.info(
        `manual failover: writes reached the new primary ${followedAfterMs} ms after it was named; ` +
          `${acknowledged - (await counterOf(promoted))} of ${acknowledged} INCRs were acknowledged by the old primary after the promotion (lost with it)`,
      );
      // the old primary follows the new one before the next test kills that
      await waitFor(
        async () => (await set.nodeCli(old, ['info', 'replication'])).includes('master_link_status:up'),
        'the old primary to replicate from the new one',
        60_000,
        100,
      );
    } finally {
      stop = true;
      await writing;
      redis.disconnect();
    }
  }, 120_000);

  it('a command refused by a demoted primary is sent again after reconnecting; a blocking one cut short fails to its caller', () => {
    expect(reactionToDemotion(new Error("READONLY You can't write against a read only replica."))).toBe(2);
    expect(
      reactionToDemotion(
        new Error(
          "ERR Error running script (call to f_1): @user_script:1: -READONLY You can't write against a read only replica.",
        ),
      ),
    ).toBe(2);
    expect(
      reactionToDemotion(
        new Error('UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)'),
      ),
    ).toBe(1);
    for (const other of ['OOM command not allowed', 'ERR unknown command', 'NOSCRIPT No matching script', 'LOADING'])
      expect(reactionToDemotion(new Error(other))).toBe(false);
  });
});

describe('the Sentinel primary killed mid-batch', () => {
  it('two workers finish both batches exact, nothing dead-lettered: what the old primary acknowledged but never replicated comes back through recovery, and rewards whose locks were lost are credited once', async () => {
    const a = rewardFile('sa', 40_000, 10_000);
    const b = rewardFile('sb', 4000, 1000);
    const workerEnv = sentinelEnv({
      // narrowed (2 transactions of 8 users at a time) so that the faults land mid-batch
      WINDFALL_CONCURRENCY: '2',
      WINDFALL_USERS_PER_TRANSACTION: '8',
      // jobs whose BullMQ lock the new primary never saw are taken over after this long
      WINDFALL_JOB_LOCK_MS: '2000',
      WINDFALL_RECOVERY_INTERVAL_MS: '1000',
      // re-runs of chunks whose lock release the new primary never saw wait for those locks' TTL: a worker stopped
      // then puts them back instead of waiting 30 s (they are applied already)
      WINDFALL_SHUTDOWN_TIMEOUT_MS: '3000',
      LOG_LEVEL: 'debug',
    });
    workers = [startWindfall(['worker'], workerEnv), startWindfall(['worker'], workerEnv)];
    await waitForStarted(workers);
    serve = await startServe(sentinelEnv());
    const enqueueEnv = sentinelEnv({ WINDFALL_CHUNK_SIZE: '100' });

    const first = await runCli(['enqueue', '--file', a.file, '--batch-id', 'sa'], enqueueEnv);
    expect(first.code, first.stderr).toBe(0);
    await waitFor(
      async () => (await settledRewards(env.pool, 'sa')) >= a.count / 4,
      'a quarter of batch sa',
      120_000,
      20,
    );

    // from here the primary acknowledges writes the replica never gets: batch sb's jobs, job moves and
    // completions, user locks
    await set.cutReplication();
    const settledAtCut = await settledRewards(env.pool, 'sa');
    const second = await runCli(['enqueue', '--file', b.file, '--batch-id', 'sb'], enqueueEnv);
    expect(second.code, second.stderr).toBe(0);
    await waitFor(
      async () => (await settledRewards(env.pool, 'sa')) >= settledAtCut + a.count / 20,
      'batch sa to progress after the cut',
      15_000,
      20,
    ).catch(() => undefined); // a slow machine: the replica must not stay cut off long enough to be unpromotable
    const settledAtKill = await settledRewards(env.pool, 'sa');
    const old = await set.killPrimary();
    const killedAt = Date.now();
    expect(settledAtKill).toBeGreaterThan(settledAtCut);
    expect(settledAtKill).toBeLessThan(a.count);
    expect(await settledRewards(env.pool, 'sb')).toBeLessThan(b.count);

    const promoted = await set.waitForNewPrimary(old.port);
    expect(promoted.port).not.toBe(old.port);
    const failedOverAt = Date.now();
    const done = async (): Promise<boolean> =>
      (await settledRewards(env.pool, 'sa')) >= a.count && (await settledRewards(env.pool, 'sb')) >= b.count;
    await waitFor(done, 'both batches settled after the failover', 120_000, 100).catch(async (error: Error) => {
      // what a stall looks like: how far each batch got, where the jobs are, what the workers said last
      const queues = await runCli(['queues', '--json'], sentinelEnv());
      if (process.env['SENTINEL_TEST_LOGS']) {
        workers.forEach((worker, index) =>
          writeFileSync(join(process.env['SENTINEL_TEST_LOGS']!, `worker-${index}.log`), worker.output()),
        );
      }
      throw new Error(
        `${error.message}: sa ${await settledRewards(env.pool, 'sa')}/${a.count}, sb ${await settledRewards(env.pool, 'sb')}/${b.count}\n` +
          `queues: ${queues.stdout}\n${workers.map((worker) => worker.output().slice(-4000)).join('\n----\n')}`,
      );
    });
    const completedAfterKillMs = Date.now() - killedAt;

    // serve answers through the new primary too
    await waitFor(
      async () => (await fetch(`${serve!.baseUrl}/readyz`)).status === 200,
      'serve to be ready again',
      30_000,
    );
    const status = await fetch(`${serve.baseUrl}/v1/batches/sb`, {
      headers: { authorization: `Bearer ${serve.apiToken}` },
    });
    expect(await status.json()).toMatchObject({ batchId: 'sb', status: 'completed', applied: b.count });

    const codes = await Promise.all(workers.map((worker) => worker.stop()));
    const logs = workers.map((worker) => worker.output());
    if (process.env['SENTINEL_TEST_LOGS']) {
      logs.forEach((text, index) =>
        writeFileSync(join(process.env['SENTINEL_TEST_LOGS']!, `worker-${index}.log`), text),
      );
    }
    expect(codes, logs.map((log) => log.slice(-3000)).join('\n----\n')).toEqual([0, 0]);
    const log = logs.join('\n');
    // batch sb's jobs existed only on the old primary (sa's all existed before the cut): the recovery watchdog
    // re-added them from PostgreSQL
    expect(log).toMatch(/:missing.*jobs re-added/);
    // the workers reconnected to the primary the sentinels named
    expect(log).toContain('Redis Sentinel named a new primary; connected to it');
    // jobs ran again where the new primary had lost their completion or lock: they found their rewards applied
    const reRuns = [...log.matchAll(/"alreadyApplied":(\d+)/g)].map((match) => Number(match[1])).filter((n) => n > 0);

    // nothing dead-lettered, nothing doubled, every balance exact
    const { rows: deadLetters } = await env.pool.query<{ n: number }>('select count(*)::int as n from dead_letters');
    expect(deadLetters[0]!.n).toBe(0);
    const { rows: ledger } = await env.pool.query<{ entries: number; ids: number }>(
      `select count(*)::int as entries, count(distinct operation_id)::int as ids from ledger_entries`,
    );
    expect(ledger[0]).toEqual({ entries: a.count + b.count, ids: a.count + b.count });
    const actual = await balances(env.pool);
    for (const [uid, amount] of [...a.expected, ...b.expected]) expect(actual.get(uid), uid).toBe(amount);
    const books = await reconcile(env.pool, { strict: true });
    expect(books.mismatches).toEqual([]);
    expect(books.rewards).toMatchObject({ total: a.count + b.count, applied: a.count + b.count });
    const reconciled = await runCli(['reconcile'], sentinelEnv());
    expect(reconciled.code, reconciled.stderr).toBe(0);

    console.info(
      `sentinel failover: sa settled ${settledAtCut} at the cut, ${settledAtKill} at the kill; new primary named ` +
        `${failedOverAt - killedAt} ms after the kill; both batches done ${completedAfterKillMs} ms after it; ` +
        `${reRuns.length} job runs found ${reRuns.reduce((x, y) => x + y, 0)} rewards already applied`,
    );
  }, 300_000);
});
