import type pg from 'pg';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import { deadLetterJobId, replayJobId, type ReplayJobData } from '../queue/job-data.js';
import { shardOf } from '../queue/shard-routing.js';
import type { WindfallQueues } from '../queue/windfall-queues.js';
import { refreshStoredStatus } from '../status/batch-status.js';
import { replayJobPriority, type BatchPriority } from '../queue/job-priority.js';
import type { EventSink } from '../events/event-publisher.js';
import { deadLetterTarget, recordAudit } from '../audit/audit-trail.js';
import { inTransaction } from '../db/transaction.js';
import type { DeadLetterEntry, DeadLetterFilter, ReplayMarkOutcome } from './dead-letter-store.js';
import {
  countOpenDeadLetters,
  getDeadLetter,
  listDeadLetters,
  markReplayed,
  purgeDeadLetters,
} from './dead-letter-store.js';

/** The outcome of a replay. */
export interface ReplayReport {
  readonly dryRun: boolean;
  /** Entries re-enqueued (or that would be, with `dryRun`). */
  readonly replayed: readonly {
    readonly id: string;
    readonly batchId: string;
    readonly uid: string;
    readonly rewards: number;
    readonly jobId: string;
  }[];
  /**
   * Entries asked for by id that were not replayed, and why. `state` is the entry's state (`replayed`: it was
   * already, which is no failure; `purged`), or `missing` when no entry has that id.
   */
  readonly skipped: readonly {
    readonly id: string;
    readonly why: string;
    readonly state: 'replayed' | 'purged' | 'missing';
  }[];
}

/** Who asks for an operator action (recorded in the audit trail). Default `library`. */
export interface ActorOption {
  readonly actor?: string;
}

/**
 * The dead-letter queue: entries recorded in PostgreSQL (`dead_letters`, the durable record) and mirrored as jobs
 * of the BullMQ queue `<prefix>:dead-letter` so dashboards show them.
 */
export class DeadLetterQueue {
  private readonly logger: Logger;

  constructor(
    private readonly pool: pg.Pool,
    private readonly queues: WindfallQueues,
    logger?: Logger,
    /** Webhooks configured: a status brought up to date here may record the batch's event (see refreshStoredStatus). */
    private readonly events?: EventSink,
  ) {
    this.logger = logger ?? silentLogger();
  }

  /** Adds entries to the BullMQ mirror (idempotent by job id). */
  async mirror(entries: readonly DeadLetterEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.queues
      .deadLetters()
      .addBulk(
        entries.map((entry) => ({ name: entry.reason, data: entry, opts: { jobId: deadLetterJobId(entry.id) } })),
      );
  }

  /** Entries matching a filter (open ones by default), oldest first. */
  list(filter: DeadLetterFilter = {}): Promise<DeadLetterEntry[]> {
    return listDeadLetters(this.pool, filter);
  }

  /** Open entries and their rewards per reason (for metrics and `windfall queues`). */
  openCounts(): ReturnType<typeof countOpenDeadLetters> {
    return countOpenDeadLetters(this.pool);
  }

  /** One entry by id, or null. */
  get(id: string): Promise<DeadLetterEntry | null> {
    return getDeadLetter(this.pool, id);
  }

  /**
   * Re-enqueues open entries into their shard queue. An entry leaves the dead-letter queue only after its replay
   * job is safely in Redis; a crash in between may replay it twice, which the idempotent ledger absorbs.
   * Rewards applied meanwhile end as duplicates. An entry purged between the two steps is reported in `skipped`
   * (state `purged`) and its replay does nothing (the job claims the entry first: `claimEntry`).
   *
   * A replay that is not a dry run is recorded in the audit trail (`dlq.replay`) once it has run: its entries change
   * one by one (each after its job is in Redis), so the record follows them rather than sharing a transaction.
   */
  async replay(filter: DeadLetterFilter, options: { dryRun?: boolean } & ActorOption = {}): Promise<ReplayReport> {
    const dryRun = options.dryRun ?? false;
    const entries = await listDeadLetters(this.pool, {
      ...filter,
      state: filter.ids ? 'any' : 'open',
      limit: filter.limit ?? 1_000_000,
    });
    const skipped: { id: string; why: string; state: 'replayed' | 'purged' | 'missing' }[] = [];
    if (filter.ids) {
      const found = new Set(entries.map((entry) => entry.id));
      for (const id of filter.ids)
        if (!found.has(id)) skipped.push({ id, why: 'no dead-letter entry has this id', state: 'missing' });
    }
    const replayed: { id: string; batchId: string; uid: string; rewards: number; jobId: string }[] = [];
    const shards = this.queues.settings.shards;
    try {
      for (const entry of entries) {
        if (entry.state !== 'open') {
          skipped.push(
            entry.state === 'replayed'
              ? {
                  id: entry.id,
                  why: `already replayed${entry.replayedAt ? ` at ${entry.replayedAt}` : ''}; nothing to do`,
                  state: 'replayed',
                }
              : { id: entry.id, why: `entry was purged; it cannot be replayed`, state: 'purged' },
          );
          continue;
        }
        const jobId = replayJobId(entry.id);
        const shard = entry.shard < shards ? entry.shard : shardOf(entry.uid, shards);
        if (!dryRun) {
          const outcome = await this.enqueueReplay(entry, shard, jobId, replayed.length);
          if (outcome !== 'replayed') {
            skipped.push(
              outcome === 'purged'
                ? {
                    id: entry.id,
                    why: 'entry was purged while its replay was being enqueued; the replay does nothing',
                    state: 'purged',
                  }
                : { id: entry.id, why: 'no dead-letter entry has this id', state: 'missing' },
            );
            continue;
          }
        }
        replayed.push({ id: entry.id, batchId: entry.batchId, uid: entry.uid, rewards: entry.rewards.length, jobId });
      }
    } catch (error) {
      // the entries replayed before the failure are recorded too, with the error
      if (!dryRun) await this.auditReplay(filter, options.actor, replayed, skipped, error);
      throw error;
    }
    if (!dryRun) await this.auditReplay(filter, options.actor, replayed, skipped);
    return { dryRun, replayed, skipped };
  }

  private async auditReplay(
    filter: DeadLetterFilter,
    actor: string | undefined,
    replayed: readonly { id: string }[],
    skipped: readonly { id: string; state: string }[],
    error?: unknown,
  ): Promise<void> {
    await recordAudit(this.pool, {
      actor: actor ?? 'library',
      action: 'dlq.replay',
      target: deadLetterTarget(filter),
      details: { filter: auditedFilter(filter) },
      result: {
        replayed: replayed.map((entry) => entry.id),
        skipped: skipped.map(({ id, state }) => ({ id, state })),
        ...(error !== undefined ? { error: error instanceof Error ? error.message : String(error) } : {}),
      },
    }).catch((auditError: unknown) =>
      this.logger.error({ err: auditError }, 'could not write the audit record of a replay'),
    );
  }

  /** Removes entries' jobs from the BullMQ mirror (entries closed elsewhere, e.g. by a batch revert). */
  async unmirror(ids: readonly string[]): Promise<void> {
    for (const id of ids) await this.removeMirror(id);
  }

  /**
   * Adds the replay job of an open entry, then marks the entry replayed (in this order: an entry leaves the queue
   * only once its job is in Redis). When a purge won the race between the two steps, the job is removed again
   * (best effort: the job itself claims the entry first and skips a purged one) and `purged` is answered.
   */
  private async enqueueReplay(
    entry: DeadLetterEntry,
    shard: number,
    jobId: string,
    replayedBefore: number,
  ): Promise<ReplayMarkOutcome> {
    const data: ReplayJobData = {
      kind: 'replay',
      deadLetterId: entry.id,
      batchId: entry.batchId,
      uid: entry.uid,
      shard,
    };
    // the batch is processing again before its job can run (the job brings the status up to date when it ends); its
    // lane, read in the same round trip, is the replay's
    const { rows } = await this.pool.query<{ priority: BatchPriority }>(
      `with processing as (
         update reward_batches set status = 'processing', updated_at = now()
         where batch_id = $1 and status not in ('processing', 'reverted', 'partially_reverted')
       )
       select priority from reward_batches where batch_id = $1`,
      [entry.batchId],
    );
    const lane = rows[0]?.priority;
    try {
      await this.queues.shard(shard).add('replay', data, { jobId, priority: replayJobPriority(lane) });
    } catch (error) {
      // nothing was marked: the entry stays open, to be replayed again once the queue takes jobs
      await this.refreshStatus(entry.batchId);
      const before =
        replayedBefore > 0
          ? `; the ${replayedBefore} entr${replayedBefore === 1 ? 'y' : 'ies'} before it were replayed`
          : '';
      throw new Error(
        `could not enqueue the replay of dead-letter entry ${entry.id} (${(error as Error).message}); it stays in the dead-letter queue${before}`,
        { cause: error },
      );
    }
    const outcome = await markReplayed(this.pool, entry.id);
    const log = { deadLetterId: entry.id, batchId: entry.batchId, uid: entry.uid, jobId };
    if (outcome === 'replayed') {
      // marked now, or claimed already by its job: either way the replay takes effect
      await this.removeMirror(entry.id);
      this.logger.info(log, 'dead-letter entry replayed');
      return outcome;
    }
    try {
      await this.queues.shard(shard).remove(jobId);
    } catch (error) {
      this.logger.debug(
        { ...log, err: error },
        'could not remove the replay job of a purged entry; it will skip the entry',
      );
    }
    await this.refreshStatus(entry.batchId);
    this.logger.warn(
      log,
      outcome === 'purged'
        ? 'dead-letter entry purged while its replay was enqueued: replay skipped'
        : 'dead-letter entry vanished while its replay was enqueued',
    );
    return outcome;
  }

  private async refreshStatus(batchId: string): Promise<void> {
    try {
      await refreshStoredStatus(this.pool, batchId, this.events);
    } catch (error) {
      this.logger.warn({ err: error, batchId }, 'could not bring the batch status up to date');
    }
  }

  /**
   * Takes open entries out of the queue (they stay on record, counted as dead-lettered). Returns their ids. The purge
   * and its audit record (`dlq.purge`) are one transaction.
   */
  async purge(filter: DeadLetterFilter, options: ActorOption = {}): Promise<string[]> {
    const ids = await inTransaction(this.pool, async (client) => {
      const purged = await purgeDeadLetters(client, filter);
      await recordAudit(client, {
        actor: options.actor ?? 'library',
        action: 'dlq.purge',
        target: deadLetterTarget(filter),
        details: { filter: auditedFilter(filter) },
        result: { purged },
      });
      return purged;
    });
    await this.unmirror(ids);
    if (ids.length > 0) this.logger.warn({ count: ids.length }, 'dead-letter entries purged');
    return ids;
  }

  private async removeMirror(id: string): Promise<void> {
    try {
      await this.queues.deadLetters().remove(deadLetterJobId(id));
    } catch (error) {
      this.logger.warn({ err: error, deadLetterId: id }, 'could not remove the dead-letter queue mirror job');
    }
  }
}

/** A filter as the audit trail records it (only what was asked for). */
function auditedFilter(filter: DeadLetterFilter): Record<string, unknown> {
  return Object.fromEntries(Object.entries(filter).filter(([, value]) => value !== undefined));
}
