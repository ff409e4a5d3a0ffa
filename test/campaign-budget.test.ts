import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setCampaignBudget } from '../src/campaign/campaign-budget.js';
import { REWARD_POLICY } from '../src/lock/lock-policy.js';
import { BudgetExceededError } from '../src/staging/budget-reservation.js';
import { rewardRows, waitForBatchDone } from './support/batches.js';
import { runCli, runCliJson } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { startServe, type ServeProcess } from './support/serve.js';

const env = useTestEnvironment();
let server: ServeProcess;
const dir = mkdtempSync(join(tmpdir(), 'windfall-campaign-'));

beforeAll(async () => {
  server = await startServe(env.env({ WINDFALL_RECOVERY_INTERVAL_MS: '0' }));
});
afterAll(async () => {
  await server?.stop();
});

const cli = (args: string[]) => runCliJson(args, env.env());

/** A JSONL file of `count` rewards of `amount` each. */
function rewardFile(name: string, count: number, amount: number): string {
  const file = join(dir, `${name}.jsonl`);
  writeFileSync(
    file,
    rewardRows(count, (n) => ({ rewardId: `${name}-r${n}`, uid: `${name}-u${n % 7}`, amount }))
      .map((r) => JSON.stringify(r))
      .join('\n'),
  );
  return file;
}

async function http(
  method: string,
  path: string,
  body?: unknown,
  token = server.adminToken,
): Promise<{ status: number; body: any }> {
  const response = await fetch(`${server.baseUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: response.status, body: await response.json() };
}

async function recorded(batchId: string): Promise<{ batches: number; items: number }> {
  const { rows } = await env.pool.query<{ batches: number; items: number }>(
    `select (select count(*) from reward_batches where batch_id = $1)::int as batches, (select count(*) from reward_batch_items where batch_id = $1)::int as items`,
    [batchId],
  );
  return rows[0]!;
}

describe('campaign budgets', () => {
  it('accepts what fits, refuses what does not (exit 2 / HTTP 409, nothing recorded), and campaign show adds up through apply and revert', async () => {
    const windfall = await env.open();
    await windfall.createWorker().start();

    const set = await cli(['campaign', 'set', 'spring', '--budget', '1000', '--actor', 'ops']);
    expect(set).toMatchObject({
      code: 0,
      json: { campaignId: 'spring', budget: '1000', reserved: '0', applied: '0', released: '0', remaining: '1000' },
    });

    const first = await cli([
      'enqueue',
      '--file',
      rewardFile('sp1', 6, 100),
      '--batch-id',
      'sp1',
      '--campaign',
      'spring',
    ]);
    expect(first).toMatchObject({ code: 0, json: { batchId: 'sp1', total: 6 } });
    expect((await cli(['campaign', 'show', 'spring'])).json).toEqual({
      campaignId: 'spring',
      budget: '1000',
      reserved: '600',
      applied: expect.any(String),
      released: '0',
      remaining: '400',
    });

    // 500 > 400: refused on the command line…
    const over = await runCli(
      ['enqueue', '--file', rewardFile('sp2', 5, 100), '--batch-id', 'sp2', '--campaign', 'spring'],
      env.env(),
    );
    expect(over.code).toBe(2);
    expect(over.stderr).toContain('budget');
    expect(over.stderr).toContain('400');
    const overJson = await cli([
      'enqueue',
      '--file',
      rewardFile('sp2', 5, 100),
      '--batch-id',
      'sp2',
      '--campaign',
      'spring',
    ]);
    expect(overJson).toMatchObject({
      code: 2,
      json: { error: 'budget exceeded', remaining: '400', campaignId: 'spring' },
    });
    expect(await recorded('sp2')).toEqual({ batches: 0, items: 0 });
    // … and over HTTP
    const rewards = rewardRows(5, (n) => ({ rewardId: `sp3-r${n}`, uid: `sp3-u${n}`, amount: 100 }));
    const refused = await http(
      'POST',
      '/v1/batches',
      { batchId: 'sp3', campaignId: 'spring', rewards },
      server.apiToken,
    );
    expect(refused).toMatchObject({ status: 409, body: { error: 'budget exceeded', remaining: '400' } });
    expect(await recorded('sp3')).toEqual({ batches: 0, items: 0 });
    // exactly what remains fits
    const fits = await http(
      'POST',
      '/v1/batches',
      { batchId: 'sp4', campaignId: 'spring', rewards: rewards.slice(0, 4) },
      server.apiToken,
    );
    expect(fits).toMatchObject({ status: 202, body: { batchId: 'sp4', total: 4 } });

    await waitForBatchDone(env.pool, 'sp1');
    await waitForBatchDone(env.pool, 'sp4');
    expect((await http('GET', '/v1/campaigns/spring')).body).toEqual({
      campaignId: 'spring',
      budget: '1000',
      reserved: '1000',
      applied: '1000',
      released: '0',
      remaining: '0',
    });

    // a revert gives back what it took back
    expect((await cli(['batch', 'revert', 'sp1', '--yes'])).code).toBe(0);
    expect((await cli(['campaign', 'show', 'spring'])).json).toEqual({
      campaignId: 'spring',
      budget: '1000',
      reserved: '400',
      applied: '400',
      released: '600',
      remaining: '600',
    });

    // lowering below what is reserved refuses new batches and leaves the accepted ones alone
    expect((await http('PUT', '/v1/campaigns/spring', { budget: '300' })).body).toMatchObject({
      budget: '300',
      reserved: '400',
      remaining: '-100',
    });
    const tiny = await cli(['enqueue', '--file', rewardFile('sp5', 1, 1), '--batch-id', 'sp5', '--campaign', 'spring']);
    expect(tiny).toMatchObject({ code: 2, json: { error: 'budget exceeded', remaining: '-100' } });
    expect(tiny.json.message).toContain('a budget of at least 401 would fit it');
    expect((await cli(['batch', 'sp4'])).json).toMatchObject({ status: 'completed', applied: 4 });

    const trail = (await cli(['audit', '--action', 'campaign.budget'])).json;
    expect(
      trail.map((record: { actor: string; target: string; details: object; result: object }) => [
        record.actor,
        record.target,
        record.details,
        record.result,
      ]),
    ).toEqual([
      [
        expect.stringMatching(/^http:admin@/),
        'campaign:spring',
        { budget: '300' },
        { previousBudget: '1000', created: false },
      ],
      ['ops', 'campaign:spring', { budget: '1000' }, { previousBudget: null, created: true }],
    ]);
  });

  it('a campaign without a budget is unlimited; an unknown campaign is 404 / exit 1; bad budgets and ids are refused', async () => {
    const big = await cli([
      'enqueue',
      '--file',
      rewardFile('fr1', 3, 9_000_000),
      '--batch-id',
      'fr1',
      '--campaign',
      'free',
    ]);
    expect(big.code).toBe(0);
    expect((await cli(['campaign', 'show', 'free'])).json).toMatchObject({
      campaignId: 'free',
      budget: null,
      reserved: '27000000',
      remaining: null,
    });

    expect((await cli(['campaign', 'show', 'nobody'])).code).toBe(1);
    expect((await http('GET', '/v1/campaigns/nobody')).status).toBe(404);
    for (const budget of ['-1', '1.5', 'lots', '']) {
      expect((await cli(['campaign', 'set', 'bad', '--budget', budget])).code, budget).toBe(2);
    }
    expect((await http('PUT', '/v1/campaigns/bad', { budget: '-5' })).status).toBe(400);
    expect((await http('PUT', '/v1/campaigns/bad', { budget: 1.5 })).status).toBe(400);
    expect((await http('PUT', '/v1/campaigns/bad', {})).status).toBe(400);
    expect((await http('PUT', '/v1/campaigns/bad', { budget: '5' }, server.apiToken)).status).toBe(403);
    expect((await http('PUT', '/v1/campaigns/ok', { budget: 250 })).body).toMatchObject({
      budget: '250',
      remaining: '250',
    });
    // a budget can be removed again: unlimited
    expect((await http('PUT', '/v1/campaigns/ok', { budget: null })).body).toMatchObject({
      budget: null,
      remaining: null,
    });
    expect((await cli(['campaign', 'set', 'ok', '--budget', '40'])).json).toMatchObject({ budget: '40' });
    expect((await cli(['campaign', 'set', 'ok', '--budget', 'unlimited'])).json).toMatchObject({ budget: null });
    expect((await cli(['campaign', 'show', ' spaced'])).code).toBe(2);
    expect(await http('PUT', '/v1/campaigns/%20spaced', { budget: '5' })).toMatchObject({
      status: 400,
      body: { errors: [{ field: 'campaignId' }] },
    });

    const badId = await http(
      'POST',
      '/v1/batches',
      { campaignId: ' spaced', rewards: [{ rewardId: 'x', uid: 'u', amount: 1 }] },
      server.apiToken,
    );
    expect(badId).toMatchObject({ status: 400, body: { error: 'invalid batch', errors: [{ field: 'campaignId' }] } });
    const badPriority = await http(
      'POST',
      '/v1/batches',
      { priority: 'urgent', rewards: [{ rewardId: 'x', uid: 'u', amount: 1 }] },
      server.apiToken,
    );
    expect(badPriority).toMatchObject({
      status: 400,
      body: { error: 'invalid batch', errors: [{ field: 'priority' }] },
    });
  });

  it('gives back what can never be paid: duplicates, open conflicts and purged entries; reserved + released = totals', async () => {
    const windfall = await env.open({ jobAttempts: 1, rewardLockPolicy: { ...REWARD_POLICY, retries: 0 } });
    await windfall.createWorker().start();
    await setCampaignBudget(windfall.database.pool, 'give', '1000');
    // applied before, outside the campaign: the same reward again is a duplicate; another amount is a conflict
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'give-dup', uid: 'give-u3', amount: 50 },
        { rewardId: 'give-conf', uid: 'give-u4', amount: 10 },
      ],
      { batchId: 'give-earlier' },
    );
    await waitForBatchDone(env.pool, 'give-earlier');
    // a user whose lock another service holds: dead-lettered (LOCK_BUSY) on the only attempt
    await env.holdLock('give-u2', 'other-service');
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'give-1', uid: 'give-u1', amount: 100 },
        { rewardId: 'give-2', uid: 'give-u2', amount: 200 },
        { rewardId: 'give-dup', uid: 'give-u3', amount: 50 },
        { rewardId: 'give-conf', uid: 'give-u4', amount: 99 },
      ],
      { batchId: 'give-a', campaignId: 'give' },
    );
    expect(await waitForBatchDone(env.pool, 'give-a')).toMatchObject({ applied: 1, duplicate: 1, deadLettered: 2 });
    // 449 accepted: 50 (duplicate) and 99 (conflict) can never be paid; 200 (LOCK_BUSY) may still be replayed
    expect((await cli(['campaign', 'show', 'give'])).json).toEqual({
      campaignId: 'give',
      budget: '1000',
      reserved: '300',
      applied: '100',
      released: '149',
      remaining: '700',
    });
    const [busy] = await windfall.deadLetters.list({ batchId: 'give-a', reason: 'LOCK_BUSY' });
    expect((await cli(['dlq', 'purge', busy!.id, '--yes'])).code).toBe(0);
    expect((await http('GET', '/v1/campaigns/give')).body).toEqual({
      campaignId: 'give',
      budget: '1000',
      reserved: '100',
      applied: '100',
      released: '349',
      remaining: '900',
    });
    // and a batch that fits only thanks to what was given back is accepted
    const fits = await cli([
      'enqueue',
      '--file',
      rewardFile('give-b', 9, 100),
      '--batch-id',
      'give-b',
      '--campaign',
      'give',
    ]);
    expect(fits.code, JSON.stringify(fits.json)).toBe(0);
  });

  it('a known batchId under another campaign is a batch conflict; the same batch again is a no-op that reserves nothing more', async () => {
    const windfall = await env.open();
    await windfall.producer.enqueueRewards([{ rewardId: 'id1-r', uid: 'u', amount: 10 }], {
      batchId: 'id1',
      campaignId: 'idem',
    });
    await windfall.producer.enqueueRewards([{ rewardId: 'id1-r', uid: 'u', amount: 10 }], {
      batchId: 'id1',
      campaignId: 'idem',
    });
    expect((await cli(['campaign', 'show', 'idem'])).json).toMatchObject({ reserved: '10' });
    await expect(
      windfall.producer.enqueueRewards([{ rewardId: 'id1-r', uid: 'u', amount: 10 }], {
        batchId: 'id1',
        campaignId: 'other',
      }),
    ).rejects.toThrow(/already exists under campaign "idem"/);
    await expect(
      windfall.producer.enqueueRewards([{ rewardId: 'id1-r', uid: 'u', amount: 10 }], { batchId: 'id1' }),
    ).rejects.toThrow(/already exists under campaign/);
  });

  it.each([
    ['read committed (the default)', 20, 'race'],
    ['a database whose default is repeatable read', 5, 'race-rr'],
  ])(
    'racing enqueues never overrun on %s: of two batches that each fit alone but not together, exactly one is accepted',
    async (_, tries, tag) => {
      const database = new URL(env.databaseUrl).pathname.slice(1);
      if (tag === 'race-rr')
        await env.pool.query(`alter database "${database}" set default_transaction_isolation = 'repeatable read'`);
      const windfall = await env.open(); // new connections: they take the database's default
      try {
        for (let attempt = 0; attempt < tries; attempt += 1) {
          await raceOnce(windfall, `${tag}-${attempt}`);
        }
      } finally {
        if (tag === 'race-rr') await env.pool.query(`alter database "${database}" reset default_transaction_isolation`);
        await windfall.close();
      }
    },
  );
});

async function raceOnce(windfall: Awaited<ReturnType<typeof env.open>>, campaignId: string): Promise<void> {
  await setCampaignBudget(windfall.database.pool, campaignId, '100');
  const batch = (side: string) =>
    windfall.producer.enqueueRewards(
      rewardRows(40, (n) => ({ rewardId: `${campaignId}-${side}-${n}`, uid: `ru${n}`, amount: n < 20 ? 2 : 1 })), // 60 each
      { batchId: `${campaignId}-${side}`, campaignId },
    );
  const outcomes = await Promise.allSettled([batch('a'), batch('b')]);
  const accepted = outcomes.filter((outcome) => outcome.status === 'fulfilled');
  const refused = outcomes.filter((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  expect(accepted, campaignId).toHaveLength(1);
  expect(refused[0]!.reason).toBeInstanceOf(BudgetExceededError);
  expect((refused[0]!.reason as BudgetExceededError).remaining).toBe(40n);
  const { rows } = await env.pool.query<{ n: number }>(
    'select count(*)::int as n from reward_batches where campaign_id = $1',
    [campaignId],
  );
  expect(rows[0]!.n).toBe(1);
}
