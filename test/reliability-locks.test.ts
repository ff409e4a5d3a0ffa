import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type pg from 'pg';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REWARD_POLICY } from '../src/lock/lock-policy.js';
import { UserLocks } from '../src/lock/user-locks.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import type { Windfall } from '../src/runtime/windfall.js';
import { RewardWorker } from '../src/worker/reward-worker.js';
import { useTestEnvironment } from './support/environment.js';
import { runCli } from './support/cli.js';
import { balances, rewardRows, waitForBatchDone } from './support/batches.js';
import { resilientPool, startRedisServer, waitFor } from './support/redis-servers.js';

const env = useTestEnvironment();
let probe: pg.Pool;
beforeAll(() => {
  probe = resilientPool(env.databaseUrl, 2);
});
afterAll(async () => {
  await probe.end();
});

/** Statements of this database (other than the probe's) waiting for a lock. */
async function blockedStatements(): Promise<number> {
  const { rows } = await probe.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity
     where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock' and application_name like 'windfall%'`,
  );
  return rows[0]!.n;
}

const heldRows: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const release of heldRows.splice(0)) await release().catch(() => undefined);
});

/** Holds the wallet row of `uid` from a transaction of the test: a user statement touching it blocks until `release()`. */
async function holdWalletRow(uid: string): Promise<{ release: () => Promise<void> }> {
  const client = await env.pool.connect();
  await client.query('begin');
  const { rowCount } = await client.query('select 1 from wallets where uid = $1 for update', [uid]);
  expect(rowCount).toBe(1);
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    await client.query('commit');
    client.release();
  };
  // a failing test must not leave the row held for the next one
  heldRows.push(release);
  return { release };
}

/**
 * A worker that runs one job per shard at a time: while its job is blocked it fetches no other, so the next batch
 * goes to another worker (a worker runs a user's statements on its own connections, one after another).
 */
function oneJobWorker(windfall: Windfall): RewardWorker {
  return new RewardWorker({
    pool: windfall.database.pool,
    redis: windfall.redis,
    prefix: windfall.config.prefix,
    shards: Array.from({ length: windfall.config.shards }, (_, shard) => shard),
    concurrency: windfall.config.concurrency,
    usersPerTransaction: windfall.config.usersPerTransaction,
    policy: windfall.config.rewardLockPolicy,
    jobsPerShard: 1,
    logger: windfall.logger,
  });
}

const sum = (rows: { amount: number | string }[]): bigint =>
  rows.reduce((total, row) => total + BigInt(row.amount), 0n);

describe('lock faults: the Redis lock is an efficiency lock, PostgreSQL keeps the money right', () => {
  it('a lock that expires while its transaction is still running: two workers overlap on one user, no double credit', async () => {
    const policy = { ...REWARD_POLICY, ttlMs: 300 };
    const first = await env.open({ rewardLockPolicy: policy, concurrency: 2 });
    const second = await env.open({ rewardLockPolicy: policy, concurrency: 2 });
    await first.wallet.addBalance('ov-user', 1, { operationId: 'ov-opening' });
    const batchA = [1, 2, 3].map((n) => ({ rewardId: `ov-${n}`, uid: 'ov-user', amount: 10 * n }));
    const batchB = [2, 3, 4, 5].map((n) => ({ rewardId: `ov-${n}`, uid: 'ov-user', amount: 10 * n }));
    const row = await holdWalletRow('ov-user');
    const firstWorker = oneJobWorker(first);
    await firstWorker.start();
    await first.producer.enqueueRewards(batchA, { batchId: 'ov-a' });
    await waitFor(
      async () => (await blockedStatements()) === 1,
      "the first worker's statement to block on the wallet row",
    );
    // its 300 ms lock expires while the statement waits
    await waitFor(async () => (await env.redis.exists(`${env.prefix}:lock:ov-user`)) === 0, 'the first lock to expire');
    // the first worker takes no new job while its job is blocked, so batch B goes to the second
    await second.createWorker().start();
    await second.producer.enqueueRewards(batchB, { batchId: 'ov-b' });
    // the second worker took the expired lock and is inside its own statement for the same user
    await waitFor(async () => (await blockedStatements()) === 2, 'two statements for ov-user in flight at once');
    await row.release();

    const [a, b] = await Promise.all([
      waitForBatchDone(env.pool, 'ov-a', 30_000),
      waitForBatchDone(env.pool, 'ov-b', 30_000),
    ]);
    await firstWorker.close();
    // whichever statement gets the row first applies the shared rewards (A's usually; a statement waiting on a held
    // row is cancelled and sent again, so on a slow machine B's may come first): each reward once, none lost
    expect([a.deadLettered, b.deadLettered]).toEqual([0, 0]);
    expect([a.applied + a.duplicate, b.applied + b.duplicate]).toEqual([3, 4]);
    expect(a.applied + b.applied).toBe(5);
    expect((await balances(env.pool)).get('ov-user')).toBe(1n + sum([...batchA, { amount: 40 }, { amount: 50 }]));
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  });

  it('a force release during processing (windfall lock release --force): another worker takes the lock, no double credit', async () => {
    const first = await env.open({ concurrency: 2 });
    await first.wallet.addBalance('fr-user', 1, { operationId: 'fr-opening' });
    const rows = rewardRows(5, (n) => ({ rewardId: `fr-${n}`, uid: 'fr-user', amount: 100 + n }));
    const row = await holdWalletRow('fr-user');
    const firstWorker = oneJobWorker(first);
    await firstWorker.start();
    await first.producer.enqueueRewards(rows, { batchId: 'fr-a' });
    await waitFor(async () => (await blockedStatements()) === 1, 'the statement to block on the wallet row');
    expect((await first.wallet.getLockStatus('fr-user')).locked).toBe(true);

    const released = await runCli(['lock', 'release', 'fr-user', '--force', '--json'], env.env());
    expect(released.code, released.stderr).toBe(0);
    expect(released.stderr).toContain('lock force-released');
    const second = await env.open({ concurrency: 2 });
    await second.createWorker().start();
    // the same rewards again (another batch), plus one more: the second worker takes the freed lock
    await second.producer.enqueueRewards([...rows, { rewardId: 'fr-extra', uid: 'fr-user', amount: 7 }], {
      batchId: 'fr-b',
    });
    await waitFor(async () => (await blockedStatements()) === 2, 'the second statement for fr-user in flight');
    await row.release();

    const [a, b] = await Promise.all([
      waitForBatchDone(env.pool, 'fr-a', 30_000),
      waitForBatchDone(env.pool, 'fr-b', 30_000),
    ]);
    await firstWorker.close();
    // as above: whichever statement gets the row first applies the shared rewards, each once
    expect([a.deadLettered, b.deadLettered]).toEqual([0, 0]);
    expect([a.applied + a.duplicate, b.applied + b.duplicate]).toEqual([5, 6]);
    expect(a.applied + b.applied).toBe(6);
    expect((await balances(env.pool)).get('fr-user')).toBe(1n + sum(rows) + 7n);
    // the first holder's late release did not free the second holder's lock: nothing is left behind either way
    expect(await env.redis.exists(`${env.prefix}:lock:fr-user`)).toBe(0);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  });

  it('a lock whose SET reply was lost to a dropped connection is ours after ioredis resends it, not a busy lock', async () => {
    const server = await startRedisServer({ aof: false });
    // a proxy that forwards the first SET … NX, then cuts the connection before its reply comes back
    let cut = false;
    const sockets: Socket[] = [];
    const proxy: Server = createServer((client) => {
      const upstream = createConnection(server.port, '127.0.0.1');
      sockets.push(client, upstream);
      let dropReplies = false;
      client.on('data', (data: Buffer) => {
        upstream.write(data);
        if (!cut && /\bSET\b[\s\S]*\bNX\b/i.test(data.toString())) {
          cut = true;
          dropReplies = true;
          setTimeout(() => {
            client.destroy();
            upstream.destroy();
          }, 100);
        }
      });
      upstream.on('data', (data: Buffer) => {
        if (!dropReplies) client.write(data);
      });
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const port = (proxy.address() as { port: number }).port;
    const redis = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: null, retryStrategy: () => 50 });
    redis.on('error', () => undefined);
    try {
      const locks = new UserLocks(redis, { prefix: 'lost-reply' });
      const started = Date.now();
      const handle = await locks.acquire('u1', {
        name: 'reward',
        retries: 2,
        initialDelayMs: 200,
        factor: 1,
        ttlMs: 30_000,
      });
      expect(cut).toBe(true);
      expect(handle.retries).toBe(0);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(await locks.release(handle)).toBe(true);
    } finally {
      redis.disconnect();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
      await server.destroy();
    }
  });
});
