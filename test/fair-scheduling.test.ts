import { describe, expect, it } from 'vitest';
import { chunkJobPriority } from '../src/queue/job-priority.js';
import { readQueueStats } from '../src/queue/queue-stats.js';
import { Admission } from '../src/settlement/admission.js';
import { rewardRows, waitForBatchDone } from './support/batches.js';
import { eventually, runCli } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

/** The batch's chunks in the order the worker finished them, as `<batch>#<turn>`. */
async function completionOrder(): Promise<string[]> {
  const { rows } = await env.pool.query<{ label: string }>(
    `select batch_id || '#' || (row_number() over (partition by batch_id, shard order by chunk_no) - 1) as label, completed_at
     from reward_chunks order by completed_at`,
  );
  return rows.map((row) => row.label);
}

describe('fair scheduling and priority', () => {
  it('orders lanes strictly and lets batches of a lane take turns', () => {
    expect(chunkJobPriority('high', 10_000)).toBeLessThan(chunkJobPriority('normal', 0));
    expect(chunkJobPriority('normal', 10_000)).toBeLessThan(chunkJobPriority('low', 0));
    expect(chunkJobPriority('normal', 0)).toBeLessThan(chunkJobPriority('normal', 1));
    expect(chunkJobPriority('high', 0)).toBeGreaterThanOrEqual(1);
    expect(chunkJobPriority('low', 10_000_000)).toBeLessThanOrEqual(2 ** 21);
  });

  it('admits waiting jobs into the settlement line by priority, then in arrival order', async () => {
    const admission = new Admission(10, () => 0);
    const signal = new AbortController().signal;
    const order: string[] = [];
    const leaves = new Map<string, () => void>();
    const first = await admission.enter(signal, chunkJobPriority('normal', 7)); // loading: the others wait
    const jobs: [string, number][] = [
      ['big#8', chunkJobPriority('normal', 8)],
      ['small#0', chunkJobPriority('normal', 0)],
      ['low#0', chunkJobPriority('low', 0)],
      ['urgent#0', chunkJobPriority('high', 0)],
      ['other#0', chunkJobPriority('normal', 0)],
    ];
    for (const [name, rank] of jobs) {
      void admission.enter(signal, rank).then((leave) => {
        order.push(name);
        leaves.set(name, leave);
      });
    }
    const settle = () => new Promise((resolve) => setImmediate(resolve));
    await settle();
    expect(order).toEqual([]); // one job loads at a time
    first();
    for (let admitted = 1; admitted <= jobs.length; admitted += 1) {
      await settle();
      expect(order).toHaveLength(admitted);
      leaves.get(order[admitted - 1]!)!();
    }
    expect(order).toEqual(['urgent#0', 'small#0', 'other#0', 'big#8', 'low#0']);
  });

  it('runs queued work as high first, then normal batches taking turns chunk by chunk, then low', async () => {
    // one shard, one job at a time: the order the worker takes jobs in is the order they finish
    const windfall = await env.open({ shards: 1, chunkSize: 50 });
    const enqueue = (batchId: string, count: number, priority?: string) =>
      windfall.producer.enqueueRewards(
        rewardRows(count, (n) => ({ rewardId: `${batchId}-${n}`, uid: `${batchId}-u${n}`, amount: 1 })),
        { batchId, ...(priority !== undefined ? { priority } : {}) },
      );
    // queued before any worker runs: the big normal batch first, the high one last
    await enqueue('big', 400); // 8 chunks
    await enqueue('late', 100, 'low'); // 2 chunks
    await enqueue('small', 50); // 1 chunk
    const viaCli = await runCli(
      ['enqueue', '--file', '-', '--format', 'jsonl', '--batch-id', 'urgent', '--priority', 'high'],
      env.env({ WINDFALL_SHARDS: '1', WINDFALL_CHUNK_SIZE: '50' }),
      rewardRows(100, (n) => ({ rewardId: `urgent-${n}`, uid: `urgent-u${n}`, amount: 1 }))
        .map((row) => JSON.stringify(row))
        .join('\n'),
    );
    expect(viaCli.code, viaCli.stderr).toBe(0);

    await windfall.createWorker({ jobsPerShard: 1 }).start();
    for (const batchId of ['big', 'late', 'small', 'urgent']) await waitForBatchDone(env.pool, batchId);
    expect(await completionOrder()).toEqual([
      'urgent#0',
      'urgent#1', // high goes ahead of everything queued before it
      'big#0',
      'small#0', // a batch's first chunk takes its turn beside the big batch's first
      'big#1',
      'big#2',
      'big#3',
      'big#4',
      'big#5',
      'big#6',
      'big#7',
      'late#0',
      'late#1', // low waits for the normal lane
    ]);
  });

  it('windfall queues gives the age of the oldest waiting job, not of the job that runs next', async () => {
    const windfall = await env.open({ shards: 1, chunkSize: 10 });
    const rows = (batchId: string) =>
      rewardRows(30, (n) => ({ rewardId: `${batchId}-${n}`, uid: `${batchId}-u${n}`, amount: 1 }));
    await windfall.producer.enqueueRewards(rows('bulk'), { batchId: 'bulk', priority: 'low' });
    const bulkEnqueued = Date.now();
    await eventually(() => Date.now() > bulkEnqueued + 50, 'the clock to move on');
    await windfall.producer.enqueueRewards(rows('fresh'), { batchId: 'fresh' }); // runs first, but is younger
    const asked = Date.now();
    const [shard] = await readQueueStats(windfall.queues);
    expect(shard!.waiting).toBe(6);
    expect(shard!.oldestWaitingMs).toBeGreaterThanOrEqual(asked - bulkEnqueued);
  });

  it('a small batch enqueued while a big one runs completes long before the big one', async () => {
    const windfall = await env.open({ shards: 2, chunkSize: 100 });
    await windfall.createWorker().start();
    await windfall.producer.enqueueRewards(
      rewardRows(20_000, (n) => ({ rewardId: `b-${n}`, uid: `b-u${n % 5000}`, amount: 1 })),
      { batchId: 'b' },
    );
    const openChunks = async (batchId: string): Promise<number> =>
      (
        await env.pool.query<{ n: number }>(
          'select count(*)::int as n from reward_chunks where batch_id = $1 and completed_at is null',
          [batchId],
        )
      ).rows[0]!.n;
    const bigChunks = (
      await env.pool.query<{ n: number }>(`select count(*)::int as n from reward_chunks where batch_id = 'b'`)
    ).rows[0]!.n;
    // enqueue once the big batch is under way (observed progress, not time)
    await eventually(async () => (await openChunks('b')) < bigChunks, 'the big batch to start');
    await windfall.producer.enqueueRewards(
      rewardRows(100, (n) => ({ rewardId: `s-${n}`, uid: `s-u${n}`, amount: 1 })),
      { batchId: 's' },
    );
    await eventually(async () => (await openChunks('s')) === 0, 'the small batch to complete');
    // the small batch waited for the chunks running when it came (2 per shard), not for the big batch's queue
    expect(await openChunks('b')).toBeGreaterThan(bigChunks / 2);
    await waitForBatchDone(env.pool, 'b');
    expect(await waitForBatchDone(env.pool, 's')).toMatchObject({ applied: 100, status: 'completed' });
  });
});
