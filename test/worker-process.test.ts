import { describe, expect, it } from 'vitest';
import { getBatchReport } from '../src/status/batch-status.js';
import { useTestEnvironment } from './support/environment.js';
import { eventually, startCli } from './support/cli.js';
import { balances, ledgerMismatches, rewardRows, waitForBatchDone } from './support/batches.js';

const env = useTestEnvironment();

describe('worker processes', () => {
  it('drains on SIGTERM: the in-flight user finishes, the process exits 0, nothing is dead-lettered', async () => {
    const producer = await env.open();
    // one user's lock is held elsewhere for 1.5 s, so its job is in flight when the signal comes
    await env.redis.set(`${env.prefix}:lock:drain-user`, 'elsewhere', 'PX', 1500);
    await producer.producer.enqueueRewards(
      [
        { rewardId: 'drain-1', uid: 'drain-user', amount: 9 },
        ...rewardRows(50, (n) => ({ rewardId: `drain-ok-${n}`, uid: `drain-${n}`, amount: 1 })),
      ],
      { batchId: 'drain-batch' },
    );
    const worker = startCli(['worker'], env.env({ LOG_LEVEL: 'info' }));
    await eventually(
      async () => ((await getBatchReport(env.pool, 'drain-batch'))?.applied ?? 0) >= 50,
      'the free users to be applied',
    );
    worker.child.kill('SIGTERM');
    const code = await worker.exited;
    expect(code, worker.output()).toBe(0);
    expect(worker.output()).toContain('worker stopped');
    const report = await getBatchReport(env.pool, 'drain-batch');
    expect(report).toMatchObject({ applied: 51, deadLettered: 0, pending: 0 });
  });

  it('puts unfinished work back when the drain deadline passes, and a new worker finishes it', async () => {
    const producer = await env.open();
    // held long enough that even a slow start finds it busy; released by hand before the second worker
    await env.redis.set(`${env.prefix}:lock:slow-user`, 'elsewhere', 'PX', 60_000);
    await producer.producer.enqueueRewards([{ rewardId: 'slow-1', uid: 'slow-user', amount: 4 }], {
      batchId: 'deadline-batch',
    });
    const worker = startCli(['worker'], env.env({ WINDFALL_SHUTDOWN_TIMEOUT_MS: '300', LOG_LEVEL: 'info' }));
    await eventually(() => worker.output().includes('worker started'), 'the worker to start');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stoppedAt = Date.now();
    worker.child.kill('SIGTERM');
    expect(await worker.exited, worker.output()).toBe(0);
    // far below the default 30 s drain and the 60 s hold: the 300 ms deadline ended the drain
    expect(Date.now() - stoppedAt).toBeLessThan(15_000);
    expect((await getBatchReport(env.pool, 'deadline-batch'))?.pending).toBe(1);
    await env.redis.del(`${env.prefix}:lock:slow-user`);
    const next = startCli(['worker'], env.env());
    const report = await waitForBatchDone(env.pool, 'deadline-batch', 30_000);
    expect(report).toMatchObject({ applied: 1, deadLettered: 0 });
    next.child.kill('SIGTERM');
    expect(await next.exited).toBe(0);
  });

  it('loses nothing and credits nothing twice when workers are killed with SIGKILL mid-batch, twice', async () => {
    const producer = await env.open({ chunkSize: 100 });
    const rows = rewardRows(6000, (n) => ({ rewardId: `kill-${n}`, uid: `kill-u${n % 1500}`, amount: 1 + (n % 13) }));
    const expected = new Map<string, bigint>();
    for (const row of rows) expected.set(row.uid, (expected.get(row.uid) ?? 0n) + BigInt(row.amount));
    await producer.producer.enqueueRewards(rows, { batchId: 'kill-batch' });
    // a killed worker's user locks live until their TTL: keep it short so the test does not wait a minute
    const workerEnv = env.env({
      WINDFALL_JOB_LOCK_MS: '2000',
      WINDFALL_CONCURRENCY: '4',
      WINDFALL_REWARD_LOCK_TTL_MS: '3000',
    });

    for (const threshold of [1000, 2500]) {
      const victim = startCli(['worker'], workerEnv);
      await eventually(
        async () => ((await getBatchReport(env.pool, 'kill-batch'))?.applied ?? 0) >= threshold,
        `${threshold} rewards applied`,
        60_000,
      );
      victim.child.kill('SIGKILL');
      expect(await victim.exited).toBe('SIGKILL');
    }
    const survivor = startCli(['worker'], workerEnv);
    const report = await waitForBatchDone(env.pool, 'kill-batch', 120_000);
    survivor.child.kill('SIGTERM');
    expect(await survivor.exited).toBe(0);

    expect(report).toMatchObject({ total: 6000, applied: 6000, duplicate: 0, deadLettered: 0, status: 'completed' });
    const actual = await balances(env.pool);
    for (const [uid, amount] of expected) expect(actual.get(uid), uid).toBe(amount);
    expect(await ledgerMismatches(env.pool)).toEqual([]);
    const { rows: counts } = await env.pool.query(
      `select count(*)::int as n, count(distinct operation_id)::int as d from ledger_entries where batch_id = 'kill-batch'`,
    );
    expect(counts[0]).toEqual({ n: 6000, d: 6000 });
  }, 180_000);
});
