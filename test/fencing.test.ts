import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { claimChunk, claimEntry, FencedOutError } from '../src/db/fences.js';
import { recordChunkDeadLetters, recordReplayDeadLetters } from '../src/dead-letters/dead-letter-writer.js';
import { purgeDeadLetters } from '../src/dead-letters/dead-letter-store.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import { revertBatch } from '../src/revert/batch-revert.js';
import { GroupSettlement } from '../src/settlement/group-settlement.js';
import type { UserOutcome, UserTask } from '../src/settlement/user-task.js';
import { loadClaimedChunk, loadReplayWork } from '../src/worker/job-work.js';
import { balances, ledgerMismatches, rewardRows } from './support/batches.js';
import { eventually } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { groupSettlementOptions } from './support/settling-users.js';

/*
 * The fence between settlement and the decisions that give rewards up (ADR 0013), shown on the statements themselves:
 * two attempts of one job, a statement held in flight by a wallet row another transaction holds, and the deciders
 * (the dead-letter writer, purge, revert) in every order. Whatever the order, a reward is paid before it is given up
 * (and the decision sees it), or not at all.
 */

const env = useTestEnvironment();
/** The settlement statements' own connections, as the worker opens them. */
let statements: pg.Pool;
beforeAll(() => {
  statements = new pg.Pool({ connectionString: env.databaseUrl, max: 4, application_name: 'windfall' });
});
afterAll(async () => {
  await statements.end();
});

const heldRows: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const release of heldRows.splice(0)) await release().catch(() => undefined);
});

/** Holds `uid`'s wallet row from a transaction of the test until `release()`. */
async function holdWalletRow(uid: string): Promise<() => Promise<void>> {
  const client = await env.pool.connect();
  await client.query('begin');
  await client.query(`insert into wallets (uid, balance) values ($1, 0) on conflict do nothing`, [uid]);
  await client.query('select 1 from wallets where uid = $1 for update', [uid]);
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    await client.query('commit');
    client.release();
  };
  heldRows.push(release);
  return release;
}

/** Statements of this database (other than this probe) waiting for a lock. */
async function waitingForLocks(): Promise<number> {
  const { rows } = await env.pool.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity
     where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock'`,
  );
  return rows[0]!.n;
}

function settlement(): GroupSettlement {
  // long waits: here a held row is released by the test, never by the limit
  return new GroupSettlement(groupSettlementOptions(statements, env.pool, { lockWaitMs: 30_000 }));
}

/** Stages a batch of one shard and one chunk (no worker runs). */
async function stage(
  batchId: string,
  rows: readonly { rewardId: string; uid: string; amount: number | string }[],
): Promise<void> {
  const windfall = await env.open({ chunkSize: 100_000, shards: 1 });
  await windfall.producer.enqueueRewards(rows, { batchId });
}

/** A new attempt of chunk 0 of `batchId`: its claim and its users. */
async function attempt(batchId: string): Promise<{ fence: string; tasks: UserTask[] }> {
  const claim = await claimChunk(env.pool, batchId, 0);
  if (claim.kind !== 'claimed') throw new Error(`chunk 0 of ${batchId} not claimed: ${claim.kind}`);
  const work = await loadClaimedChunk(env.pool, batchId, 0, claim);
  return { fence: claim.fence, tasks: work.tasks };
}

const taskOf = (tasks: readonly UserTask[], uid: string): UserTask => tasks.find((task) => task.uid === uid)!;

async function rewardEntries(prefix: string): Promise<number> {
  const { rows } = await env.pool.query<{ n: number }>(
    `select count(*)::int as n from ledger_entries where kind = 'reward' and operation_id like $1 || '%'`,
    [prefix],
  );
  return rows[0]!.n;
}

async function completeChunk(batchId: string, fence: string): Promise<void> {
  const { rowCount } = await env.pool.query(
    'update reward_chunks set completed_at = now() where batch_id = $1 and chunk_no = 0 and fence = $2',
    [batchId, fence],
  );
  expect(rowCount).toBe(1);
}

const FENCED: UserOutcome = { kind: 'fenced' };

describe('fences: a statement of an earlier attempt never pays what was given up', () => {
  it('a statement of an earlier attempt pays nothing once a later attempt claimed the chunk', async () => {
    await stage(
      'fa',
      rewardRows(6, (n) => ({ rewardId: `fa-${n}`, uid: `fa-u${n % 3}`, amount: 10 + n })),
    );
    const first = await attempt('fa');
    const second = await attempt('fa');
    expect(BigInt(second.fence)).toBe(BigInt(first.fence) + 1n);
    expect(await settlement().settleAll(first.tasks)).toEqual([FENCED, FENCED, FENCED]);
    expect(await rewardEntries('fa-')).toBe(0);
    const outcomes = await settlement().settleAll(second.tasks);
    expect(outcomes.map((outcome) => outcome.kind)).toEqual(['settled', 'settled', 'settled']);
    expect(await rewardEntries('fa-')).toBe(6);
  });

  it('a later claim waits for a statement in flight (held by a wallet row), then finds what it paid', async () => {
    await stage('fb', [
      { rewardId: 'fb-1', uid: 'fb-held', amount: 500 },
      { rewardId: 'fb-2', uid: 'fb-free', amount: 7 },
    ]);
    const first = await attempt('fb');
    const release = await holdWalletRow('fb-held');
    const inFlight = settlement().settleAll(first.tasks);
    await eventually(async () => (await waitingForLocks()) === 1, 'the statement to wait for the held wallet row');
    const later = claimChunk(env.pool, 'fb', 0, 60_000);
    await eventually(async () => (await waitingForLocks()) === 2, 'the claim to wait for the statement in flight');
    await release();
    expect((await inFlight).map((outcome) => outcome.kind)).toEqual(['settled', 'settled']);
    const claim = await later;
    expect(claim.kind).toBe('claimed');
    // the later attempt finds nothing left to pay: the statement committed before its claim
    const second = await attempt('fb');
    expect(await settlement().settleAll(second.tasks)).toEqual([
      { kind: 'settled', applied: 0, alreadyApplied: 1, duplicates: 0, conflicts: [] },
      { kind: 'settled', applied: 0, alreadyApplied: 1, duplicates: 0, conflicts: [] },
    ]);
    expect((await balances(env.pool)).get('fb-held')).toBe(500n);
  });

  it('a claim waiting past its limit fails with lock_timeout and takes the chunk when sent again', async () => {
    await stage('fc', [{ rewardId: 'fc-1', uid: 'fc-held', amount: 5 }]);
    const first = await attempt('fc');
    const release = await holdWalletRow('fc-held');
    const inFlight = settlement().settleAll(first.tasks);
    await eventually(async () => (await waitingForLocks()) === 1, 'the statement to wait for the held wallet row');
    await expect(claimChunk(env.pool, 'fc', 0, 200)).rejects.toMatchObject({ code: '55P03' });
    await release();
    await inFlight;
    expect((await claimChunk(env.pool, 'fc', 0, 200)).kind).toBe('claimed');
  });

  it('the dead-letter writer waits for a statement of its own attempt still in flight and leaves out what it paid', async () => {
    await stage('fd', [
      { rewardId: 'fd-1', uid: 'fd-u', amount: 300 },
      { rewardId: 'fd-2', uid: 'fd-u', amount: 200 },
    ]);
    const first = await attempt('fd');
    const release = await holdWalletRow('fd-u');
    // the attempt gave up waiting for this statement (a silent connection), but PostgreSQL still runs it
    const abandoned = settlement().settleAll(first.tasks);
    await eventually(async () => (await waitingForLocks()) === 1, 'the statement to wait for the held wallet row');
    const writing = recordChunkDeadLetters(env.pool, { kind: 'chunk', batchId: 'fd', chunkNo: 0, fence: first.fence }, [
      {
        batchId: 'fd',
        chunkNo: 0,
        shard: 0,
        uid: 'fd-u',
        reason: 'DB_ERROR',
        error: 'timed out',
        attempts: 3,
        rewardIds: null,
      },
    ]);
    await eventually(async () => (await waitingForLocks()) === 2, 'the writer to wait for the statement in flight');
    await release();
    expect((await abandoned)[0]!.kind).toBe('settled');
    const written = await writing;
    // nothing left to give up: the statement paid both rewards first
    expect(written.entries).toEqual([]);
    expect(BigInt(written.fence)).toBe(BigInt(first.fence) + 1n);
    expect((await balances(env.pool)).get('fd-u')).toBe(500n);
  });

  it('a statement sent after its rewards were dead-lettered pays nothing, and the purged entry is never paid', async () => {
    await stage('fe', [
      { rewardId: 'fe-1', uid: 'fe-u', amount: 300 },
      { rewardId: 'fe-2', uid: 'fe-v', amount: 40 },
    ]);
    const first = await attempt('fe');
    const written = await recordChunkDeadLetters(
      env.pool,
      { kind: 'chunk', batchId: 'fe', chunkNo: 0, fence: first.fence },
      [
        {
          batchId: 'fe',
          chunkNo: 0,
          shard: 0,
          uid: 'fe-u',
          reason: 'LOCK_BUSY',
          error: 'busy',
          attempts: 3,
          rewardIds: null,
        },
      ],
    );
    expect(written.entries.map((entry) => entry.uid)).toEqual(['fe-u']);
    expect(await purgeDeadLetters(env.pool, { ids: [written.entries[0]!.id] })).toEqual([written.entries[0]!.id]);
    // a frozen statement of the attempt, sent only now, carries the fence the writer moved on
    expect(await settlement().settleAll([taskOf(first.tasks, 'fe-u')])).toEqual([FENCED]);
    // a stale writer of the same attempt decides nothing more either
    await expect(
      recordChunkDeadLetters(env.pool, { kind: 'chunk', batchId: 'fe', chunkNo: 0, fence: first.fence }, [
        {
          batchId: 'fe',
          chunkNo: 0,
          shard: 0,
          uid: 'fe-v',
          reason: 'LOCK_BUSY',
          error: 'busy',
          attempts: 3,
          rewardIds: null,
        },
      ]),
    ).rejects.toBeInstanceOf(FencedOutError);
    // the attempt itself goes on under the fence the writer gave it
    const rest = await settlement().settleAll([
      { ...taskOf(first.tasks, 'fe-v'), source: { ...taskOf(first.tasks, 'fe-v').source, fence: written.fence } },
    ]);
    expect(rest[0]!.kind).toBe('settled');
    // and a later attempt leaves the purged rewards out
    const second = await attempt('fe');
    expect(second.tasks.map((task) => task.uid)).toEqual(['fe-v']);
    expect(await rewardEntries('fe-1')).toBe(0);
    expect((await balances(env.pool)).get('fe-u') ?? 0n).toBe(0n);
  });

  it('a revert fences the batch: a statement of a frozen attempt sent after it pays nothing; reconcile is clean', async () => {
    const windfall = await env.open({ chunkSize: 100_000, shards: 1 });
    await windfall.wallet.addBalance('ff-u', 1, { operationId: 'ff-opening' });
    await stage('ff', [
      { rewardId: 'ff-1', uid: 'ff-u', amount: 300 },
      { rewardId: 'ff-2', uid: 'ff-u', amount: 200 },
      { rewardId: 'ff-3', uid: 'ff-v', amount: 9 },
    ]);
    const frozen = await attempt('ff');
    const rescuer = await attempt('ff');
    // the rescuer settles ff-v, dead-letters ff-u (its lock was still held by the frozen worker) and completes
    expect((await settlement().settleAll([taskOf(rescuer.tasks, 'ff-v')]))[0]!.kind).toBe('settled');
    const written = await recordChunkDeadLetters(
      env.pool,
      { kind: 'chunk', batchId: 'ff', chunkNo: 0, fence: rescuer.fence },
      [
        {
          batchId: 'ff',
          chunkNo: 0,
          shard: 0,
          uid: 'ff-u',
          reason: 'LOCK_BUSY',
          error: 'busy',
          attempts: 1,
          rewardIds: null,
        },
      ],
    );
    await completeChunk('ff', written.fence);
    const report = await revertBatch({ pool: env.pool, wallet: windfall.wallet, logger: windfall.logger }, 'ff', {
      reason: 'wrong campaign',
    });
    expect(report).toMatchObject({ reverted: 1, closedDeadLetters: 1, status: 'reverted' });
    // the frozen worker resumes and sends its statement
    expect(await settlement().settleAll(frozen.tasks)).toEqual([FENCED, FENCED]);
    const after = await balances(env.pool);
    expect([after.get('ff-u'), after.get('ff-v')]).toEqual([1n, 0n]);
    expect(await ledgerMismatches(env.pool)).toEqual([]);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  });

  it('a revert takes the fence of every chunk of the batch: it waits for a statement holding one', async () => {
    const windfall = await env.open({ chunkSize: 100_000, shards: 1 });
    await stage('fg', [{ rewardId: 'fg-1', uid: 'fg-u', amount: 30 }]);
    const owner = await attempt('fg');
    expect((await settlement().settleAll(owner.tasks))[0]!.kind).toBe('settled');
    await completeChunk('fg', owner.fence);
    await env.pool.query(`update reward_batches set status = 'completed' where batch_id = 'fg'`);
    // what a settlement statement in flight holds: the chunk row, for share, with the attempt's fence
    const statement = await env.pool.connect();
    try {
      await statement.query('begin');
      const { rowCount } = await statement.query(
        `select 1 from reward_chunks where batch_id = 'fg' and chunk_no = 0 and fence = $1 for share`,
        [owner.fence],
      );
      expect(rowCount).toBe(1);
      const reverting = revertBatch({ pool: env.pool, wallet: windfall.wallet, logger: windfall.logger }, 'fg');
      await eventually(async () => (await waitingForLocks()) === 1, 'the revert to wait for the statement in flight');
      await statement.query('commit');
      expect(await reverting).toMatchObject({ reverted: 1, status: 'reverted' });
    } finally {
      statement.release();
    }
    // a statement of the attempt sent after the revert pays nothing
    expect(await settlement().settleAll(owner.tasks)).toEqual([FENCED]);
    expect((await balances(env.pool)).get('fg-u')).toBe(0n);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  });

  it('a statement of an earlier replay attempt pays nothing once a later attempt claimed the entry or handed it on', async () => {
    await stage('fh', [
      { rewardId: 'fh-1', uid: 'fh-u', amount: 70 },
      { rewardId: 'fh-2', uid: 'fh-u', amount: 30 },
    ]);
    const chunk = await attempt('fh');
    const dead = await recordChunkDeadLetters(
      env.pool,
      { kind: 'chunk', batchId: 'fh', chunkNo: 0, fence: chunk.fence },
      [
        {
          batchId: 'fh',
          chunkNo: 0,
          shard: 0,
          uid: 'fh-u',
          reason: 'LOCK_BUSY',
          error: 'busy',
          attempts: 3,
          rewardIds: null,
        },
      ],
    );
    const entryId = dead.entries[0]!.id;
    const replayAttempt = async (): Promise<{ fence: string; tasks: UserTask[] }> => {
      const fence = (await claimEntry(env.pool, entryId))!;
      return { fence, tasks: (await loadReplayWork(env.pool, entryId, fence))!.tasks };
    };
    const frozen = await replayAttempt();
    const rescuer = await replayAttempt();
    expect(await settlement().settleAll(frozen.tasks)).toEqual([FENCED]);
    // the rescuer hands the entry's rewards on to a new entry, which is purged: the frozen attempt still pays nothing
    const handedOn = await recordReplayDeadLetters(
      env.pool,
      { kind: 'replay', deadLetterId: entryId, fence: rescuer.fence },
      [{ replayOf: entryId, reason: 'LOCK_BUSY', error: 'busy', attempts: 3, rewardIds: null }],
    );
    expect(handedOn.entries).toHaveLength(1);
    expect(await purgeDeadLetters(env.pool, { ids: [handedOn.entries[0]!.id] })).toHaveLength(1);
    expect(await settlement().settleAll(rescuer.tasks)).toEqual([FENCED]);
    expect(await rewardEntries('fh-')).toBe(0);
    expect(await ledgerMismatches(env.pool)).toEqual([]);
  });
});
