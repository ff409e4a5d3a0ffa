import { describe, expect, it } from 'vitest';
import { markReplayed } from '../src/dead-letters/dead-letter-store.js';
import { recordDeadLetters } from './support/dead-letter-fixtures.js';
import { silentLogger } from '../src/log/logger.js';
import { chunkJobId, replayJobId } from '../src/queue/job-data.js';
import { shardOf } from '../src/queue/shard-routing.js';
import type { Windfall } from '../src/runtime/windfall.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import {
  RecoveryWatchdog,
  type RecoveryWatchdogOptions,
  type WatchdogTick,
} from '../src/reconcile/recovery-watchdog.js';
import { resumeOpenWork } from '../src/reconcile/resume-work.js';
import { eventually } from './support/cli.js';
import { balances, rewardRows, waitForBatchDone } from './support/batches.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

/** Removes every job of every shard queue, as a Redis restart without AOF does. */
async function loseEveryJob(windfall: Windfall): Promise<void> {
  for (const { queue } of windfall.queues.all()) await queue.obliterate({ force: true });
}

/** A dead-letter entry of `batchId` for `uid` holding `rewards`, marked replayed (its replay job then lost). */
async function replayedEntry(batchId: string, uid: string, rewards: { rewardId: string; amount: bigint }[]) {
  const [entry] = await recordDeadLetters(env.pool, [
    {
      source: `test:chunk:${batchId}:${uid}`,
      batchId,
      chunkNo: 0,
      replayOf: null,
      uid,
      shard: shardOf(uid, 8),
      rewards: rewards.map((reward) => ({ ...reward, uid, description: null })),
      reason: 'LOCK_BUSY',
      error: 'lock busy (test)',
      attempts: 3,
    },
  ]);
  expect(await markReplayed(env.pool, entry!.id)).toBe('replayed');
  return entry!;
}

describe('the recovery watchdog: when a replay is finished', () => {
  it('resumes a replay that wrote a CONFLICT child for one reward and lost its job before the other; reconcile calls the other in flight', async () => {
    const windfall = await env.open({ recoveryIntervalMs: 0 });
    // rp-r1 was credited elsewhere with another amount (a conflict); rp-r3 elsewhere with the same (a duplicate)
    await windfall.wallet.addBalance('rp-u', 99, { operationId: 'rp-r1' });
    await windfall.wallet.addBalance('rp-v', 4, { operationId: 'rp-r3' });
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'rp-r1', uid: 'rp-u', amount: 5 },
        { rewardId: 'rp-r2', uid: 'rp-u', amount: 7 },
        { rewardId: 'rp-r3', uid: 'rp-v', amount: 4 },
      ],
      { batchId: 'rp-batch' },
    );
    // the batch's chunks ran and dead-lettered both users; their entries were replayed
    await env.pool.query(`update reward_chunks set completed_at = now() where batch_id = 'rp-batch'`);
    await loseEveryJob(windfall);
    const both = await replayedEntry('rp-batch', 'rp-u', [
      { rewardId: 'rp-r1', amount: 5n },
      { rewardId: 'rp-r2', amount: 7n },
    ]);
    const duplicateOnly = await replayedEntry('rp-batch', 'rp-v', [{ rewardId: 'rp-r3', amount: 4n }]);
    // the replay of `both` dead-lettered rp-r1 as CONFLICT, then lost its job before applying rp-r2
    await recordDeadLetters(env.pool, [
      {
        source: `test:replay:${both.id}:CONFLICT`,
        batchId: 'rp-batch',
        chunkNo: null,
        replayOf: both.id,
        uid: 'rp-u',
        shard: both.shard,
        rewards: [{ rewardId: 'rp-r1', uid: 'rp-u', amount: 5n, description: null }],
        reason: 'CONFLICT',
        error: 'rewardId already used with a different user or amount (test)',
        attempts: 1,
      },
    ]);

    const books = await reconcile(env.pool);
    // rp-r2 (nothing holds it) and rp-r3 (credited elsewhere, not yet recorded as this batch's duplicate) are in flight
    expect(books.rewards).toMatchObject({ deadLettered: 1, inFlight: 2, unsettled: 0 });
    const resumed = await resumeOpenWork(env.pool, windfall.queues, { minAgeMs: 0 });
    expect(
      resumed.replays
        .map((job) => ({ id: job.deadLetterId, was: job.was }))
        .sort((a, b) => Number(a.id) - Number(b.id)),
    ).toEqual([
      { id: both.id, was: 'missing' },
      { id: duplicateOnly.id, was: 'missing' },
    ]);

    await windfall.createWorker().start();
    expect(await waitForBatchDone(env.pool, 'rp-batch', 30_000)).toMatchObject({
      applied: 1,
      duplicate: 1,
      deadLettered: 1,
      pending: 0,
    });
    expect((await balances(env.pool)).get('rp-u')).toBe(99n + 7n);
    // finished now: nothing to resume, nothing in flight
    await eventually(
      async () => (await resumeOpenWork(env.pool, windfall.queues, { minAgeMs: 0, dryRun: true })).checkedReplays === 0,
      'the replays to finish',
    );
    const after = await reconcile(env.pool, { strict: true });
    expect(after.mismatches).toEqual([]);
    expect(after.rewards).toMatchObject({ applied: 1, duplicate: 1, deadLettered: 1, inFlight: 0 });
  });
});

describe('the recovery watchdog: lost work comes back within one interval', () => {
  it('re-adds the lost jobs of handed-over batches and replays whatever their age; leaves a batch still being handed over alone', async () => {
    const windfall = await env.open({ recoveryIntervalMs: 0 });
    const handed = await windfall.producer.enqueueRewards(
      rewardRows(40, (n) => ({ rewardId: `ma-h${n}`, uid: `ma-u${n}`, amount: 1 })),
      { batchId: 'ma-handed' },
    );
    await windfall.producer.enqueueRewards(
      rewardRows(40, (n) => ({ rewardId: `ma-s${n}`, uid: `ma-u${n}`, amount: 1 })),
      { batchId: 'ma-handing' },
    );
    // ma-handing's producer is still adding its jobs (enqueued_at not set yet)
    await env.pool.query(`update reward_batches set enqueued_at = null where batch_id = 'ma-handing'`);
    const entry = await replayedEntry('ma-other', 'ma-x', [{ rewardId: 'ma-x1', amount: 3n }]);
    await loseEveryJob(windfall);

    // the default minimum age (60 s) is far more than these seconds-old batches and replay have
    const report = await resumeOpenWork(env.pool, windfall.queues);
    expect(report.chunks.map((job) => job.batchId)).toEqual(Array(handed.chunks).fill('ma-handed'));
    expect(report.chunks.every((job) => job.was === 'missing')).toBe(true);
    expect(report.replays.map((job) => job.deadLetterId)).toEqual([entry.id]);
    expect(report.handedOver).toEqual([]);
    for (const job of report.chunks) expect(await windfall.queues.shard(job.shard).getJob(job.jobId)).toBeDefined();
    expect(await windfall.queues.shard(entry.shard).getJob(replayJobId(entry.id))).toBeDefined();

    // once it is as old as the minimum age, the half-handed-over batch gets its jobs and is marked handed over
    const later = await resumeOpenWork(env.pool, windfall.queues, { minAgeMs: 0 });
    expect(new Set(later.chunks.map((job) => job.batchId))).toEqual(new Set(['ma-handing']));
    expect(later.handedOver).toEqual(['ma-handing']);
    expect(later.replays).toEqual([]);
  });

  it('does not re-run a chunk that completed between the PostgreSQL read and the Redis check', async () => {
    const windfall = await env.open({ recoveryIntervalMs: 0 });
    const batch = await windfall.producer.enqueueRewards([{ rewardId: 'rr-1', uid: 'rr-u', amount: 1 }], {
      batchId: 'rr-batch',
    });
    expect(batch.chunks).toBe(1);
    const jobId = chunkJobId('rr-batch', 0);
    const queue = windfall.queues.shard(shardOf('rr-u', 8));
    // the chunk's worker finishes just as the scan looks at Redis: the chunk is marked complete, then its job leaves
    // (the scan read the chunk as open a moment before)
    const connection = windfall.queues.connection;
    const pipeline = connection.pipeline.bind(connection);
    let finished = false;
    connection.pipeline = (...args: Parameters<typeof pipeline>) => {
      const commands = pipeline(...args);
      const exec = commands.exec.bind(commands);
      commands.exec = async () => {
        if (!finished) {
          finished = true;
          await env.pool.query(`update reward_chunks set completed_at = now() where batch_id = 'rr-batch'`);
          await queue.remove(jobId);
        }
        return exec();
      };
      return commands;
    };
    try {
      const report = await resumeOpenWork(env.pool, windfall.queues, { minAgeMs: 0 });
      expect(finished).toBe(true);
      expect(report.chunks.filter((job) => job.batchId === 'rr-batch')).toEqual([]);
    } finally {
      connection.pipeline = pipeline;
    }
    expect(await queue.getJob(jobId)).toBeUndefined();
  });

  /**
   * A watchdog over this test's prefix that records its ticks and numbers its scans as they start (a tick is recorded
   * when its scan ends, so a scan that started before some event may end after it). `events` can hold a scan open.
   */
  function watchdog(windfall: Windfall, intervalMs: number, events?: RecoveryWatchdogOptions['events']) {
    const ticks: WatchdogTick['outcome'][] = [];
    /** Scans that held the guard, by the number of the scan (1, 2, …) in the order they started. */
    const reports: { scan: number; batches: string[] }[] = [];
    let started = 0;
    const dog = new RecoveryWatchdog({
      pool: env.pool,
      queues: windfall.queues,
      redis: env.redis,
      prefix: env.prefix,
      intervalMs,
      logger: silentLogger(),
      events,
      onTick: (tick) => ticks.push(tick.outcome),
    });
    const scanOnce = dog.scanOnce.bind(dog);
    dog.scanOnce = async () => {
      started += 1;
      const scan = started;
      const report = await scanOnce();
      if (report) reports.push({ scan, batches: report.chunks.map((job) => job.batchId) });
      return report;
    };
    return { dog, ticks, reports, started: () => started };
  }

  it('a single watchdog scans at every tick (500 ms interval), and jobs lost meanwhile are back at its next scan', async () => {
    const windfall = await env.open({ recoveryIntervalMs: 0 });
    const { dog, ticks, reports, started } = watchdog(windfall, 500);
    dog.start();
    try {
      await eventually(() => ticks.length >= 8, '8 ticks of the watchdog');
      // every tick scanned, or found its previous scan still running (a busy machine); never the guard taken
      expect(ticks.slice(0, 8).filter((tick) => tick !== 'scanned' && tick !== 'still-scanning')).toEqual([]);
      expect(ticks.slice(0, 8).filter((tick) => tick === 'scanned').length).toBeGreaterThanOrEqual(4);

      await windfall.producer.enqueueRewards([{ rewardId: 'wd-1', uid: 'wd-u', amount: 1 }], { batchId: 'wd-batch' });
      await loseEveryJob(windfall);
      const lostAfter = started();
      await eventually(() => reports.some((report) => report.scan > lostAfter), 'a scan started after the loss');
      // the first scan that started after the loss re-added it: one scan, not two
      expect(reports.find((report) => report.scan > lostAfter)!.batches).toContain('wd-batch');
      expect(await windfall.queues.shard(shardOf('wd-u', 8)).getJob(chunkJobId('wd-batch', 0))).toBeDefined();
    } finally {
      await dog.stop();
    }
  });

  it('renews its guard while a scan runs longer than the guard lasts, so no second process scans meanwhile', async () => {
    const windfall = await env.open({ recoveryIntervalMs: 0 });
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let scanHeld = false;
    const slow = watchdog(windfall, 300, {
      resumePending: async () => {
        scanHeld = true;
        await held;
        return 0;
      },
    });
    const other = watchdog(windfall, 300);
    slow.dog.start();
    try {
      await eventually(() => scanHeld, 'the first scan to be held open');
      other.dog.start();
      // 5 ticks of the held scan span more than the guard's two intervals
      const stillFrom = slow.ticks.length;
      await eventually(
        () =>
          slow.ticks.slice(stillFrom).filter((tick) => tick === 'still-scanning').length >= 5 &&
          other.ticks.length >= 4,
        '5 ticks during the held scan',
      );
      expect(other.started()).toBeGreaterThanOrEqual(4);
      expect(other.reports).toEqual([]);
      expect(other.ticks.filter((tick) => tick !== 'held-elsewhere')).toEqual([]);
    } finally {
      release();
      await other.dog.stop();
      await slow.dog.stop();
    }
  });

  it('a second process takes over when the holder stops, and when the holder vanishes (once its guard expires)', async () => {
    const windfall = await env.open({ recoveryIntervalMs: 0 });
    const first = watchdog(windfall, 500);
    const second = watchdog(windfall, 500);
    first.dog.start();
    second.dog.start();
    const dogs = [first, second];
    try {
      await eventually(() => first.ticks.length >= 3 && second.ticks.length >= 3, '3 ticks of each watchdog');
      const holder = dogs.find((dog) => dog.ticks.includes('scanned'))!;
      const other = dogs.find((dog) => dog !== holder)!;
      // one process scans, the other skips
      expect(other.ticks.filter((tick) => tick === 'scanned')).toEqual([]);
      expect(other.ticks).toContain('held-elsewhere');

      await holder.dog.stop();
      const stoppedAt = other.ticks.length;
      await eventually(() => other.ticks.length >= stoppedAt + 3, '3 more ticks of the other watchdog');
      // it took over at its first tick after the holder stopped, and kept it
      expect(other.ticks.slice(stoppedAt, stoppedAt + 3).filter((tick) => tick === 'held-elsewhere')).toEqual([]);
      await other.dog.stop();

      // a holder that vanished (a killed process) leaves its guard behind: taken over once it expires (2 intervals)
      await env.redis.set(`${env.prefix}:recovery-guard`, 'a-process-that-was-killed', 'PX', 1000);
      const third = watchdog(windfall, 500);
      third.dog.start();
      try {
        await eventually(() => third.ticks.includes('scanned'), 'the third watchdog to take over');
        expect(await env.redis.get(`${env.prefix}:recovery-guard`)).not.toBe('a-process-that-was-killed');
        const tookOverAt = third.ticks.indexOf('scanned');
        // the guard lasted 1 s: at most its first two ticks (500 ms apart) found it held
        expect(third.ticks.slice(0, tookOverAt).filter((tick) => tick === 'held-elsewhere').length).toBeLessThanOrEqual(
          2,
        );
        await eventually(() => third.ticks.length >= tookOverAt + 4, '3 more ticks of the third watchdog');
        expect(third.ticks.slice(tookOverAt).filter((tick) => tick === 'held-elsewhere')).toEqual([]);
      } finally {
        await third.dog.stop();
      }
    } finally {
      for (const dog of dogs) await dog.dog.stop();
    }
  });
});

describe('the recovery watchdog and a lowered WINDFALL_SHARDS', () => {
  it('reports open chunks on shards beyond the configured count instead of re-adding their jobs to queues no worker reads', async () => {
    const eight = await env.open({ recoveryIntervalMs: 0 });
    const batch = await eight.producer.enqueueRewards(
      rewardRows(64, (n) => ({ rewardId: `sh-${n}`, uid: `sh-u${n}`, amount: 1 })),
      { batchId: 'sh-batch' },
    );
    await loseEveryJob(eight);
    const { rows } = await env.pool.query<{ shard: number; chunks: number }>(
      `select shard, count(*)::int as chunks from reward_chunks where batch_id = 'sh-batch' group by shard order by shard`,
    );
    const beyond = rows.filter((row) => row.shard >= 2).reduce((sum, row) => sum + row.chunks, 0);
    expect(beyond).toBeGreaterThan(0);

    const two = await env.open({ recoveryIntervalMs: 0, shards: 2 });
    const report = await resumeOpenWork(env.pool, two.queues, { minAgeMs: 0 });
    const resumed = report.chunks.filter((job) => job.batchId === 'sh-batch');
    const stranded = report.stranded.filter((chunk) => chunk.batchId === 'sh-batch');
    expect(report.chunks.every((job) => job.shard < 2)).toBe(true);
    expect(resumed.length + stranded.length).toBe(batch.chunks);
    expect(stranded).toHaveLength(beyond);
    expect(stranded.every((chunk) => chunk.shard >= 2 && chunk.stagedShards === 8)).toBe(true);
    for (let shard = 2; shard < 8; shard += 1) {
      const counts = await eight.queues.shard(shard).getJobCounts();
      expect(
        Object.values(counts).reduce((a, b) => a + b, 0),
        `jobs in shard-${shard}`,
      ).toBe(0);
    }
  });
});
