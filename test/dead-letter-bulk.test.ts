import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeadLetterService } from '../src/dead-letters/dead-letter-service.js';
import { DEAD_LETTER_PAGE_SIZE } from '../src/dead-letters/dead-letter-store.js';
import { replayJobId } from '../src/queue/job-data.js';
import { queueSettingsOf } from '../src/queue/queue-settings.js';
import { WindfallQueues } from '../src/queue/windfall-queues.js';
import { runCli } from './support/cli.js';
import { countingRedis, type RedisTraffic } from './support/counting-redis.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

/** A pool counting the statements it is sent: each one is a round trip (none are pipelined). */
class CountingPool extends pg.Pool {
  statements = 0;
  override query(...args: unknown[]): never {
    this.statements += 1;
    return (super.query as (...a: unknown[]) => never)(...args);
  }
}

let pool: CountingPool;
let queues: WindfallQueues;
let redisTraffic: RedisTraffic;
let closeRedis: () => void;

beforeAll(async () => {
  pool = new CountingPool({ connectionString: env.databaseUrl, max: 4 });
  pool.on('error', () => undefined);
  const counting = await countingRedis(env.redisUrl, env.prefix);
  redisTraffic = counting.counts;
  closeRedis = () => counting.redis.disconnect();
  queues = new WindfallQueues(counting.redis, queueSettingsOf(env.config()));
});
afterAll(async () => {
  await queues?.close();
  closeRedis?.();
  await pool?.end();
});

/**
 * Records `count` open entries of batch `batchId` in one statement, each of one user with `rewards` rewards of 7
 * (the fixtures' JSON path would take a while for thousands). Returns their ids, in order.
 */
async function entries(batchId: string, count: number, rewards = 2, reason = 'LOCK_BUSY'): Promise<string[]> {
  const { rows } = await env.pool.query<{ id: string }>(
    `insert into dead_letters (source, batch_id, chunk_no, uid, shard, rewards, reward_count, amount, reason, error, attempts)
     select $1 || ':' || g, $1, 0, $1 || '-u' || g, g % 8,
            (select jsonb_agg(jsonb_build_object('rewardId', $1 || '-r' || g || '-' || k, 'uid', $1 || '-u' || g, 'amount', '7'))
             from generate_series(1, $3::int) k),
            $3::int, 7 * $3::int, $4, 'lock busy (test)', 3
     from generate_series(1, $2::int) g
     returning id::text as id`,
    [batchId, count, rewards, reason],
  );
  return rows.map((row) => row.id).sort((a, b) => Number(a) - Number(b));
}

async function states(batchId: string): Promise<Record<string, number>> {
  const { rows } = await env.pool.query<{ state: string; n: number }>(
    'select state, count(*)::int as n from dead_letters where batch_id = $1 group by state',
    [batchId],
  );
  return Object.fromEntries(rows.map((row) => [row.state, row.n]));
}

async function auditOf(action: string, target: string) {
  const { rows } = await env.pool.query<{ details: Record<string, unknown>; result: Record<string, unknown> }>(
    'select details, result from audit_log where action = $1 and target = $2 order by id',
    [action, target],
  );
  return rows;
}

describe('bulk dead-letter actions work in pages', () => {
  it('replays 2,500 entries in three pages: one addBulk per shard and two statements per page; the report and the audit record stay bounded', async () => {
    const ids = await entries('bulk-replay', 2500);
    const deadLetters = new DeadLetterService(pool, queues);

    const dry = await deadLetters.replay({ batchId: 'bulk-replay' }, { dryRun: true });
    expect(dry).toMatchObject({
      dryRun: true,
      replayedCount: 2500,
      rewardCount: 5000,
      skippedCount: 0,
      truncated: true,
    });
    expect(dry.replayed.map((entry) => entry.id)).toEqual(ids.slice(0, 1000));
    expect(await states('bulk-replay')).toEqual({ open: 2500 });

    pool.statements = 0;
    redisTraffic.reset();
    const report = await deadLetters.replay({ batchId: 'bulk-replay' }, { actor: 'bulk-test' });
    expect(report).toMatchObject({ dryRun: false, replayedCount: 2500, rewardCount: 5000, skippedCount: 0 });
    expect(report.replayed).toHaveLength(1000);
    expect(report.replayed[0]).toEqual({
      id: ids[0],
      batchId: 'bulk-replay',
      uid: 'bulk-replay-u1',
      rewards: 2,
      jobId: replayJobId(ids[0]!),
    });
    expect(await states('bulk-replay')).toEqual({ replayed: 2500 });
    // every entry's job is in its shard queue
    let jobs = 0;
    for (let shard = 0; shard < 8; shard += 1) jobs += await queues.shard(shard).getPrioritizedCount();
    expect(jobs).toBe(2500);

    // PostgreSQL: per page one statement reads it (and marks its batches processing), one marks it replayed; then
    // the audit record. Not one per entry.
    const pages = Math.ceil(2500 / DEAD_LETTER_PAGE_SIZE);
    expect(pool.statements).toBeLessThanOrEqual(2 * pages + 1);
    // Redis: the jobs are added by one pipeline (addBulk) per shard queue per page, not one round trip per entry
    const pipelines = redisTraffic.commandsByRoundTrip.filter((commands) => commands > 1);
    expect(pipelines.length).toBeLessThanOrEqual(8 * pages);
    expect(pipelines.reduce((sum, commands) => sum + commands, 0)).toBeGreaterThanOrEqual(2500);

    const [record, ...more] = await auditOf('dlq.replay', 'dead-letters:batch=bulk-replay');
    expect(more).toEqual([]);
    expect(record!.details).toEqual({ filter: { batchId: 'bulk-replay' } });
    expect(record!.result).toMatchObject({ replayedCount: 2500, rewardCount: 5000, skippedCount: 0, skipped: [] });
    expect(record!.result['replayed']).toEqual(ids.slice(0, 100));
  });

  it('purges 2,500 entries by filter in pages: one audit record with the count and 100 ids; a dry run counts them all', async () => {
    const ids = await entries('bulk-purge', 2500, 3, 'DB_ERROR');
    await entries('bulk-purge-other', 10, 1, 'DB_ERROR');
    const deadLetters = new DeadLetterService(pool, queues);

    const dry = await deadLetters.purge({ batchId: 'bulk-purge' }, { dryRun: true });
    expect(dry).toEqual({ dryRun: true, purged: ids.slice(0, 1000), count: 2500, truncated: true });
    expect(await states('bulk-purge')).toEqual({ open: 2500 });
    expect(await auditOf('dlq.purge', 'dead-letters:batch=bulk-purge')).toEqual([]);

    const report = await deadLetters.purge({ batchId: 'bulk-purge', reason: 'DB_ERROR' }, { actor: 'bulk-test' });
    expect(report).toEqual({ dryRun: false, purged: ids.slice(0, 1000), count: 2500, truncated: true });
    expect(await states('bulk-purge')).toEqual({ purged: 2500 });
    expect(await states('bulk-purge-other')).toEqual({ open: 10 });
    const records = await auditOf('dlq.purge', 'dead-letters:batch=bulk-purge,reason=DB_ERROR');
    expect(records).toHaveLength(1);
    expect(records[0]!.result).toEqual({ count: 2500, purged: ids.slice(0, 100) });

    // an id selection of a purged entry and an open one purges only the open one
    const [other] = await entries('bulk-purge-ids', 1, 1);
    expect(await deadLetters.purge({ ids: [ids[0]!, other!] })).toEqual({
      dryRun: false,
      purged: [other],
      count: 1,
      truncated: false,
    });
  });

  it('records a long id list under a bounded target (the target column is indexed); details keep every id', async () => {
    const ids = await entries('bulk-ids', 1000, 1);
    const deadLetters = new DeadLetterService(pool, queues);
    const report = await deadLetters.replay({ ids }, { actor: 'bulk-test' });
    expect(report).toMatchObject({ replayedCount: 1000, skippedCount: 0, truncated: false });
    const target = `dead-letters:${ids.slice(0, 20).join(',')},…(1000 ids)`;
    const [record] = await auditOf('dlq.replay', target);
    expect(record).toBeDefined();
    expect((record!.details['filter'] as { ids: string[] }).ids).toEqual(ids);
    expect(record!.result['replayed']).toEqual(ids.slice(0, 100));
  });
});

describe('the CLI bounds what one request names and what one entry shows', () => {
  it('refuses more than 1,000 ids (exit 2, naming the limit)', async () => {
    const ids = Array.from({ length: 1001 }, (_, n) => String(n + 1));
    for (const args of [
      ['dlq', 'replay', ...ids],
      ['dlq', 'replay', ...ids, '--dry-run'],
      ['dlq', 'purge', ...ids, '--yes'],
    ]) {
      const result = await runCli(args, env.env());
      expect(result.code, args.slice(0, 2).join(' ')).toBe(2);
      expect(result.stderr).toContain('at most 1000 entry ids in one request, got 1001');
    }
  });

  it('lists at most 100 rewards per entry unless asked, and says how many it holds and their amount', async () => {
    const [id] = await entries('bulk-show', 1, 250);
    const list = await runCli(['dlq', 'list', '--batch', 'bulk-show', '--json'], env.env());
    expect(list.code, list.stderr).toBe(0);
    const [listed] = JSON.parse(list.stdout) as { rewards: { rewardId: string }[]; rewardCount: number }[];
    expect(listed).toMatchObject({ rewardCount: 250, amount: '1750' });
    expect(listed!.rewards.map((reward) => reward.rewardId)).toEqual(
      Array.from({ length: 100 }, (_, n) => `bulk-show-r1-${n + 1}`),
    );
    const none = JSON.parse(
      (await runCli(['dlq', 'list', '--batch', 'bulk-show', '--rewards', '0', '--json'], env.env())).stdout,
    ) as { rewards: unknown[]; rewardCount: number }[];
    expect(none[0]).toMatchObject({ rewards: [], rewardCount: 250 });

    const all = JSON.parse((await runCli(['dlq', 'show', id!, '--rewards', 'all', '--json'], env.env())).stdout) as {
      rewards: unknown[];
    };
    expect(all.rewards).toHaveLength(250);
    const human = await runCli(['dlq', 'show', id!], env.env());
    expect(human.stdout).toContain('250 (amount 1750)');
    expect(human.stdout).toContain('the first 100 of 250 rewards');
    const bad = await runCli(['dlq', 'list', '--rewards', 'all'], env.env());
    expect(bad.code).toBe(2);
  });
});
