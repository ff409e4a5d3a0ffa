import { describe, expect, it } from 'vitest';
import { compareC, PLAN_CHUNKS_SQL } from '../src/staging/chunk-plan.js';
import { seededRandom } from '../src/runtime/seeded-random.js';
import { loadChunkWork } from '../src/worker/job-work.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

interface ChunkRow {
  chunk_no: number;
  shard: number;
  first_uid: string;
  last_uid: string;
  users: number;
  rewards: number;
}

/** uids that sort differently by UTF-16 units and by code point, beside plain ASCII ones. */
function uidOf(n: number): string {
  const kinds = ['u', 'U', 'ü', '\u{e000}x', '\u{1f600}y', '\u{ffff}z', 'a b', '~'];
  return `${kinds[n % kinds.length]}${n}`;
}

describe('chunk plan counted while reading', () => {
  it('orders strings like the "C" collation (by code point, not by UTF-16 unit)', async () => {
    const samples = [
      'a',
      'b',
      'ab',
      '',
      'ü',
      '\u{e000}',
      '\u{ffff}',
      '\u{1f600}',
      '\u{10000}',
      'Z',
      '~',
      'a\u{1f600}',
      'a\u{ffff}',
    ];
    const { rows } = await env.pool.query<{ s: string }>(
      `select s from unnest($1::text[]) as s order by s collate "C"`,
      [samples],
    );
    expect([...samples].sort(compareC)).toEqual(rows.map((row) => row.s));
    // the UTF-16 order differs for these: the test above would fail with a plain sort
    expect([...samples].sort()).not.toEqual(rows.map((row) => row.s));
  });

  it('is the plan PostgreSQL makes from the staged rows, for uids that sort differently in UTF-16', async () => {
    const windfall = await env.open({ recoveryIntervalMs: 0, chunkSize: 40 });
    const random = seededRandom(7);
    // users with 1–9 rewards each, in file order, so chunk edges fall on many different users
    const rewards = [];
    for (let n = 0; n < 3000; n += 1) {
      const user = Math.floor(random() * 700);
      rewards.push({ rewardId: `cp-${n}`, uid: uidOf(user), amount: 1 });
    }
    await windfall.producer.enqueueRewards(rewards, { batchId: 'cp-batch' });
    const planned = await env.pool.query<ChunkRow>(
      `select chunk_no, shard, first_uid, last_uid, users, rewards from reward_chunks where batch_id = 'cp-batch' order by chunk_no`,
    );
    expect(planned.rows.length).toBeGreaterThan(50);
    // each chunk's recorded users are its staged users, in "C" order, with their reward counts
    const users = await env.pool.query<{
      chunk_no: number;
      uids: string[];
      user_rewards: number[];
      staged_uids: string[];
      staged_rewards: number[];
    }>(
      `select c.chunk_no, c.uids, c.user_rewards,
              array_agg(s.uid order by s.uid) as staged_uids, array_agg(s.n order by s.uid) as staged_rewards
       from reward_chunks c
       join (select shard, uid, count(*)::int as n from reward_batch_items where batch_id = 'cp-batch' group by shard, uid) s
         on s.shard = c.shard and s.uid between c.first_uid and c.last_uid
       where c.batch_id = 'cp-batch' group by c.chunk_no, c.uids, c.user_rewards order by c.chunk_no`,
    );
    expect(users.rows).toHaveLength(planned.rows.length);
    for (const chunk of users.rows) {
      expect([chunk.chunk_no, chunk.uids, chunk.user_rewards]).toEqual([
        chunk.chunk_no,
        chunk.staged_uids,
        chunk.staged_rewards,
      ]);
    }

    // what the SQL plan makes of the same staged rows (in a transaction rolled back)
    const client = await env.pool.connect();
    try {
      await client.query('begin');
      await client.query(`delete from reward_chunks where batch_id = 'cp-batch'`);
      await client.query(PLAN_CHUNKS_SQL, ['cp-batch', 40]);
      const fromSql = await client.query<ChunkRow>(
        `select chunk_no, shard, first_uid, last_uid, users, rewards from reward_chunks where batch_id = 'cp-batch' order by chunk_no`,
      );
      expect(planned.rows).toEqual(fromSql.rows);
    } finally {
      await client.query('rollback');
      client.release();
    }
  });
});

describe('chunk loads', () => {
  it('a chunk without recorded users (planned by PostgreSQL, or staged before migration 0003) loads the same users from its staged rows', async () => {
    const windfall = await env.open({ recoveryIntervalMs: 0, chunkSize: 25 });
    const rewards = Array.from({ length: 400 }, (_, n) => ({
      rewardId: `cl-${n}`,
      uid: uidOf(n % 90),
      amount: 1 + (n % 3),
    }));
    const batch = await windfall.producer.enqueueRewards(rewards, { batchId: 'cl-batch' });
    // each load claims the chunks anew (their fences move on): compare the users and their rewards
    const load = async (): Promise<unknown[]> => {
      const works = [];
      for (let chunkNo = 0; chunkNo < batch.chunks; chunkNo += 1) {
        const work = await loadChunkWork(env.pool, 'cl-batch', chunkNo);
        works.push({
          ...work,
          tasks: work?.tasks.map((task) => ({ ...task, source: { ...task.source, fence: 'any' } })),
        });
      }
      return works;
    };
    const recorded = await load();
    const { rowCount } = await env.pool.query(
      `update reward_chunks set uids = null, user_rewards = null where batch_id = 'cl-batch'`,
    );
    expect(rowCount).toBe(batch.chunks);
    expect(await load()).toEqual(recorded);
    expect(recorded.flatMap((work) => (work as { tasks: unknown[] }).tasks)).toHaveLength(90);
  });
});
