import { describe, expect, it } from 'vitest';
import type { Windfall } from '../src/runtime/windfall.js';
import { listDeadLetters } from '../src/dead-letters/dead-letter-store.js';
import { balances, ledgerMismatches, waitForBatchDone } from './support/batches.js';
import { eventually } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import { chunkJobId } from '../src/queue/job-data.js';
import { shardOf } from '../src/queue/shard-routing.js';

const env = useTestEnvironment();

/** Another service's lock on a user (a value Windfall did not write), held until deleted. */
const holdForeignLock = (uid: string) => env.redis.set(`${env.prefix}:lock:${uid}`, 'other-service', 'PX', 600_000);
const releaseForeignLock = (uid: string) => env.redis.del(`${env.prefix}:lock:${uid}`);

const ledgerHas = async (rewardId: string): Promise<boolean> =>
  (await env.pool.query('select 1 from ledger_entries where operation_id = $1', [rewardId])).rowCount === 1;

const conflictEntries = async (batchId: string) =>
  (await listDeadLetters(env.pool, { batchId, reason: 'CONFLICT', state: 'any' })).length;

/** `count` uids starting with `tag` that map to the same shard (so that they share one chunk job). */
function sameShardUids(tag: string, count: number): string[] {
  const shard = shardOf(`${tag}-0`, 8);
  const uids: string[] = [];
  for (let n = 0; uids.length < count; n += 1) if (shardOf(`${tag}-${n}`, 8) === shard) uids.push(`${tag}-${n}`);
  return uids;
}

/** Attempts BullMQ has made of the (only) chunk job of `batchId`. */
async function attemptsMade(windfall: Windfall, batchId: string, uid: string): Promise<number> {
  const job = await windfall.queues.shard(shardOf(uid, 8)).getJob(chunkJobId(batchId, 0));
  return job?.attemptsMade ?? 0;
}

/**
 * Batch A credits R1 (10) to U, then U's and W's locks are taken by another service; batch B conflicts on R1 and
 * adds R2 for U, R3 for V and R4 for W (one chunk: the three users share a shard).
 */
async function stage(windfall: Windfall, tag: string): Promise<{ u: string; v: string; w: string; batchB: string }> {
  const [u, v, w] = sameShardUids(tag, 3) as [string, string, string];
  await windfall.producer.enqueueRewards([{ rewardId: `${tag}-R1`, uid: u, amount: 10 }], { batchId: `${tag}-A` });
  await waitForBatchDone(env.pool, `${tag}-A`);
  await holdForeignLock(u);
  await holdForeignLock(w);
  const batchB = `${tag}-B`;
  await windfall.producer.enqueueRewards(
    [
      { rewardId: `${tag}-R1`, uid: u, amount: 20 }, // same id, other amount: a conflict
      { rewardId: `${tag}-R2`, uid: u, amount: 5 },
      { rewardId: `${tag}-R3`, uid: v, amount: 7 },
      { rewardId: `${tag}-R4`, uid: w, amount: 3 },
    ],
    { batchId: batchB },
  );
  return { u, v, w, batchB };
}

async function expectSettledExactly(tag: string, batchB: string, u: string, v: string, w: string): Promise<void> {
  const report = await waitForBatchDone(env.pool, batchB, 30_000);
  expect(report).toMatchObject({
    total: 4,
    applied: 3,
    duplicate: 0,
    deadLettered: 1,
    pending: 0,
    status: 'completed_with_failures',
  });
  const entries = await listDeadLetters(env.pool, { batchId: batchB, state: 'any' });
  expect(entries.map((entry) => [entry.uid, entry.reason, entry.rewards.map((r) => r.rewardId)])).toEqual([
    [u, 'CONFLICT', [`${tag}-R1`]],
  ]);
  const all = await balances(env.pool);
  expect([all.get(u), all.get(v), all.get(w)]).toEqual([15n, 7n, 3n]);
  expect(await ledgerMismatches(env.pool)).toEqual([]);
  await expect
    .poll(
      async () =>
        (await env.pool.query('select status from reward_batches where batch_id = $1', [batchB])).rows[0].status,
    )
    .toBe('completed_with_failures');
}

describe('a conflict dead-lettered on a later attempt while the same user still has rewards to apply', () => {
  it("applies the user's other rewards on the next attempt (the issue's exact sequence)", async () => {
    const windfall = await env.open({
      rewardLockPolicy: { name: 'reward', retries: 1, initialDelayMs: 50, factor: 1.5, ttlMs: 60_000 },
      jobAttempts: 3,
      jobBackoffMs: 1000,
      recoveryIntervalMs: 0,
    });
    await windfall.createWorker().start();
    const { u, v, w, batchB } = await stage(windfall, 'rc');
    // attempt 1: U's and W's locks are busy, V is applied
    await eventually(() => ledgerHas('rc-R3'), 'V applied by the first attempt');
    await releaseForeignLock(w);
    // attempt 2 finds U's lock still busy (a worker with a ledger pre-check dead-letters R1 as CONFLICT then,
    // while R2 is still pending)
    await eventually(
      async () => (await conflictEntries(batchB)) === 1 || (await attemptsMade(windfall, batchB, u)) >= 2,
      'the second attempt to end',
    );
    expect(await ledgerHas('rc-R2')).toBe(false);
    await releaseForeignLock(u);
    // attempt 3: R2 must still be applied
    await expectSettledExactly('rc', batchB, u, v, w);

    // replaying the dead letters changes nothing: R1 conflicts again
    const replay = await windfall.deadLetters.replay({ batchId: batchB });
    expect(replay.replayed).toHaveLength(1);
    await eventually(
      async () => (await listDeadLetters(env.pool, { batchId: batchB, state: 'open' })).length === 1,
      'the replay of R1 to conflict again',
    );
    const all = await balances(env.pool);
    expect([all.get(u), all.get(v), all.get(w)]).toEqual([15n, 7n, 3n]);
    const books = await reconcile(env.pool, { strict: true });
    expect(books.mismatches).toEqual([]);
  }, 90_000);

  it('applies them after a worker stops (SIGTERM path) during the re-run that found the conflict', async () => {
    const overrides = { jobAttempts: 3, jobBackoffMs: 500, recoveryIntervalMs: 0, shutdownTimeoutMs: 500 };
    // the first worker gives up on busy locks at once, so the job is re-run (with the ledger pre-check)
    const first = await env.open({
      ...overrides,
      rewardLockPolicy: { name: 'reward', retries: 0, initialDelayMs: 50, factor: 1.5, ttlMs: 60_000 },
    });
    await first.createWorker().start();
    const { u, v, w, batchB } = await stage(first, 'rs');
    await eventually(
      async () => (await ledgerHas('rs-R3')) && (await attemptsMade(first, batchB, u)) >= 1,
      'V applied and the first attempt ended',
    );
    await first.close();
    await releaseForeignLock(w);

    // the second worker waits long for U's lock; it is stopped while waiting, after W's reward shows the re-run began
    const second = await env.open({
      ...overrides,
      rewardLockPolicy: { name: 'reward', retries: 10, initialDelayMs: 500, factor: 1.5, ttlMs: 60_000 },
    });
    await second.createWorker().start();
    await eventually(() => ledgerHas('rs-R4'), 'W applied by the re-run');
    expect(await ledgerHas('rs-R2')).toBe(false);
    // as on SIGTERM: U is interrupted (a worker with a ledger pre-check has dead-lettered R1 by then), the job is put
    // back without counting an attempt
    await second.close();

    await releaseForeignLock(u);
    const third = await env.open({
      ...overrides,
      rewardLockPolicy: { name: 'reward', retries: 10, initialDelayMs: 100, factor: 1.5, ttlMs: 60_000 },
    });
    await third.createWorker().start();
    await expectSettledExactly('rs', batchB, u, v, w);
  }, 90_000);
});
