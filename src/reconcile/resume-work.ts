import type pg from 'pg';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import { chunkJobId, replayJobId, type ChunkJobData, type ReplayJobData } from '../queue/job-data.js';
import { chunkJobPriority, replayJobPriority, type BatchPriority } from '../queue/job-priority.js';
import { shardOf } from '../queue/shard-routing.js';
import type { WindfallQueues } from '../queue/windfall-queues.js';
import { describeStrandedBatches, type StrandedBatch } from '../queue/stranded-chunks.js';
import { UNFINISHED_REPLAY_REWARDS_CTE } from './replay-progress.js';
import { withDeadline } from '../db/silent-connections.js';

/**
 * The scans of open work read every open chunk and unfinished replay: on a large database they may run long, so they
 * get a deadline of their own rather than a worker pool's (which takes a statement that long as a silent connection), ms.
 */
const SCAN_DEADLINE_MS = 10 * 60_000;

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

/**
 * An open chunk in a shard queue beyond `WINDFALL_SHARDS` (its batch was staged with more shards): no worker of this
 * setting reads that queue, so {@link resumeOpenWork} reports it instead of re-adding its job there.
 */
export interface StrandedChunk {
  readonly jobId: string;
  readonly batchId: string;
  readonly chunkNo: number;
  readonly shard: number;
  /** The shard count the batch was staged with. */
  readonly stagedShards: number;
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
  /** Open chunks left alone because their shard is beyond the configured shard count (see {@link StrandedChunk}). */
  readonly stranded: readonly StrandedChunk[];
  /** Batches whose hand-over to BullMQ had not finished and is now (enqueued_at was null). */
  readonly handedOver: readonly string[];
}

/** Options of {@link resumeOpenWork}. */
export interface ResumeOptions {
  /**
   * Leave alone batches still being handed over (their producer is adding the chunk jobs right now) until they are
   * this old. Batches whose hand-over has finished, and replays, are looked at whatever their age: all their jobs
   * were added, so a missing one is lost. Default 60000.
   */
  readonly minAgeMs?: number;
  /** Only report; change nothing. Default false. */
  readonly dryRun?: boolean;
  /** Most open chunks looked at per call (oldest batches first). Default 100000. */
  readonly maxChunks?: number;
  readonly logger?: Logger;
}

// Open chunks, oldest batches first. A batch whose hand-over has finished (enqueued_at set) had every job added, so
// a missing job there is lost whatever its age; a batch still being handed over is left alone until it is $1 ms old.
const OPEN_CHUNKS_SQL = `
select c.batch_id, c.chunk_no, c.shard, b.shards as staged_shards, b.enqueued_at is null as not_handed_over, b.priority,
  (row_number() over (partition by c.batch_id, c.shard order by c.chunk_no) - 1)::int as turn
from reward_chunks c join reward_batches b on b.batch_id = c.batch_id
where c.completed_at is null
  and (b.enqueued_at is not null or b.created_at <= now() - make_interval(secs => $1::float8 / 1000))
order by b.created_at, c.batch_id, c.chunk_no
limit $2`;

// Which of the given chunks are still open (read after Redis was: a chunk is marked complete before its job is).
const STILL_OPEN_CHUNKS_SQL = `
select c.batch_id, c.chunk_no
from reward_chunks c join unnest($1::text[], $2::int[]) as k(batch_id, chunk_no) on k.batch_id = c.batch_id and k.chunk_no = c.chunk_no
where c.completed_at is null`;

// Replayed dead-letter entries whose replay has not finished (replay-progress.ts). No age rule: the replay command
// adds the job before it marks the entry (and a job claims its entry itself), so a replayed entry without a job
// lost it.
const UNFINISHED_REPLAYS_SQL = (entryCondition?: string) => `
with ${UNFINISHED_REPLAY_REWARDS_CTE(entryCondition)}
select r.id::text as id, r.batch_id, r.uid, r.shard, coalesce(min(b.priority), 'normal') as priority
from unfinished_replay_rewards r left join reward_batches b on b.batch_id = r.batch_id
group by r.id, r.batch_id, r.uid, r.shard
order by r.id
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
 * its deterministic job id (a failed or completed job is removed first, so it starts with fresh attempts). Open
 * chunks on a shard beyond the configured count are reported (`stranded`), never re-added.
 *
 * Safe at any time and from several processes at once: a job that exists and is waiting, active or delayed is
 * left alone, adding an existing job id is a no-op, and re-running a job is idempotent (the ledger decides). Work
 * found lost is read again from PostgreSQL before it is re-added, so a job that just finished is not run again.
 */
export async function resumeOpenWork(
  pool: pg.Pool,
  queues: WindfallQueues,
  options: ResumeOptions = {},
): Promise<ResumeReport> {
  const logger = options.logger ?? silentLogger();
  const minAgeMs = options.minAgeMs ?? 60_000;
  const dryRun = options.dryRun ?? false;
  const shards = queues.settings.shards;

  const chunkRows = (
    await pool.query<{
      batch_id: string;
      chunk_no: number;
      shard: number;
      staged_shards: number;
      not_handed_over: boolean;
      priority: BatchPriority;
      turn: number;
    }>(withDeadline({ text: OPEN_CHUNKS_SQL, values: [minAgeMs, options.maxChunks ?? 100_000] }, SCAN_DEADLINE_MS))
  ).rows;
  const replayRows = (
    await pool.query<{ id: string; batch_id: string; uid: string; shard: number; priority: BatchPriority }>(
      withDeadline({ text: UNFINISHED_REPLAYS_SQL() }, SCAN_DEADLINE_MS),
    )
  ).rows;

  const stranded: StrandedChunk[] = chunkRows
    .filter((row) => row.shard >= shards)
    .map((row) => ({
      jobId: chunkJobId(row.batch_id, row.chunk_no),
      batchId: row.batch_id,
      chunkNo: row.chunk_no,
      shard: row.shard,
      stagedShards: row.staged_shards,
    }));
  const chunkJobs = chunkRows
    .filter((row) => row.shard < shards)
    .map((row) => ({ row, jobId: chunkJobId(row.batch_id, row.chunk_no), shard: row.shard }));
  const replayJobs = replayRows.map((row) => ({
    row,
    jobId: replayJobId(row.id),
    shard: row.shard < shards ? row.shard : shardOf(row.uid, shards),
  }));
  const lost = await lostJobs(queues, [...chunkJobs, ...replayJobs]);

  // read again what Redis says is lost: work finished between the first read and Redis's answer is not redone
  const lostChunks = chunkJobs.filter(({ jobId }) => lost.has(jobId));
  const stillOpen = new Set<string>();
  if (lostChunks.length > 0) {
    const { rows } = await pool.query<{ batch_id: string; chunk_no: number }>(
      withDeadline(
        {
          text: STILL_OPEN_CHUNKS_SQL,
          values: [lostChunks.map(({ row }) => row.batch_id), lostChunks.map(({ row }) => row.chunk_no)],
        },
        SCAN_DEADLINE_MS,
      ),
    );
    for (const row of rows) stillOpen.add(chunkJobId(row.batch_id, row.chunk_no));
  }
  const lostReplays = replayJobs.filter(({ jobId }) => lost.has(jobId));
  if (lostReplays.length > 0) {
    const { rows } = await pool.query<{ id: string }>(
      withDeadline(
        { text: UNFINISHED_REPLAYS_SQL('d.id = any($1::bigint[])'), values: [lostReplays.map(({ row }) => row.id)] },
        SCAN_DEADLINE_MS,
      ),
    );
    for (const row of rows) stillOpen.add(replayJobId(row.id));
  }

  const readd = async (shard: number, jobId: string, was: LostJobState, add: () => Promise<unknown>): Promise<void> => {
    if (dryRun) return;
    if (was !== 'missing') await queues.shard(shard).remove(jobId);
    await add();
  };

  const chunks: ResumedJob[] = [];
  for (const { row, jobId, shard } of lostChunks) {
    const was = lost.get(jobId);
    if (!was || !stillOpen.has(jobId)) continue;
    const data: ChunkJobData = { kind: 'chunk', batchId: row.batch_id, chunkNo: row.chunk_no, shard };
    // its turn among its batch's open chunks of its shard: a batch whose every job was lost takes turns again
    await readd(shard, jobId, was, () =>
      queues.shard(shard).add('chunk', data, { jobId, priority: chunkJobPriority(row.priority, row.turn) }),
    );
    chunks.push({ jobId, batchId: row.batch_id, shard, was, chunkNo: row.chunk_no });
  }
  const replays: ResumedJob[] = [];
  for (const { row, jobId, shard } of lostReplays) {
    const was = lost.get(jobId);
    if (!was || !stillOpen.has(jobId)) continue;
    const data: ReplayJobData = { kind: 'replay', deadLetterId: row.id, batchId: row.batch_id, uid: row.uid, shard };
    await readd(shard, jobId, was, () =>
      queues.shard(shard).add('replay', data, { jobId, priority: replayJobPriority(row.priority) }),
    );
    replays.push({ jobId, batchId: row.batch_id, shard, was, deadLetterId: row.id });
  }

  // A batch whose producer stopped half-way through the hand-over: every chunk now has its job (not so for a batch
  // with stranded chunks, which stays as it is).
  const strandedBatches = new Set(stranded.map((chunk) => chunk.batchId));
  const handedOver = [
    ...new Set(
      chunkRows.filter((row) => row.not_handed_over && !strandedBatches.has(row.batch_id)).map((row) => row.batch_id),
    ),
  ];
  if (!dryRun && handedOver.length > 0) {
    await pool.query(
      'update reward_batches set enqueued_at = now() where batch_id = any($1::text[]) and enqueued_at is null',
      [handedOver],
    );
  }

  if (chunks.length > 0 || replays.length > 0) {
    const summarize = (jobs: readonly ResumedJob[]) => jobs.slice(0, 20).map((job) => `${job.jobId}:${job.was}`);
    logger.warn(
      { dryRun, chunks: chunks.length, replays: replays.length, jobs: summarize([...chunks, ...replays]) },
      dryRun
        ? 'open work without a live job found (dry run: nothing re-added)'
        : 'open work without a live job found: jobs re-added',
    );
  }
  if (stranded.length > 0) logger.error({ shards, chunks: stranded.length }, describeStranded(stranded, shards));
  return {
    dryRun,
    checkedChunks: chunkRows.length,
    checkedReplays: replayRows.length,
    chunks,
    replays,
    stranded,
    handedOver,
  };
}

/** What to tell an operator about stranded chunks: which batches, the shard count they need, what to do. */
export function describeStranded(stranded: readonly StrandedChunk[], shards: number): string {
  const byBatch = new Map<string, StrandedBatch>();
  for (const chunk of stranded) {
    const batch = byBatch.get(chunk.batchId);
    byBatch.set(chunk.batchId, {
      batchId: chunk.batchId,
      stagedShards: chunk.stagedShards,
      openChunks: (batch?.openChunks ?? 0) + 1,
    });
  }
  return describeStrandedBatches([...byBatch.values()], shards);
}
