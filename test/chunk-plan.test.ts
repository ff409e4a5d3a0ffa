import { describe, expect, it } from 'vitest';
import { compareC, PLAN_CHUNKS_SQL } from '../src/batch/chunk-plan.js';
import { seededRandom } from '../src/runtime/seeded-random.js';
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
    const samples = ['a', 'b', 'ab', '', 'ü', '\u{e000}', '\u{ffff}', '\u{1f600}', '\u{10000}', 'Z', '~', 'a\u{1f600}', 'a\u{ffff}'];
    const { rows } = await env.pool.query<{ s: string }>(`select s from unnest($1::text[]) as s order by s collate "C"`, [samples]);
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
