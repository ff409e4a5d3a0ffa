import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listDeadLetters } from '../src/dead-letters/dead-letter-store.js';
import { BatchRevertRefusedError, revertBatch } from '../src/revert/batch-revert.js';
import { getRewardReport, rewardLookupQuery } from '../src/status/reward-status.js';
import { waitForBatchDone } from './support/batches.js';
import { eventually, runCli, runCliJson } from './support/cli.js';
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

/** `windfall reward <id> --json` and `GET /v1/rewards/<id>`, which must answer the same document. */
async function lookUp(rewardId: string): Promise<any> {
  const cli = await runCliJson(['reward', rewardId], env.env());
  const response = await fetch(`${server.baseUrl}/v1/rewards/${encodeURIComponent(rewardId)}`, {
    headers: { authorization: `Bearer ${server.apiToken}` },
  });
  const http: unknown = await response.json();
  if (cli.code === 0) {
    expect(response.status, JSON.stringify(http)).toBe(200);
    expect(http, 'HTTP answers as the CLI').toEqual(cli.json);
  } else {
    expect(cli.code).toBe(1);
    expect(response.status).toBe(404);
    expect(http).toEqual({ error: 'not found', message: cli.json.message });
  }
  return cli.json;
}

/** Every node of an `explain (format json)` plan. */
function plannedScans(plan: unknown): Record<string, unknown>[] {
  const nodes: Record<string, unknown>[] = [];
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(visit);
    else if (value !== null && typeof value === 'object') {
      const node = value as Record<string, unknown>;
      if ('Node Type' in node) nodes.push(node);
      Object.values(node).forEach(visit);
    }
  };
  visit(plan);
  return nodes;
}

/** A Windfall whose workers dead-letter a user whose lock is held elsewhere at once (no retries, one attempt). */
function impatient() {
  return env.open({
    rewardLockPolicy: { name: 'reward', retries: 0, initialDelayMs: 10, factor: 1, ttlMs: 5000 },
    jobAttempts: 1,
  });
}

// each look-up starts the CLI (a second or more on a loaded machine) beside the HTTP request: tests here make ten or
// more of them
describe('windfall reward / GET /v1/rewards/:rewardId', { timeout: 180_000 }, () => {
  it('answers every state: pending, applied then reverted, dead-lettered (naming its entry) then replayed and applied, purged, duplicate', async () => {
    // pending: staged, no worker yet
    const windfall = await impatient();
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'rl-ok', uid: 'rl-u1', amount: 100, description: 'ok' },
        { rewardId: 'rl-busy', uid: 'rl-busy', amount: 7 },
        { rewardId: 'rl-gone', uid: 'rl-gone', amount: 3 },
      ],
      { batchId: 'rl-a' },
    );
    expect(await lookUp('rl-ok')).toEqual({
      rewardId: 'rl-ok',
      batchId: 'rl-a',
      uid: 'rl-u1',
      amount: '100',
      state: 'pending',
      ledgerEntryId: null,
      appliedAt: null,
      deadLetterId: null,
      reason: null,
      revertedAt: null,
      batches: [{ batchId: 'rl-a', state: 'pending' }],
    });

    await env.holdLock('rl-busy', 'elsewhere:1');
    await env.holdLock('rl-gone', 'elsewhere:2');
    await windfall.createWorker().start();
    expect(await waitForBatchDone(env.pool, 'rl-a')).toMatchObject({ applied: 1, deadLettered: 2 });

    const applied = await lookUp('rl-ok');
    const { rows } = await env.pool.query<{ id: string; created_at: Date }>(
      `select id::text, created_at from ledger_entries where operation_id = 'rl-ok'`,
    );
    expect(applied).toMatchObject({
      state: 'applied',
      ledgerEntryId: rows[0]!.id,
      appliedAt: rows[0]!.created_at.toISOString(),
      deadLetterId: null,
    });

    const entries = await listDeadLetters(env.pool, { batchId: 'rl-a' });
    const busyEntry = entries.find((entry) => entry.uid === 'rl-busy')!;
    const goneEntry = entries.find((entry) => entry.uid === 'rl-gone')!;
    expect(await lookUp('rl-busy')).toMatchObject({
      batchId: 'rl-a',
      uid: 'rl-busy',
      amount: '7',
      state: 'dead_lettered',
      ledgerEntryId: null,
      deadLetterId: busyEntry.id,
      reason: 'LOCK_BUSY',
    });

    // purged
    await windfall.deadLetters.purge({ ids: [goneEntry.id] }, { actor: 'test' });
    expect(await lookUp('rl-gone')).toMatchObject({ state: 'purged', deadLetterId: goneEntry.id, reason: 'LOCK_BUSY' });

    // replayed, then applied: `applied`, still naming the entry it went through
    await env.redis.del(`${env.prefix}:lock:rl-busy`);
    await windfall.deadLetters.replay({ ids: [busyEntry.id] }, { actor: 'test' });
    await waitForBatchDone(env.pool, 'rl-a');
    const replayed = await lookUp('rl-busy');
    expect(replayed).toMatchObject({ state: 'applied', deadLetterId: busyEntry.id, reason: 'LOCK_BUSY' });
    expect(replayed.ledgerEntryId).not.toBeNull();

    // enqueued again under another batchId: the batch that applied it is answered, the other listed
    await windfall.producer.enqueueRewards([{ rewardId: 'rl-ok', uid: 'rl-u1', amount: 100, description: 'ok' }], {
      batchId: 'rl-b',
    });
    expect(await waitForBatchDone(env.pool, 'rl-b')).toMatchObject({ duplicate: 1 });
    expect(await lookUp('rl-ok')).toMatchObject({
      batchId: 'rl-a',
      state: 'applied',
      batches: [
        { batchId: 'rl-a', state: 'applied' },
        { batchId: 'rl-b', state: 'duplicate' },
      ],
    });

    // reverted: the credit and when it was debited back (once the replay has finished: a revert waits for it)
    await eventually(
      async () =>
        revertBatch({ pool: env.pool, wallet: windfall.wallet, logger: windfall.logger }, 'rl-a', {
          actor: 'test',
        }).then(
          () => true,
          (error: unknown) => {
            if (error instanceof BatchRevertRefusedError) return false;
            throw error;
          },
        ),
      'the revert of rl-a',
    );
    const reverted = await lookUp('rl-ok');
    const debit = await env.pool.query<{ created_at: Date }>(
      `select created_at from ledger_entries where operation_id = 'revert:rl-ok'`,
    );
    expect(reverted).toMatchObject({
      batchId: 'rl-a',
      state: 'reverted',
      ledgerEntryId: rows[0]!.id,
      revertedAt: debit.rows[0]!.created_at.toISOString(),
    });
    expect(await lookUp('rl-busy')).toMatchObject({ state: 'reverted', deadLetterId: busyEntry.id });
    expect(await lookUp('rl-gone')).toMatchObject({ state: 'purged' });
  });

  it('a rewardId credited by a wallet call first is a duplicate naming that credit; the same id with another amount is dead-lettered CONFLICT', async () => {
    const windfall = await impatient();
    const credit = await windfall.wallet.addBalance('rl-d', 5, { operationId: 'rl-dup' });
    expect(credit.outcome).toBe('applied');
    await windfall.createWorker().start();
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'rl-dup', uid: 'rl-d', amount: 5 },
        { rewardId: 'rl-conflict', uid: 'rl-d', amount: 9 },
      ],
      { batchId: 'rl-c' },
    );
    await waitForBatchDone(env.pool, 'rl-c');
    const { rows } = await env.pool.query<{ id: string }>(
      `select id::text from ledger_entries where operation_id = 'rl-dup'`,
    );
    expect(await lookUp('rl-dup')).toMatchObject({ batchId: 'rl-c', state: 'duplicate', ledgerEntryId: rows[0]!.id });

    await windfall.producer.enqueueRewards([{ rewardId: 'rl-conflict', uid: 'rl-d', amount: 10 }], {
      batchId: 'rl-c2',
    });
    await waitForBatchDone(env.pool, 'rl-c2');
    const conflict = await lookUp('rl-conflict');
    expect(conflict).toMatchObject({ batchId: 'rl-c', state: 'applied' });
    expect(conflict.batches).toEqual([
      { batchId: 'rl-c', state: 'applied' },
      { batchId: 'rl-c2', state: 'dead_lettered' },
    ]);
  });

  it('an unknown id exits 1 (HTTP 404), saying when a wallet call used it; ids with slashes and spaces are found', async () => {
    const unknown = await lookUp('rl-nobody');
    expect(unknown).toEqual({
      error: 'failed',
      message: expect.stringContaining('no batch holds rewardId "rl-nobody"'),
    });
    const text = await runCli(['reward', 'rl-nobody'], env.env());
    expect(text.code).toBe(1);
    expect(text.stderr).toContain('no batch holds rewardId "rl-nobody"');

    const windfall = await env.open();
    await windfall.wallet.addBalance('rl-w', 1, { operationId: 'rl-wallet-op' });
    expect((await lookUp('rl-wallet-op')).message).toContain('the ledger has a credit of uid "rl-w"');

    await windfall.producer.enqueueRewards([{ rewardId: 'rl/odd id?#%', uid: 'rl-odd', amount: 2 }], {
      batchId: 'rl-odd-batch',
    });
    expect(await lookUp('rl/odd id?#%')).toMatchObject({ batchId: 'rl-odd-batch', uid: 'rl-odd', state: 'pending' });
    const human = await runCli(['reward', 'rl/odd id?#%'], env.env());
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^state +pending$/m);
    expect(human.stdout).toMatch(/^batchId +rl-odd-batch$/m);
    // the longest ids: 128 code points, 216 characters once percent-encoded in the path
    const longest = `${'x'.repeat(120)}${'😀'.repeat(8)}`;
    await windfall.producer.enqueueRewards([{ rewardId: longest, uid: 'rl-long', amount: 3 }], { batchId: longest });
    expect(await lookUp(longest)).toMatchObject({ batchId: longest, uid: 'rl-long', state: 'pending' });
    const batch = await fetch(`${server.baseUrl}/v1/batches/${encodeURIComponent(longest)}`, {
      headers: { authorization: `Bearer ${server.apiToken}` },
    });
    expect(batch.status).toBe(200);
    // the API token opens the route; none gets 401
    expect((await fetch(`${server.baseUrl}/v1/rewards/x`)).status).toBe(401);
  });

  it('finds the batches by the reward_id index, not by reading the table', async () => {
    const query = (await rewardLookupQuery('rl-ok')).compile();
    const client = await env.pool.connect();
    try {
      await client.query('begin');
      // the tables are small here: make a sequential scan as dear as the planner makes it on 10 million rows
      await client.query('set local enable_seqscan = off');
      const { rows } = await client.query<{ 'QUERY PLAN': unknown }>(`explain (format json) ${query.sql}`, [
        ...query.parameters,
      ]);
      const nodes = plannedScans(rows[0]!['QUERY PLAN']);
      expect(
        nodes.filter((node) => node['Relation Name'] === 'reward_batch_items').map((node) => node['Node Type']),
      ).toEqual([expect.stringMatching(/Index Scan|Bitmap Heap Scan/)]);
      expect(nodes.map((node) => node['Index Name'])).toContain('reward_batch_items_reward_id');
    } finally {
      await client.query('rollback');
      client.release();
    }
    expect(await getRewardReport(env.pool, 'rl-never-staged')).toBeNull();
  });

  it('migration 0009 keeps an index built beforehand (concurrently) and builds a failed one again', async () => {
    const indexState = async () =>
      (
        await env.pool.query<{ oid: number; valid: boolean; unique: boolean }>(
          `select indexrelid::int as oid, indisvalid as valid, indisunique as unique from pg_index where indexrelid = to_regclass('reward_batch_items_reward_id')`,
        )
      ).rows[0];
    const unapply = async () => {
      // (and the migration after it, which must run after it again)
      await env.pool.query(`delete from kysely_migration where name in ('0009_reward_lookup', '0010_batch_cancel')`);
      await env.pool.query('drop index dead_letters_uid');
      await env.pool.query('alter table reward_batches drop column cancelled_at');
    };

    // built beforehand, concurrently: kept as it is
    await env.pool.query('drop index reward_batch_items_reward_id');
    await env.pool.query('create index concurrently reward_batch_items_reward_id on reward_batch_items (reward_id)');
    const prebuilt = await indexState();
    await unapply();
    const kept = await runCliJson(['migrate'], env.env());
    expect(kept.json).toMatchObject({ applied: ['0009_reward_lookup', '0010_batch_cancel'] });
    expect(await indexState()).toEqual(prebuilt);

    // a concurrent build that failed (here: unique over two rows of one user) leaves an invalid index: built again
    const windfall = await env.open();
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'rl-ix-1', uid: 'rl-ix', amount: 1 },
        { rewardId: 'rl-ix-2', uid: 'rl-ix', amount: 1 },
      ],
      { batchId: 'rl-ix' },
    );
    await env.pool.query('drop index reward_batch_items_reward_id');
    const failed = await env.pool
      .query('create unique index concurrently reward_batch_items_reward_id on reward_batch_items (uid)')
      .catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(Error);
    expect(await indexState()).toMatchObject({ valid: false, unique: true });
    await unapply();
    const rebuilt = await runCliJson(['migrate'], env.env());
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    expect(await indexState()).toMatchObject({ valid: true, unique: false });
  });
});
