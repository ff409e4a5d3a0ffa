import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { markReplayed, purgeDeadLetters, type DeadLetterEntry } from '../src/dead-letters/dead-letter-store.js';
import { claimEntry } from '../src/db/fences.js';
import { recordDeadLetters } from './support/dead-letter-fixtures.js';
import { replayJobId } from '../src/queue/job-data.js';
import { eventually, runCli } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();
/** Two more pools: the purge and the claim race from different connections, as from different processes. */
let purger: pg.Pool;
let claimer: pg.Pool;
beforeAll(() => {
  purger = new pg.Pool({ connectionString: env.databaseUrl, max: 8 });
  claimer = new pg.Pool({ connectionString: env.databaseUrl, max: 8 });
  // pg-pool's end() resolves before its connections close: the test database's forced drop may then cut one
  for (const pool of [purger, claimer]) {
    pool.on('error', () => undefined);
    pool.on('connect', (client) => client.on('error', () => undefined));
  }
});
afterAll(async () => {
  await purger.end();
  await claimer.end();
});

let sequence = 0;
/** Records `count` open LOCK_BUSY entries of batch `batchId` (one user each, one reward each), on shard 0. */
async function openEntries(batchId: string, count: number): Promise<DeadLetterEntry[]> {
  return recordDeadLetters(
    env.pool,
    Array.from({ length: count }, () => {
      sequence += 1;
      const uid = `race-u${sequence}`;
      return {
        source: JSON.stringify(['test', batchId, sequence]),
        batchId,
        chunkNo: 0,
        replayOf: null,
        uid,
        shard: 0,
        rewards: [{ rewardId: `race-r${sequence}`, uid, amount: 5n, description: null }],
        reason: 'LOCK_BUSY' as const,
        error: 'lock busy (test)',
        attempts: 1,
      };
    }),
  );
}

async function stateOf(id: string): Promise<string> {
  const { rows } = await env.pool.query<{ state: string }>('select state from dead_letters where id = $1', [id]);
  return rows[0]!.state;
}

/** Waits until some backend of this test's database waits for a row lock (a statement blocked behind ours). */
async function someoneWaitsForALock(): Promise<void> {
  await eventually(async () => {
    const { rows } = await env.pool.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
    );
    return rows[0]!.n > 0;
  }, 'a statement to wait for the row lock held by the test');
}

describe('a purge and a replay of the same entry: exactly one takes effect', () => {
  it('claimEntry after a purge answers null; a purge after a claim purges nothing', async () => {
    const [first, second] = await openEntries('race-order', 2);
    expect(await purgeDeadLetters(purger, { ids: [first!.id] })).toEqual([first!.id]);
    expect(await claimEntry(claimer, first!.id)).toBeNull();
    expect(await stateOf(first!.id)).toBe('purged');

    expect(await claimEntry(claimer, second!.id)).toMatch(/^\d+$/);
    expect(await purgeDeadLetters(purger, { ids: [second!.id] })).toEqual([]);
    expect(await stateOf(second!.id)).toBe('replayed');
    // claiming again (a re-run job) still replays; the first replayed_at stays
    const before = await env.pool.query<{ replayed_at: Date }>('select replayed_at from dead_letters where id = $1', [
      second!.id,
    ]);
    expect(await claimEntry(claimer, second!.id)).toMatch(/^\d+$/);
    const after = await env.pool.query<{ replayed_at: Date }>('select replayed_at from dead_letters where id = $1', [
      second!.id,
    ]);
    expect(after.rows[0]!.replayed_at).toEqual(before.rows[0]!.replayed_at);
    // an entry that is not recorded (or an id that is not one) is skipped
    expect(await claimEntry(claimer, '987654321')).toBeNull();
    expect(await claimEntry(claimer, 'not-an-id')).toBeNull();
  });

  it('a claim that waits behind an uncommitted purge answers skip once the purge commits (and the reverse)', async () => {
    const [purgedFirst, claimedFirst] = await openEntries('race-blocked', 2);
    const purge = await purger.connect();
    try {
      await purge.query('begin');
      expect(await purgeDeadLetters(purge, { ids: [purgedFirst!.id] })).toEqual([purgedFirst!.id]);
      const claim = claimEntry(claimer, purgedFirst!.id);
      await someoneWaitsForALock();
      await purge.query('commit');
      expect(await claim).toBeNull();
    } finally {
      purge.release();
    }
    expect(await stateOf(purgedFirst!.id)).toBe('purged');

    const claim = await claimer.connect();
    try {
      await claim.query('begin');
      expect(await claimEntry(claim, claimedFirst!.id)).toMatch(/^\d+$/);
      const purge = purgeDeadLetters(purger, { ids: [claimedFirst!.id] });
      await someoneWaitsForALock();
      await claim.query('commit');
      expect(await purge).toEqual([]);
    } finally {
      claim.release();
    }
    expect(await stateOf(claimedFirst!.id)).toBe('replayed');
  });

  it('run concurrently on 300 entries: each ends purged or replayed, never both, as each side was told', async () => {
    const entries = await openEntries('race-many', 300);
    const outcomes = await Promise.all(
      entries.map(async (entry, index) => {
        // both sides in flight at once on different connections, alternating which one is sent first
        let claimed: Promise<string | null>;
        let purged: Promise<string[]>;
        if (index % 2 === 0) {
          claimed = claimEntry(claimer, entry.id);
          purged = purgeDeadLetters(purger, { ids: [entry.id] });
        } else {
          purged = purgeDeadLetters(purger, { ids: [entry.id] });
          claimed = claimEntry(claimer, entry.id);
        }
        const [claim, purge] = await Promise.all([claimed, purged]);
        return { id: entry.id, claimed: claim, purged: purge.includes(entry.id) };
      }),
    );
    const { rows } = await env.pool.query<{ id: string; state: string }>(
      `select id::text, state from dead_letters where batch_id = 'race-many'`,
    );
    const states = new Map(rows.map((row) => [row.id, row.state]));
    for (const outcome of outcomes) {
      expect(outcome.claimed !== null, `entry ${outcome.id}: exactly one of claim and purge wins`).toBe(
        !outcome.purged,
      );
      expect(states.get(outcome.id)).toBe(outcome.purged ? 'purged' : 'replayed');
    }
  });

  it('markReplayed answers the state the entry ends in: replayed (now or by its job), purged, missing', async () => {
    const [a, b, c] = await openEntries('race-mark', 3);
    expect(await markReplayed(env.pool, a!.id)).toBe('replayed');
    expect(await claimEntry(claimer, b!.id)).toMatch(/^\d+$/);
    expect(await markReplayed(env.pool, b!.id)).toBe('replayed');
    await purgeDeadLetters(purger, { ids: [c!.id] });
    expect(await markReplayed(env.pool, c!.id)).toBe('purged');
    expect(await markReplayed(env.pool, '987654321')).toBe('missing');
  });
});

describe('windfall dlq replay when a purge lands between the enqueue and the mark', () => {
  /** Runs `dlq replay <id> --json` while `hold` holds the entry's row in an open transaction; commits once the job is in Redis. */
  async function replayWhileHeld(id: string, hold: (client: pg.PoolClient) => Promise<void>) {
    const windfall = await env.open();
    const queue = windfall.queues.shard(0);
    const client = await purger.connect();
    try {
      await client.query('begin');
      await hold(client);
      const run = runCli(['dlq', 'replay', id, '--json'], env.env());
      // the command has added the job and now waits for the row to mark it
      await eventually(async () => (await queue.getJob(replayJobId(id))) !== undefined, 'the replay job to be added');
      await someoneWaitsForALock();
      await client.query('commit');
      const result = await run;
      return { result, job: await queue.getJob(replayJobId(id)) };
    } finally {
      client.release();
    }
  }

  it('reports the entry skipped as purged (exit 1) and takes its job out again', async () => {
    const [entry] = await openEntries('race-cli-purge', 1);
    const { result, job } = await replayWhileHeld(entry!.id, async (client) => {
      expect(await purgeDeadLetters(client, { ids: [entry!.id] })).toEqual([entry!.id]);
    });
    expect(result.code, result.stderr).toBe(1);
    const report = JSON.parse(result.stdout) as {
      replayed: unknown[];
      skipped: { id: string; state: string; why: string }[];
    };
    expect(report.replayed).toEqual([]);
    expect(report.skipped).toEqual([
      { id: entry!.id, state: 'purged', why: expect.stringContaining('purged while its replay was being enqueued') },
    ]);
    expect(result.stderr).toContain(
      `entry ${entry!.id} not replayed: entry was purged while its replay was being enqueued`,
    );
    expect(await stateOf(entry!.id)).toBe('purged');
    expect(job).toBeUndefined();
    // the job would not have applied anything anyway
    expect(await claimEntry(claimer, entry!.id)).toBeNull();
  });

  it('counts an entry its job claimed first as replayed (exit 0)', async () => {
    const [entry] = await openEntries('race-cli-claim', 1);
    const { result, job } = await replayWhileHeld(entry!.id, async (client) => {
      expect(await claimEntry(client, entry!.id)).toMatch(/^\d+$/);
    });
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as { replayed: { id: string }[]; skipped: unknown[] };
    expect(report.replayed.map((replayed) => replayed.id)).toEqual([entry!.id]);
    expect(report.skipped).toEqual([]);
    expect(job).toBeDefined();
    expect(await stateOf(entry!.id)).toBe('replayed');
  });
});
