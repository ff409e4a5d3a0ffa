import { describe, expect, it } from 'vitest';
import { getDeadLetter, listDeadLetters, purgeDeadLetters } from '../src/dead-letters/dead-letter-store.js';
import { replayJobId, type ReplayJobData } from '../src/queue/job-data.js';
import type { Windfall } from '../src/runtime/windfall.js';
import { balances, waitForBatchDone } from './support/batches.js';
import { eventually } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

/** A batch whose only user's lock is held elsewhere, dead-lettered (LOCK_BUSY) at once; the lock is then freed. */
async function deadLettered(windfall: Windfall, tag: string): Promise<{ id: string; data: ReplayJobData }> {
  await env.redis.set(`${env.prefix}:lock:${tag}-u`, 'other-service', 'PX', 600_000);
  await windfall.producer.enqueueRewards(
    [
      { rewardId: `${tag}-r1`, uid: `${tag}-u`, amount: 5 },
      { rewardId: `${tag}-r2`, uid: `${tag}-u`, amount: 6 },
    ],
    { batchId: tag },
  );
  await waitForBatchDone(env.pool, tag);
  await env.redis.del(`${env.prefix}:lock:${tag}-u`);
  const [entry] = await listDeadLetters(env.pool, { batchId: tag });
  expect(entry).toMatchObject({ uid: `${tag}-u`, reason: 'LOCK_BUSY' });
  return {
    id: entry!.id,
    data: { kind: 'replay', deadLetterId: entry!.id, batchId: tag, uid: entry!.uid, shard: entry!.shard },
  };
}

async function runReplayJob(windfall: Windfall, data: ReplayJobData): Promise<void> {
  const queue = windfall.queues.shard(data.shard);
  await queue.add('replay', data, { jobId: replayJobId(data.deadLetterId) });
  await eventually(
    async () => (await (await queue.getJob(replayJobId(data.deadLetterId)))?.getState()) === 'completed',
    'the replay job to complete',
  );
}

describe('a replay job and its dead-letter entry', () => {
  it('credits nothing when the entry was purged after its replay was enqueued (the purge won)', async () => {
    const windfall = await env.open({
      jobAttempts: 1,
      rewardLockPolicy: { name: 'reward', retries: 0, initialDelayMs: 10, factor: 1, ttlMs: 60_000 },
    });
    await windfall.createWorker().start();
    const { id, data } = await deadLettered(windfall, 'pj');
    expect(await purgeDeadLetters(env.pool, { ids: [id] })).toEqual([id]);
    await runReplayJob(windfall, data);
    expect((await balances(env.pool)).get('pj-u')).toBeUndefined();
    const { rows } = await env.pool.query(`select 1 from ledger_entries where batch_id = 'pj'`);
    expect(rows).toHaveLength(0);
    expect(await getDeadLetter(env.pool, id)).toMatchObject({ state: 'purged' });
  });

  it('claims an entry still open (its replay command has not marked it yet) and applies it once', async () => {
    const windfall = await env.open({
      jobAttempts: 1,
      rewardLockPolicy: { name: 'reward', retries: 0, initialDelayMs: 10, factor: 1, ttlMs: 60_000 },
    });
    await windfall.createWorker().start();
    const { id, data } = await deadLettered(windfall, 'pk');
    await runReplayJob(windfall, data);
    expect((await balances(env.pool)).get('pk-u')).toBe(11n);
    expect(await getDeadLetter(env.pool, id)).toMatchObject({ state: 'replayed' });
    // a purge afterwards cannot take it back: it is no longer open
    expect(await purgeDeadLetters(env.pool, { ids: [id] })).toEqual([]);
    expect(await waitForBatchDone(env.pool, 'pk')).toMatchObject({ applied: 2, deadLettered: 0, status: 'completed' });
  });
});
