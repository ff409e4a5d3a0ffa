import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimChunk, FencedOutError } from '../src/db/fences.js';
import { recordChunkDeadLetters } from '../src/dead-letters/dead-letter-writer.js';
import { purgeDeadLetters } from '../src/dead-letters/dead-letter-store.js';
import { silentLogger } from '../src/log/logger.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import { revertBatch } from '../src/revert/batch-revert.js';
import type { Windfall } from '../src/runtime/windfall.js';
import { GroupSettlement } from '../src/settlement/group-settlement.js';
import type { UserOutcome, UserTask } from '../src/settlement/user-task.js';
import { loadClaimedChunk } from '../src/worker/job-work.js';
import { ledgerMismatches } from './support/batches.js';
import { useTestEnvironment } from './support/environment.js';
import { groupSettlementOptions } from './support/settling-users.js';

/*
 * The fence under random interleavings (ADR 0013). A stale attempt A and the attempt B that took its job over, an
 * operator, and another transaction holding a user's wallet row run their steps in a random order, each step sent as
 * soon as it is its turn — a step that waits for a lock (a statement behind the held row, a claim or a dead-letter
 * writer behind that statement) stays in flight while the next ones go. Whatever the order, once everything has
 * finished: a dead-lettered reward is not in the ledger, a purged one never was, a reverted batch left no money, and
 * balances match the ledger.
 */

const env = useTestEnvironment();
let statements: pg.Pool;
/** The steps' own connections (claims, writers, the held row, the revert), so that probes never wait behind them. */
let db: pg.Pool;
let windfall: Windfall;
beforeAll(async () => {
  statements = new pg.Pool({ connectionString: env.databaseUrl, max: 6, application_name: 'windfall' });
  db = new pg.Pool({ connectionString: env.databaseUrl, max: 12 });
  windfall = await env.open({ chunkSize: 100_000, shards: 1 });
});
afterAll(async () => {
  await statements.end();
  await db.end();
});

const STEPS = [
  'hold',
  'release',
  'aSends',
  'aDeadLettersFree',
  'bClaims',
  'bSettlesFree',
  'bDeadLettersHeld',
  'bCompletes',
  'purge',
  'revert',
] as const;
type Step = (typeof STEPS)[number];

/** What a step needs done (finished, not merely sent) before it can be sent. */
const NEEDS: Record<Step, readonly Step[]> = {
  hold: [],
  release: ['hold'],
  aSends: [],
  aDeadLettersFree: [],
  bClaims: [],
  bSettlesFree: ['bClaims'],
  bDeadLettersHeld: ['bClaims'],
  bCompletes: ['bSettlesFree', 'bDeadLettersHeld'],
  purge: ['bDeadLettersHeld'],
  revert: ['bCompletes'],
};

/** Statements of this database (but this one) waiting for a lock. */
async function waitingForLocks(): Promise<number> {
  const { rows } = await env.pool.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity
     where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock'`,
  );
  return rows[0]!.n;
}

/** Resolves once `step` finished or one more statement than `before` waits for a lock (the step is then in flight). */
async function finishedOrWaiting(step: Promise<unknown>, before: number): Promise<void> {
  let done = false;
  void step.then(
    () => (done = true),
    () => (done = true),
  );
  for (let tries = 0; tries < 400 && !done; tries += 1) {
    if ((await waitingForLocks()) > before) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  if (!done) throw new Error('a step neither finished nor waits for a lock after 4 s');
}

let runs = 0;

/** Plays one interleaving: `order` ranks the steps; the first ready step by rank is sent next. */
async function play(order: readonly number[]): Promise<void> {
  runs += 1;
  const batchId = `zf${runs}`;
  const held = `${batchId}-held`;
  const free = `${batchId}-free`;
  await windfall.producer.enqueueRewards(
    [
      { rewardId: `${batchId}-h1`, uid: held, amount: 300 },
      { rewardId: `${batchId}-h2`, uid: held, amount: 200 },
      { rewardId: `${batchId}-f1`, uid: free, amount: 7 },
    ],
    { batchId },
  );
  const settlement = new GroupSettlement(groupSettlementOptions(statements, db, { lockWaitMs: 30_000 }));
  const claimA = await claimChunk(db, batchId, 0);
  if (claimA.kind !== 'claimed') throw new Error('not claimed');
  const a = await loadClaimedChunk(db, batchId, 0, claimA);

  let holder: pg.PoolClient | undefined;
  let b: { fence: string; tasks: UserTask[] } | undefined;
  const deadLettered: string[] = [];
  let purged = false;
  let reverted = false;
  const sent = new Map<Step, Promise<unknown>>();
  const finished = new Set<Step>();
  const aOutcomes: UserOutcome[] = [];

  const run: Record<Step, () => Promise<unknown>> = {
    hold: async () => {
      holder = await db.connect();
      await holder.query('begin');
      await holder.query(`insert into wallets (uid, balance) values ($1, 0) on conflict do nothing`, [held]);
      await holder.query('select 1 from wallets where uid = $1 for update', [held]);
    },
    release: async () => {
      await holder!.query('commit');
      holder!.release();
      holder = undefined;
    },
    aSends: async () => aOutcomes.push(...(await settlement.settleAll(a.tasks))),
    // the stale attempt gives the free user up (its last attempt): allowed only while it still owns the chunk
    aDeadLettersFree: async () => {
      try {
        const written = await recordChunkDeadLetters(
          db,
          { kind: 'chunk', batchId, chunkNo: 0, fence: a.tasks[0]!.source.fence },
          [
            {
              batchId,
              chunkNo: 0,
              shard: 0,
              uid: free,
              reason: 'DB_ERROR',
              error: 'gave up',
              attempts: 3,
              rewardIds: null,
            },
          ],
        );
        deadLettered.push(...written.entries.flatMap((entry) => entry.rewards.map((reward) => reward.rewardId)));
      } catch (error) {
        if (!(error instanceof FencedOutError)) throw error;
        expect(sent.has('bClaims'), 'fenced out although no other attempt claimed the chunk').toBe(true);
      }
    },
    bClaims: async () => {
      const claim = await claimChunk(db, batchId, 0, 60_000);
      if (claim.kind !== 'claimed') throw new Error('B could not claim');
      b = { fence: claim.fence, tasks: (await loadClaimedChunk(db, batchId, 0, claim)).tasks };
    },
    bSettlesFree: async () => {
      const task = b!.tasks.find((t) => t.uid === free);
      // under B's fence as it is now (its own dead-letter writer may have moved it on)
      if (task) {
        const now = { ...task, source: { ...task.source, fence: b!.fence } };
        expect((await settlement.settleAll([now]))[0]!.kind).toBe('settled');
      }
    },
    bDeadLettersHeld: async () => {
      if (!b!.tasks.some((t) => t.uid === held)) return;
      const written = await recordChunkDeadLetters(db, { kind: 'chunk', batchId, chunkNo: 0, fence: b!.fence }, [
        { batchId, chunkNo: 0, shard: 0, uid: held, reason: 'LOCK_BUSY', error: 'busy', attempts: 1, rewardIds: null },
      ]);
      b = { ...b!, fence: written.fence };
      deadLettered.push(...written.entries.flatMap((entry) => entry.rewards.map((reward) => reward.rewardId)));
    },
    bCompletes: async () => {
      await db.query(
        'update reward_chunks set completed_at = now() where batch_id = $1 and chunk_no = 0 and fence = $2',
        [batchId, b!.fence],
      );
      await db.query(`update reward_batches set status = 'completed' where batch_id = $1`, [batchId]);
    },
    purge: async () => {
      purged = (await purgeDeadLetters(db, { batchId })).length > 0;
    },
    revert: async () => {
      await revertBatch({ pool: db, wallet: windfall.wallet, logger: silentLogger() }, batchId);
      reverted = true;
    },
  };

  const ready = (step: Step): boolean => !sent.has(step) && NEEDS[step].every((need) => finished.has(need));
  const ranked = [...STEPS].sort((x, y) => order[STEPS.indexOf(x)]! - order[STEPS.indexOf(y)]!);
  while (sent.size < STEPS.length) {
    const next = ranked.find(ready);
    if (!next) {
      // everything left waits for a step in flight: let one finish
      const timer = setTimeout(() => {
        void env.pool
          .query(
            `select pid, state, wait_event_type, wait_event, left(query, 60) as q, pg_blocking_pids(pid) as by from pg_stat_activity where datname = current_database()`,
          )
          .then(({ rows }) => console.error(batchId, 'stuck', [...sent.keys()], [...finished], JSON.stringify(rows)));
      }, 5000);
      await Promise.race([...sent].filter(([step]) => !finished.has(step)).map(([, promise]) => promise));
      clearTimeout(timer);
      continue;
    }
    const before = await waitingForLocks();
    if (process.env['FUZZ_TRACE']) console.error(batchId, 'send', next, 'waiting', before);
    const step = next;
    const promise = run[step]().then(() => {
      finished.add(step);
      if (process.env['FUZZ_TRACE']) console.error(batchId, 'done', step);
    });
    sent.set(next, promise);
    await finishedOrWaiting(promise, before);
  }
  await Promise.all(sent.values());

  // the stale attempt settled, or was fenced out; never anything else
  for (const outcome of aOutcomes) expect(['settled', 'fenced']).toContain(outcome.kind);
  const { rows } = await db.query<{ operation_id: string }>(
    `select operation_id from ledger_entries where kind = 'reward' and batch_id = $1`,
    [batchId],
  );
  const paid = new Set(rows.map((row) => row.operation_id));
  // a dead-lettered reward (purged or not) was not paid, before or after
  for (const rewardId of deadLettered) expect(paid.has(rewardId), `${rewardId} dead-lettered and paid`).toBe(false);
  if (purged) expect(deadLettered.length).toBeGreaterThan(0);
  const { rows: wallets } = await db.query<{ uid: string; balance: string }>(
    `select uid, balance::text from wallets where uid = any($1::text[])`,
    [[held, free]],
  );
  const total = wallets.reduce((sum, wallet) => sum + BigInt(wallet.balance), 0n);
  if (reverted) expect(total, 'a reverted batch left money').toBe(0n);
  else
    expect(total).toBe(
      [...paid].reduce((sum, id) => sum + (id.endsWith('h1') ? 300n : id.endsWith('h2') ? 200n : 7n), 0n),
    );
}

describe('fuzz: the fence holds under random interleavings of a stale attempt, its rescuer and the operator', () => {
  it('whatever the order, nothing dead-lettered, purged or reverted is paid; balances match the ledger', async () => {
    // the orders the issue and ADR 0013 reason about, then random ones
    const examples: Step[][] = [
      [
        'hold',
        'aSends',
        'bClaims',
        'bDeadLettersHeld',
        'release',
        'bSettlesFree',
        'bCompletes',
        'purge',
        'revert',
        'aDeadLettersFree',
      ],
      ['hold', 'aSends', 'bClaims', 'bSettlesFree', 'bDeadLettersHeld', 'bCompletes', 'revert', 'release', 'purge'],
      ['bClaims', 'bDeadLettersHeld', 'purge', 'hold', 'aSends', 'release', 'bSettlesFree', 'bCompletes', 'revert'],
      ['bClaims', 'bSettlesFree', 'bDeadLettersHeld', 'bCompletes', 'revert', 'aSends', 'hold', 'release', 'purge'],
      ['hold', 'bClaims', 'aSends', 'bDeadLettersHeld', 'release', 'bSettlesFree', 'bCompletes', 'revert', 'purge'],
      ['hold', 'aSends', 'aDeadLettersFree', 'bClaims', 'release', 'bSettlesFree', 'bDeadLettersHeld', 'bCompletes'],
      ['bClaims', 'aDeadLettersFree', 'aSends', 'bSettlesFree', 'bDeadLettersHeld', 'bCompletes', 'purge', 'revert'],
      ['aDeadLettersFree', 'hold', 'aSends', 'bClaims', 'release', 'bDeadLettersHeld', 'bSettlesFree', 'bCompletes'],
    ];
    // (a step an example leaves out goes last)
    const ranks = (order: readonly Step[]): number[] =>
      STEPS.map((step) => (order.includes(step) ? order.indexOf(step) : order.length));
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: STEPS.length, maxLength: STEPS.length }),
        (order) => play(order),
      ),
      { numRuns: 60, examples: examples.map((order) => [ranks(order)]) },
    );
    expect(await ledgerMismatches(db)).toEqual([]);
    expect((await reconcile(db, { strict: true })).mismatches).toEqual([]);
  }, 180_000);
});
