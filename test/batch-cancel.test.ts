import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setCampaignBudget, getCampaignReport } from '../src/campaign/campaign-budget.js';
import { claimEntry } from '../src/db/fences.js';
import { REWARD_POLICY } from '../src/lock/lock-policy.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import { getBatchReport } from '../src/status/batch-status.js';
import { getRewardReport } from '../src/status/reward-status.js';
import { rewardRows, waitForBatchDone } from './support/batches.js';
import { eventually, runCliJson } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { startServe, type ServeProcess } from './support/serve.js';

const env = useTestEnvironment();
let server: ServeProcess;
beforeAll(async () => {
  server = await startServe(env.env({ WINDFALL_RECOVERY_INTERVAL_MS: '0' }));
});
afterAll(async () => {
  await server?.stop();
});

const cli = (args: string[]) => runCliJson(args, env.env());

async function rewardsOf(batchId: string): Promise<{ uid: string; applied: number; staged: number }[]> {
  const { rows } = await env.pool.query<{ uid: string; applied: number; staged: number }>(
    `select i.uid, count(l.id)::int as applied, count(*)::int as staged
     from reward_batch_items i left join ledger_entries l on l.operation_id = i.reward_id and l.batch_id = i.batch_id
     where i.batch_id = $1 group by i.uid`,
    [batchId],
  );
  return rows;
}

describe('batch cancel', () => {
  it('stops a batch in flight: nothing applied after it, users whole, counts add up, idempotent, budget released', async () => {
    const TOTAL = 30_000;
    const windfall = await env.open({ chunkSize: 300, concurrency: 2, usersPerTransaction: 16 });
    await setCampaignBudget(windfall.database.pool, 'cx-campaign', '10000000');
    const rows = rewardRows(TOTAL, (n) => ({ rewardId: `cx-${n}`, uid: `cx-u${n % 3000}`, amount: 1 + (n % 5) }));
    await windfall.producer.enqueueRewards(rows, { batchId: 'cx', campaignId: 'cx-campaign' });
    // three users' locks are held elsewhere until the cancel is decided: the batch cannot complete before it, however
    // fast the worker and however slow the CLI's start (their jobs wait for the locks under the reward policy)
    const held = ['cx-u2997', 'cx-u2998', 'cx-u2999'];
    for (const uid of held) await env.holdLock(uid, 'other-service', 120_000);
    await windfall.createWorker().start();
    await eventually(async () => ((await getBatchReport(env.pool, 'cx'))?.applied ?? 0) >= TOTAL / 10, '10 % applied');

    const cancelled = await cli(['batch', 'cancel', 'cx', '--yes', '--reason', 'wrong campaign', '--json']);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.json).toMatchObject({ batchId: 'cx', status: 'cancelled', noop: false });
    const at = (await getBatchReport(env.pool, 'cx'))!;
    expect(at.applied).toBe(cancelled.json.applied);
    expect(at.applied).toBeLessThan(TOTAL);
    // the held users' jobs now take their locks: their statements find the fence moved and pay nothing
    await env.redis.del(...held.map((uid) => `${env.prefix}:lock:${uid}`));

    // the worker runs out its jobs (each finds its chunk closed, or its statements fenced): nothing more is paid
    const idle = async (): Promise<boolean> => {
      for (let shard = 0; shard < windfall.config.shards; shard += 1) {
        const counts = await windfall.queues.shard(shard).getJobCounts('waiting', 'prioritized', 'active', 'delayed');
        if (Object.values(counts).some((n) => n > 0)) return false;
      }
      return true;
    };
    await eventually(idle, 'the shard queues to drain', 60_000);
    const after = (await getBatchReport(env.pool, 'cx'))!;
    expect(after).toMatchObject({ status: 'cancelled', applied: at.applied, pending: 0 });
    expect(after.applied + after.cancelled + after.deadLettered + after.duplicate).toBe(TOTAL);
    expect(after.cancelled).toBe(cancelled.json.cancelled);
    // every user whole: all of its rewards of the batch applied, or none
    for (const user of await rewardsOf('cx')) {
      expect([0, user.staged], user.uid).toContain(user.applied);
      if (held.includes(user.uid)) expect(user.applied, `${user.uid} was held until the cancel`).toBe(0);
    }

    const again = await cli(['batch', 'cancel', 'cx', '--yes', '--json']);
    expect(again.json).toMatchObject({ status: 'cancelled', noop: true, cancelled: after.cancelled });
    const trail = await cli(['audit', '--action', 'batch.cancel', '--json']);
    expect(trail.json).toHaveLength(2);
    expect(trail.json[1]).toMatchObject({ target: 'batch:cx', details: { reason: 'wrong campaign' } });

    // the campaign keeps reserved only what the batch paid
    const { rows: paid } = await env.pool.query<{ sum: string }>(
      `select sum(amount)::text as sum from ledger_entries where batch_id = 'cx'`,
    );
    expect(await getCampaignReport(env.pool, 'cx-campaign')).toMatchObject({ reserved: paid[0]!.sum });
    // a reward it never paid says so
    const unpaid = (await rewardsOf('cx')).find((user) => user.applied === 0)!;
    const { rows: ids } = await env.pool.query<{ reward_id: string }>(
      `select reward_id from reward_batch_items where batch_id = 'cx' and uid = $1 limit 1`,
      [unpaid.uid],
    );
    expect(await getRewardReport(env.pool, ids[0]!.reward_id)).toMatchObject({ state: 'cancelled' });
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 180_000);

  it('refuses the replay of its dead-letter entries; a claimed replay finds it cancelled; a revert still works after', async () => {
    const windfall = await env.open({ jobAttempts: 1, rewardLockPolicy: { ...REWARD_POLICY, retries: 0 } });
    await env.holdLock('cr-busy', 'other-service');
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'cr-1', uid: 'cr-busy', amount: 5 },
        { rewardId: 'cr-2', uid: 'cr-busy2', amount: 6 },
        { rewardId: 'cr-3', uid: 'cr-free', amount: 7 },
      ],
      { batchId: 'cr' },
    );
    await env.holdLock('cr-busy2', 'other-service');
    await windfall.createWorker().start();
    expect(await waitForBatchDone(env.pool, 'cr')).toMatchObject({ applied: 1, deadLettered: 2 });
    const entries = await windfall.deadLetters.list({ batchId: 'cr' });
    // a batch with nothing pending: nothing to cancel
    const nothing = await cli(['batch', 'cancel', 'cr', '--yes', '--json']);
    expect(nothing.json).toMatchObject({ noop: true, cancelled: 0, status: 'completed_with_failures' });

    // one entry's replay is claimed (its job runs now): the batch is in flight again, and cancel stops that replay
    const claimed = entries.find((entry) => entry.uid === 'cr-busy2')!;
    expect(await claimEntry(env.pool, claimed.id)).toMatch(/^\d+$/);
    const stopped = await cli(['batch', 'cancel', 'cr', '--yes', '--json']);
    expect(stopped.json).toMatchObject({ status: 'cancelled', cancelled: 1, applied: 1, noop: false });
    expect(await getBatchReport(env.pool, 'cr')).toMatchObject({
      status: 'cancelled',
      applied: 1,
      deadLettered: 1,
      cancelled: 1,
      pending: 0,
    });
    // the replay's next attempt finds the batch cancelled; the open entry is never replayed
    expect(await claimEntry(env.pool, claimed.id)).toBeNull();
    const open = entries.find((entry) => entry.uid === 'cr-busy')!;
    const replay = await cli(['dlq', 'replay', open.id, '--json']);
    expect(replay.json.skipped).toEqual([expect.objectContaining({ id: open.id, state: 'cancelled' })]);
    // a revert after a cancel takes back what was applied; the cancelled rewards stay cancelled
    const reverted = await cli(['batch', 'revert', 'cr', '--yes', '--json']);
    expect(reverted.code, reverted.stderr).toBe(0);
    expect(await getBatchReport(env.pool, 'cr')).toMatchObject({ status: 'reverted', reverted: 1, cancelled: 1 });
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 120_000);

  it('over HTTP: POST /v1/batches/:id/cancel answers as the CLI; 404 for an unknown batch; admin token only', async () => {
    const windfall = await env.open();
    await windfall.producer.enqueueRewards([{ rewardId: 'ch-1', uid: 'ch-u', amount: 3 }], { batchId: 'ch' });
    const post = (path: string, token: string) =>
      fetch(`${server.baseUrl}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'test' }),
      });
    expect((await post('/v1/batches/ch/cancel', server.apiToken)).status).toBe(403);
    const answered = await post('/v1/batches/ch/cancel', server.adminToken);
    expect(answered.status).toBe(200);
    expect(await answered.json()).toEqual({
      batchId: 'ch',
      cancelled: 1,
      applied: 0,
      status: 'cancelled',
      noop: false,
    });
    expect((await cli(['batch', 'cancel', 'ch', '--yes', '--json'])).json).toEqual({
      batchId: 'ch',
      cancelled: 1,
      applied: 0,
      status: 'cancelled',
      noop: true,
    });
    expect((await post('/v1/batches/nope/cancel', server.adminToken)).status).toBe(404);
    expect((await cli(['batch', 'cancel', 'nope', '--yes', '--json'])).code).toBe(1);
    expect((await cli(['batch', 'cancel', 'ch', '--json'])).code).toBe(2);
  });
});
