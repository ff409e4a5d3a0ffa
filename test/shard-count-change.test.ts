import { describe, expect, it } from 'vitest';
import { rewardRows, waitForBatchDone } from './support/batches.js';
import { eventually, runCli, startCli } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

describe('lowering WINDFALL_SHARDS while batches are open', () => {
  it('a worker refuses to start (exit 2) naming the batches and the shard count they need; it starts once they are done', async () => {
    const windfall = await env.open({ recoveryIntervalMs: 0 });
    const batch = await windfall.producer.enqueueRewards(
      rewardRows(64, (n) => ({ rewardId: `sc-${n}`, uid: `sc-u${n}`, amount: 1 })),
      { batchId: 'sc-batch' },
    );
    const { rows } = await env.pool.query<{ chunks: number }>(
      `select count(*)::int as chunks from reward_chunks where batch_id = 'sc-batch' and shard >= 2`,
    );
    expect(rows[0]!.chunks).toBeGreaterThan(0);

    const lowered = env.env({ WINDFALL_SHARDS: '2', WINDFALL_RECOVERY_INTERVAL_MS: '0', LOG_LEVEL: 'info' });
    const refused = startCli(['worker'], lowered);
    await eventually(
      () => refused.child.exitCode !== null || refused.output().includes('worker started'),
      'the worker to start or exit',
    );
    if (refused.child.exitCode === null) refused.child.kill('SIGTERM');
    const code = await refused.exited;
    expect(code, refused.output()).toBe(2);
    const output = refused.output();
    expect(output).toContain(
      'WINDFALL_SHARDS: set to 2, but 1 open batch has chunk jobs in shard queues no worker of this setting reads',
    );
    expect(output).toContain(`sc-batch (staged with 8 shards; ${rows[0]!.chunks} open chunk`);
    expect(output).toContain('Start the workers with WINDFALL_SHARDS=8 until these batches complete');
    // and the recovery path does not put those jobs into other queues: `reconcile --resume` reports them (exit 1)
    const resume = await runCli(['reconcile', '--resume'], env.env({ WINDFALL_SHARDS: '2' }));
    expect(resume.code, resume.stderr).toBe(1);
    expect(resume.stderr).toContain('not re-added (exit 1): WINDFALL_SHARDS is 2, but 1 open batch has chunk jobs');

    // as told: workers with the batch's shard count finish it; then the lower count starts
    const eight = startCli(['worker'], env.env({ WINDFALL_RECOVERY_INTERVAL_MS: '0' }));
    expect(await waitForBatchDone(env.pool, 'sc-batch', 60_000)).toMatchObject({ applied: batch.total, pending: 0 });
    await eventually(async () => {
      const open = await env.pool.query(
        `select 1 from reward_chunks where batch_id = 'sc-batch' and completed_at is null`,
      );
      return open.rowCount === 0;
    }, 'every chunk of the batch to be complete');
    eight.child.kill('SIGTERM');
    expect(await eight.exited).toBe(0);

    const two = startCli(['worker'], lowered);
    await eventually(() => two.output().includes('worker started'), 'the worker with WINDFALL_SHARDS=2 to start');
    two.child.kill('SIGTERM');
    expect(await two.exited, two.output()).toBe(0);
  });
});
