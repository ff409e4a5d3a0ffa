import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeadLetterEntry } from '../src/dead-letters/dead-letter-store.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import type { Windfall } from '../src/runtime/windfall.js';
import { getBatchReport } from '../src/status/batch-status.js';
import { balances, rewardRows } from './support/batches.js';
import { runCli } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { resilientPool, startWindfall, waitFor, type WindfallProcess } from './support/redis-servers.js';

/*
 * A frozen worker against the operator (issue 20, ADR 0013): worker A's statement for user U waits on U's wallet row
 * (another transaction holds it); A is frozen with SIGSTOP, so nothing of A's own can cancel it, and its job lock
 * lapses. Worker B takes the job over, finds U's lock still A's, dead-letters U and completes the chunk. The operator
 * then reverts the batch, purges the entry, or replays it; the row is released and A resumes. Whatever A's statement
 * does inside PostgreSQL meanwhile, a reward given up is never paid afterwards.
 */

const env = useTestEnvironment();
let probe: pg.Pool;
beforeAll(() => {
  probe = resilientPool(env.databaseUrl, 2);
});
afterAll(async () => {
  await probe.end();
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** Statements of Windfall processes in this database waiting for a lock. */
async function blockedStatements(): Promise<number> {
  const { rows } = await probe.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity
     where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock' and application_name like 'windfall%'`,
  );
  return rows[0]!.n;
}

/** Holds `uid`'s wallet row from a transaction of the test until the returned release is called. */
async function holdWalletRow(uid: string): Promise<() => Promise<void>> {
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
  cleanups.push(release);
  return release;
}

function worker(extra: Record<string, string> = {}): WindfallProcess {
  const process = startWindfall(
    ['worker'],
    env.env({ WINDFALL_JOB_LOCK_MS: '1000', WINDFALL_RECOVERY_INTERVAL_MS: '0', ...extra }),
  );
  cleanups.push(async () => {
    process.child.kill('SIGCONT');
    await process.kill9();
  });
  return process;
}

interface FrozenScenario {
  readonly windfall: Windfall;
  readonly frozen: WindfallProcess;
  readonly rescuer: WindfallProcess;
  readonly entry: DeadLetterEntry;
  readonly releaseRow: () => Promise<void>;
}

const AMOUNTS = [100, 150, 250];

/**
 * Steps 1-3 of the issue: U (balance 1) has three rewards (500 in all) in batch `batchId`; A is frozen inside its
 * statement for U, B has dead-lettered U (LOCK_BUSY) and completed the batch. Answers with the row still held.
 */
async function frozenWorkerAndDeadLetter(batchId: string, uid: string): Promise<FrozenScenario> {
  const windfall = await env.open({ jobAttempts: 1 });
  await windfall.wallet.addBalance(uid, 1, { operationId: `${uid}-opening` });
  const releaseRow = await holdWalletRow(uid);
  const frozen = worker();
  await windfall.producer.enqueueRewards(
    rewardRows(3, (n) => ({ rewardId: `${batchId}-${n}`, uid, amount: AMOUNTS[n]! })),
    { batchId },
  );
  await waitFor(async () => (await blockedStatements()) === 1, `A's statement for ${uid} to block on the wallet row`);
  frozen.child.kill('SIGSTOP');
  // workers of earlier tests left BullMQ's once-per-interval stalled-check guards behind
  for (const key of await env.redis.keys(`${env.prefix}:*:stalled-check`)) await env.redis.del(key);

  // B takes the stalled job over; U's lock is still A's, so on this last attempt U is dead-lettered
  const rescuer = worker({ WINDFALL_REWARD_LOCK_RETRIES: '2', WINDFALL_REWARD_LOCK_DELAY_MS: '50' });
  await waitFor(
    async () => (await windfall.deadLetters.list({ batchId })).length === 1,
    `${uid} to be dead-lettered by the rescuer`,
    60_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}\nrescuer: ${rescuer.output().slice(-4000)}`);
  });
  const [entry] = await windfall.deadLetters.list({ batchId });
  expect(entry).toMatchObject({ uid, reason: 'LOCK_BUSY' });
  await waitFor(async () => (await getBatchReport(env.pool, batchId))?.pending === 0, 'the batch to be done');
  return { windfall, frozen, rescuer, entry: entry!, releaseRow };
}

/** Resumes A and waits until it has tried again and found itself fenced out (so its last word is in). */
async function resumeFrozen(frozen: WindfallProcess): Promise<void> {
  frozen.child.kill('SIGCONT');
  await waitFor(
    () => frozen.output().includes('job attempt fenced out'),
    'the resumed worker to find its attempt fenced out',
    60_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}\nresumed worker: ${frozen.output().slice(-4000)}`);
  });
}

/** The reward entries the ledger holds for batch `batchId`'s rewards, by operation id. */
async function ledgerOf(batchId: string): Promise<{ operation_id: string; amount: string }[]> {
  const { rows } = await env.pool.query<{ operation_id: string; amount: string }>(
    `select operation_id, amount::text from ledger_entries where kind = 'reward' and operation_id like $1 order by operation_id`,
    [`${batchId}-%`],
  );
  return rows;
}

describe('fencing: a frozen worker never pays what the operator gave up', () => {
  it('vs revert: after it resumes, the balance is back to its value before the batch and reconcile is clean', async () => {
    const { frozen, rescuer, releaseRow } = await frozenWorkerAndDeadLetter('fz-rev', 'fz-rev-u');
    const reverted = await runCli(['batch', 'revert', 'fz-rev', '--yes', '--json'], env.env());
    expect(reverted.code, reverted.stderr).toBe(0);
    expect(JSON.parse(reverted.stdout)).toMatchObject({ status: 'reverted', closedDeadLetters: 1 });
    await releaseRow();
    await resumeFrozen(frozen);
    expect(await frozen.stop()).toBe(0);
    expect(await rescuer.stop()).toBe(0);
    expect((await balances(env.pool)).get('fz-rev-u')).toBe(1n);
    expect(await getBatchReport(env.pool, 'fz-rev')).toMatchObject({ status: 'reverted' });
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 180_000);

  it('vs purge: no purged reward ever reaches the ledger', async () => {
    const { frozen, rescuer, entry, releaseRow } = await frozenWorkerAndDeadLetter('fz-pur', 'fz-pur-u');
    const purged = await runCli(['dlq', 'purge', entry.id, '--yes', '--json'], env.env());
    expect(purged.code, purged.stderr).toBe(0);
    await releaseRow();
    await resumeFrozen(frozen);
    expect(await frozen.stop()).toBe(0);
    expect(await rescuer.stop()).toBe(0);
    expect(await ledgerOf('fz-pur')).toEqual([]);
    expect((await balances(env.pool)).get('fz-pur-u')).toBe(1n);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 180_000);

  it('vs replay: credited once', async () => {
    const { windfall, frozen, rescuer, entry, releaseRow } = await frozenWorkerAndDeadLetter('fz-rep', 'fz-rep-u');
    // the operator frees the "hung" holder's lock and replays the entry; its statement waits for the row too
    await windfall.wallet.forceReleaseLock('fz-rep-u');
    const replay = await runCli(['dlq', 'replay', entry.id, '--json'], env.env());
    expect(replay.code, replay.stderr).toBe(0);
    await waitFor(async () => (await blockedStatements()) >= 1, 'the replay statement to wait for the wallet row');
    await releaseRow();
    await waitFor(async () => (await getBatchReport(env.pool, 'fz-rep'))?.pending === 0, 'the replay to settle');
    await resumeFrozen(frozen);
    expect(await frozen.stop()).toBe(0);
    expect(await rescuer.stop()).toBe(0);
    expect(await getBatchReport(env.pool, 'fz-rep')).toMatchObject({
      total: 3,
      applied: 3,
      duplicate: 0,
      deadLettered: 0,
      status: 'completed',
    });
    expect((await ledgerOf('fz-rep')).map((row) => row.amount)).toEqual(['100', '150', '250']);
    expect((await balances(env.pool)).get('fz-rep-u')).toBe(501n);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 180_000);
});
