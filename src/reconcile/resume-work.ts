import type pg from 'pg';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import { chunkJobId, replayJobId, type ChunkJobData, type ReplayJobData } from '../queue/job-data.js';
import { shardOf } from '../queue/shard-routing.js';
import type { WindfallQueues } from '../queue/windfall-queues.js';

/** What became of the job of an open chunk or unfinished replay: gone from Redis, failed for good, or completed. */
export type LostJobState = 'missing' | 'failed' | 'completed';

/** A job {@link resumeOpenWork} re-added (or would re-add, in a dry run). */
export interface ResumedJob {
  readonly jobId: string;
  readonly batchId: string;
  readonly shard: number;
  readonly was: LostJobState;
  readonly chunkNo?: number;
  readonly deadLetterId?: string;
}

/** The outcome of {@link resumeOpenWork}. */
export interface ResumeReport {
  readonly dryRun: boolean;
  /** Open chunks looked at. */
  readonly checkedChunks: number;
  /** Replayed dead-letter entries with unsettled rewards looked at. */
  readonly checkedReplays: number;
  readonly chunks: readonly ResumedJob[];
  readonly replays: readonly ResumedJob[];
  /** Batches whose hand-over to BullMQ had not finished and is now (enqueued_at was null). */
  readonly handedOver: readonly string[];
}

/** Options of {@link resumeOpenWork}. */
export interface ResumeOptions {
  /**
   * Only look at batches recorded (and replays started) at least this long ago. A batch being handed over right
   * now has open chunks whose jobs do not exist yet; re-adding them is harmless (same job ids) but pointless.
   * Default 60000.
   */
  readonly minAgeMs?: number;
  /** Only report; change nothing. Default false. */
  readonly dryRun?: boolean;
  /** Most open chunks looked at per call (oldest batches first). Default 100000. */
  readonly maxChunks?: number;
  readonly logger?: Logger;
}

// Open chunks of batches recorded at least $1 ms ago, oldest first.
const OPEN_CHUNKS_SQL = `
select c.batch_id, c.chunk_no, c.shard, b.enqueued_at is null as not_handed_over
from reward_chunks c join reward_batches b on b.batch_id = c.batch_id
where c.completed_at is null and b.created_at <= now() - make_interval(secs => $1::float8 / 1000)
order by b.created_at, c.batch_id, c.chunk_no
limit $2`;

// Replayed dead-letter entries whose replay has not finished: no entry was written by the replay, and some reward
// has no ledger entry yet (a finished replay leaves every reward in the ledger or in a new entry).
const UNFINISHED_REPLAYS_SQL = `
select d.id::text as id, d.batch_id, d.uid, d.shard
from dead_letters d
where d.state = 'replayed' and d.replayed_at <= now() - make_interval(secs => $1::float8 / 1000)
  and not exists (select 1 from dead_letters n where n.replay_of = d.id)
  and exists (
    select 1 from jsonb_array_elements(d.rewards) r(value)
    where not exists (select 1 from ledger_entries l where l.operation_id = r.value->>'rewardId')
  )
order by d.id
limit 10000`;

interface Candidate {
  readonly jobId: string;
  readonly shard: number;
}

/**
 * Finds which of the given jobs are gone from Redis, failed for good or completed (one pipeline per shard queue:
 * every key of a queue shares its hash tag, so this works on Redis Cluster too).
 */
async function lostJobs(queues: WindfallQueues, candidates: readonly Candidate[]): Promise<Map<string, LostJobState>> {
  const byShard = new Map<number, Candidate[]>();
  for (const candidate of candidates) {
    const list = byShard.get(candidate.shard) ?? [];
    list.push(candidate);
    byShard.set(candidate.shard, list);
  }
  const lost = new Map<string, LostJobState>();
  for (const [shard, list] of byShard) {
    const queue = queues.shard(shard);
    const client = queues.connection;
    for (let start = 0; start < list.length; start += 1000) {
      const slice = list.slice(start, start + 1000);
      const pipeline = client.pipeline();
      for (const { jobId } of slice) {
        pipeline.exists(queue.toKey(jobId));
        pipeline.zscore(queue.toKey('failed'), jobId);
        pipeline.zscore(queue.toKey('completed'), jobId);
      }
      const results = (await pipeline.exec()) ?? [];
      slice.forEach(({ jobId }, index) => {
        const [existsError, exists] = results[index * 3] ?? [];
        const [, failedScore] = results[index * 3 + 1] ?? [];
        const [, completedScore] = results[index * 3 + 2] ?? [];
        if (existsError) throw existsError;
        if (Number(exists) === 0) lost.set(jobId, 'missing');
        else if (failedScore !== null && failedScore !== undefined) lost.set(jobId, 'failed');
        else if (completedScore !== null && completedScore !== undefined) lost.set(jobId, 'completed');
      });
    }
  }
  return lost;
}

/**
 * The recovery path for work that PostgreSQL says is open but Redis no longer runs: the jobs of open chunks that
 * are missing (Redis lost them: a restart without AOF, a flush, eviction), failed for good (BullMQ gave up: a job
 * that stalled more than `maxStalledCount` times, a database outage longer than the job's attempts) or completed
 * while the chunk stayed open; and replay jobs of dead-letter entries that never finished. Each is re-added under
 * its deterministic job id (a failed or completed job is removed first, so it starts with fresh attempts).
 *
 * Safe at any time and from several processes at once: a job that exists and is waiting, active or delayed is
 * left alone, adding an existing job id is a no-op, and re-running a job is idempotent (the ledger decides).
 */
export async function resumeOpenWork(pool: pg.Pool, queues: WindfallQueues, options: ResumeOptions = {}): Promise<ResumeReport> {
  const logger = options.logger ?? silentLogger();
  const minAgeMs = options.minAgeMs ?? 60_000;
  const dryRun = options.dryRun ?? false;
  const shards = queues.settings.shards;

  const chunkRows = (
    await pool.query<{ batch_id: string; chunk_no: number; shard: number; not_handed_over: boolean }>(OPEN_CHUNKS_SQL, [minAgeMs, options.maxChunks ?? 100_000])
  ).rows;
  const replayRows = (await pool.query<{ id: string; batch_id: string; uid: string; shard: number }>(UNFINISHED_REPLAYS_SQL, [minAgeMs])).rows;

  const chunkJobs = chunkRows.map((row) => ({ row, jobId: chunkJobId(row.batch_id, row.chunk_no), shard: row.shard }));
  const replayJobs = replayRows.map((row) => ({
    row,
    jobId: replayJobId(row.id),
    shard: row.shard < shards ? row.shard : shardOf(row.uid, shards),
  }));
  const lost = await lostJobs(queues, [...chunkJobs, ...replayJobs]);

  const readd = async (shard: number, jobId: string, was: LostJobState, add: () => Promise<unknown>): Promise<void> => {
    if (dryRun) return;
    if (was !== 'missing') await queues.shard(shard).remove(jobId);
    await add();
  };

  const chunks: ResumedJob[] = [];
  for (const { row, jobId, shard } of chunkJobs) {
    const was = lost.get(jobId);
    if (!was) continue;
    const data: ChunkJobData = { kind: 'chunk', batchId: row.batch_id, chunkNo: row.chunk_no, shard };
    await readd(shard, jobId, was, () => queues.shard(shard).add('chunk', data, { jobId }));
    chunks.push({ jobId, batchId: row.batch_id, shard, was, chunkNo: row.chunk_no });
  }
  const replays: ResumedJob[] = [];
  for (const { row, jobId, shard } of replayJobs) {
    const was = lost.get(jobId);
    if (!was) continue;
    const data: ReplayJobData = { kind: 'replay', deadLetterId: row.id, batchId: row.batch_id, uid: row.uid, shard };
    await readd(shard, jobId, was, () => queues.shard(shard).add('replay', data, { jobId }));
    replays.push({ jobId, batchId: row.batch_id, shard, was, deadLetterId: row.id });
  }

  // A batch whose producer stopped half-way through the hand-over: every chunk now has its job.
  const handedOver = [...new Set(chunkRows.filter((row) => row.not_handed_over).map((row) => row.batch_id))];
  if (!dryRun && handedOver.length > 0) {
    await pool.query('update reward_batches set enqueued_at = now() where batch_id = any($1::text[]) and enqueued_at is null', [handedOver]);
  }

  if (chunks.length > 0 || replays.length > 0) {
    const summarize = (jobs: readonly ResumedJob[]) => jobs.slice(0, 20).map((job) => `${job.jobId}:${job.was}`);
    logger.warn(
      { dryRun, chunks: chunks.length, replays: replays.length, jobs: summarize([...chunks, ...replays]) },
      dryRun ? 'open work without a live job found (dry run: nothing re-added)' : 'open work without a live job found: jobs re-added',
    );
  }
  return { dryRun, checkedChunks: chunkRows.length, checkedReplays: replayRows.length, chunks, replays, handedOver };
}
