import type pg from 'pg';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import { deadLetterJobId, replayJobId, type ReplayJobData } from '../queue/job-data.js';
import { shardOf } from '../queue/shard-routing.js';
import type { WindfallQueues } from '../queue/windfall-queues.js';
import { refreshStoredStatus } from '../status/batch-status.js';
import { replayJobPriority } from '../queue/job-priority.js';
import type { EventSink } from '../events/event-publisher.js';
import { deadLetterTarget, recordAudit } from '../audit/audit-trail.js';
import { inTransaction } from '../db/transaction.js';
import { CountedList } from './counted-list.js';
import type {
  DeadLetterFilter,
  DeadLetterHead,
  DeadLetterEntry,
  ListedDeadLetter,
  PurgedPage,
  ReplayMarkOutcome,
} from './dead-letter-store.js';
import {
  countOpenDeadLetters,
  DEAD_LETTER_PAGE_SIZE,
  getDeadLetter,
  listDeadLetters,
  markReplayedMany,
  pageDeadLetterHeads,
  purgeDeadLetterPage,
} from './dead-letter-store.js';

/** Most entries a report of a bulk action lists (its counts cover every entry). */
export const REPORT_LIST_LIMIT = 1000;

/** Most entry ids an audit record of a bulk action lists (its counts cover every entry). */
export const AUDIT_SAMPLE_SIZE = 100;

/** An entry a replay re-enqueued (or would). */
export interface ReplayedEntry {
  readonly id: string;
  readonly batchId: string;
  readonly uid: string;
  /** Rewards in the entry. */
  readonly rewards: number;
  readonly jobId: string;
}

/**
 * An entry that was not replayed, and why. `state` is the entry's state (`replayed`: it was already, which is no
 * failure; `purged`), `missing` when no entry has that id, or `cancelled` when its batch was cancelled (its rewards
 * are never paid).
 */
export interface SkippedEntry {
  readonly id: string;
  readonly why: string;
  readonly state: ReplayMarkOutcome | 'cancelled';
}

/** The outcome of a replay. Its lists are bounded; its counts are not. */
export interface ReplayReport {
  readonly dryRun: boolean;
  /** Entries re-enqueued (or that would be, with `dryRun`): the first {@link REPORT_LIST_LIMIT} (1,000) by id. */
  readonly replayed: readonly ReplayedEntry[];
  /** Entries not replayed, and why: the first {@link REPORT_LIST_LIMIT} (1,000). */
  readonly skipped: readonly SkippedEntry[];
  /** Every entry re-enqueued (or that would be). */
  readonly replayedCount: number;
  /** The rewards in them. */
  readonly rewardCount: number;
  /** Every entry skipped. */
  readonly skippedCount: number;
  /** True when `replayed` or `skipped` lists fewer entries than its count. */
  readonly truncated: boolean;
}

/** The outcome of a purge. Its list is bounded; its count is not. */
export interface PurgeReport {
  readonly dryRun: boolean;
  /** Ids of the entries purged (or that would be): the first {@link REPORT_LIST_LIMIT} (1,000) in id order. */
  readonly purged: readonly string[];
  /** Every entry purged (or that would be). */
  readonly count: number;
  /** True when `purged` lists fewer ids than `count`. */
  readonly truncated: boolean;
}

/** Who asks for an operator action (recorded in the audit trail). Default `library`. */
export interface ActorOption {
  readonly actor?: string;
}

/** One page of a purge, and whether it was the last (its transaction then holds the audit record). */
interface PurgeStep {
  readonly page: PurgedPage;
  readonly final: boolean;
}

/** The pages a bulk action works through: the selection's ids in slices, or its filter page by page. */
interface Pages {
  /** The selection of page `n` (0-based), and whether it is the last one whatever the page holds. */
  selection(n: number): { readonly filter: DeadLetterFilter; readonly last: boolean };
  /** Entries a page may hold. */
  readonly size: number;
}

function pagesOf(filter: DeadLetterFilter): Pages {
  if (filter.ids) {
    const ids = filter.ids;
    const slices = Math.max(1, Math.ceil(ids.length / DEAD_LETTER_PAGE_SIZE));
    return {
      size: DEAD_LETTER_PAGE_SIZE,
      selection: (n) => ({
        filter: { ids: ids.slice(n * DEAD_LETTER_PAGE_SIZE, (n + 1) * DEAD_LETTER_PAGE_SIZE) },
        last: n >= slices - 1,
      }),
    };
  }
  return { size: DEAD_LETTER_PAGE_SIZE, selection: () => ({ filter, last: false }) };
}

/** At most `limit` entries in all (a library caller's `filter.limit`), taken page by page. */
function pageSize(pages: Pages, limit: number | undefined, taken: number): number {
  return limit === undefined ? pages.size : Math.max(0, Math.min(pages.size, limit - taken));
}

/** Runs `work` on every item, all at once (a page's worth: the commands go out pipelined, not one round trip each). */
async function eachAtOnce<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  await Promise.all(items.map(work));
}

/**
 * The operators' service over dead letters: entries recorded in PostgreSQL (`dead_letters`, the durable record) and
 * mirrored as jobs of the BullMQ queue `<prefix>:dead-letter` so dashboards show them; lists, replays and purges
 * them. (Named `DeadLetterQueue` before; that name is kept as a deprecated alias until 1.0.)
 */
export class DeadLetterService {
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

  /**
   * Entries matching a filter (open ones by default), oldest first, each with at most `filter.rewards` of its rewards
   * (default 100; `rewardCount` says how many it holds) and the amount of all of them.
   */
  list(filter: DeadLetterFilter = {}): Promise<ListedDeadLetter[]> {
    return listDeadLetters(this.pool, filter);
  }

  /** Open entries and their rewards per reason (for metrics and `windfall queues`). */
  openCounts(): ReturnType<typeof countOpenDeadLetters> {
    return countOpenDeadLetters(this.pool);
  }

  /** One entry by id, or null; at most `rewards` of its rewards (default 100). */
  get(id: string, options: { readonly rewards?: number } = {}): Promise<ListedDeadLetter | null> {
    return getDeadLetter(this.pool, id, options);
  }

  /**
   * Re-enqueues open entries into their shard queue. An entry leaves the dead-letter queue only after its replay
   * job is safely in Redis; a crash in between may replay it twice, which the idempotent ledger absorbs.
   * Rewards applied meanwhile end as duplicates. An entry purged between the two steps is reported in `skipped`
   * (state `purged`) and its replay does nothing (the job claims the entry first: `claimEntry`).
   *
   * Works in pages of {@link DEAD_LETTER_PAGE_SIZE} entries, read without their rewards: per page one statement
   * reads the entries (and marks their batches processing), one `addBulk` per shard queue adds their jobs, one
   * statement marks them replayed (two when a purge raced with it). Memory stays flat whatever the number of
   * entries; the report lists the first 1,000 and counts all.
   *
   * A replay that is not a dry run is recorded in the audit trail (`dlq.replay`) once it has run (or failed): its
   * filter, its counts and the first {@link AUDIT_SAMPLE_SIZE} ids. Its entries change page by page (each after its
   * job is in Redis), so the record follows them rather than sharing a transaction.
   */
  async replay(filter: DeadLetterFilter, options: { dryRun?: boolean } & ActorOption = {}): Promise<ReplayReport> {
    const dryRun = options.dryRun ?? false;
    const replayed = new CountedList<ReplayedEntry>(REPORT_LIST_LIMIT);
    const skipped = new CountedList<SkippedEntry>(REPORT_LIST_LIMIT);
    const rewards = { count: 0 };
    const report = (): ReplayReport => ({
      dryRun,
      replayed: replayed.items,
      skipped: skipped.items,
      replayedCount: replayed.count,
      rewardCount: rewards.count,
      skippedCount: skipped.count,
      truncated: replayed.truncated || skipped.truncated,
    });
    const pages = pagesOf(filter);
    try {
      let after: string | null = null;
      let taken = 0;
      for (let n = 0; ; n += 1) {
        const { filter: selection, last } = pages.selection(n);
        const size = pageSize(pages, filter.limit, taken);
        if (size === 0) break;
        const heads = await pageDeadLetterHeads(this.pool, selection, selection.ids ? null : after, size, {
          markBatchesProcessing: !dryRun,
        });
        taken += heads.length;
        if (selection.ids) this.skipUnreplayable(selection.ids, heads, skipped);
        for (const head of heads)
          if (head.state === 'open' && head.batchCancelled)
            skipped.add({
              id: head.id,
              why: `batch ${head.batchId} was cancelled: its rewards are never paid (purge the entry)`,
              state: 'cancelled',
            });
        const open = heads.filter((head) => head.state === 'open' && !head.batchCancelled);
        if (dryRun) for (const job of this.replayJobs(open)) this.tally(job, replayed, rewards);
        else await this.enqueueReplays(open, replayed, skipped, rewards);
        if (last || (!selection.ids && heads.length < size)) break;
        after = heads.at(-1)?.id ?? after;
      }
    } catch (error) {
      // the entries replayed before the failure are recorded too, with the error
      if (!dryRun) await this.auditReplay(filter, options.actor, replayed, skipped, rewards.count, error);
      throw error;
    }
    if (!dryRun) await this.auditReplay(filter, options.actor, replayed, skipped, rewards.count);
    return report();
  }

  /** Ids asked for that name no entry, or an entry that is not open: skipped, with the reason. */
  private skipUnreplayable(
    ids: readonly string[],
    heads: readonly DeadLetterHead[],
    skipped: CountedList<SkippedEntry>,
  ): void {
    const found = new Map(heads.map((head) => [head.id, head]));
    for (const id of ids) {
      const head = found.get(id);
      if (!head) skipped.add({ id, why: 'no dead-letter entry has this id', state: 'missing' });
      else if (head.state === 'replayed') {
        skipped.add({
          id,
          why: `already replayed${head.replayedAt ? ` at ${head.replayedAt}` : ''}; nothing to do`,
          state: 'replayed',
        });
      } else if (head.state === 'purged') {
        skipped.add({ id, why: 'entry was purged; it cannot be replayed', state: 'purged' });
      }
    }
  }

  /** The replay job of each open entry: its shard under the current shard count, its id, its batch's lane. */
  private replayJobs(heads: readonly DeadLetterHead[]): { head: DeadLetterHead; shard: number; jobId: string }[] {
    const shards = this.queues.settings.shards;
    return heads.map((head) => ({
      head,
      shard: head.shard < shards ? head.shard : shardOf(head.uid, shards),
      jobId: replayJobId(head.id),
    }));
  }

  /** Counts an entry replayed (or that would be). */
  private tally(
    job: { head: DeadLetterHead; jobId: string },
    replayed: CountedList<ReplayedEntry>,
    rewards: { count: number },
  ): void {
    const { head } = job;
    replayed.add({ id: head.id, batchId: head.batchId, uid: head.uid, rewards: head.rewardCount, jobId: job.jobId });
    rewards.count += head.rewardCount;
  }

  /**
   * Adds the replay jobs of a page of open entries (one `addBulk` per shard queue), then marks the entries whose jobs
   * are in Redis replayed (in this order: an entry leaves the queue only once its job is in Redis). An entry a purge
   * took first is skipped (`purged`) and its job removed again (best effort: the job itself claims the entry first and
   * skips a purged one). When a shard queue refuses its jobs, its entries stay open, the others of the page go on, and
   * the error is thrown once the page is done: the pages after it are not replayed.
   */
  private async enqueueReplays(
    heads: readonly DeadLetterHead[],
    replayed: CountedList<ReplayedEntry>,
    skipped: CountedList<SkippedEntry>,
    rewards: { count: number },
  ): Promise<void> {
    if (heads.length === 0) return;
    const jobs = this.replayJobs(heads);
    const byShard = new Map<number, typeof jobs>();
    for (const job of jobs) {
      const shardJobs = byShard.get(job.shard);
      if (shardJobs) shardJobs.push(job);
      else byShard.set(job.shard, [job]);
    }
    const added: typeof jobs = [];
    const refused: typeof jobs = [];
    let refusal: unknown;
    await Promise.all(
      [...byShard].map(async ([shard, shardJobs]) => {
        try {
          await this.queues.shard(shard).addBulk(
            shardJobs.map(({ head, jobId }) => ({
              name: 'replay',
              data: {
                kind: 'replay',
                deadLetterId: head.id,
                batchId: head.batchId,
                uid: head.uid,
                shard,
              } satisfies ReplayJobData,
              opts: { jobId, priority: replayJobPriority(head.priority ?? undefined) },
            })),
          );
          added.push(...shardJobs);
        } catch (error) {
          refusal ??= error;
          refused.push(...shardJobs);
        }
      }),
    );
    added.sort((a, b) => compareIds(a.head.id, b.head.id));
    const outcomes = await markReplayedMany(
      this.pool,
      added.map((job) => job.head.id),
    );
    const done: string[] = [];
    const undone: typeof jobs = [];
    for (const job of added) {
      const outcome = outcomes.get(job.head.id) ?? 'missing';
      if (outcome === 'replayed') {
        // marked now, or claimed already by its job: either way the replay takes effect
        this.tally(job, replayed, rewards);
        done.push(job.head.id);
        continue;
      }
      undone.push(job);
      skipped.add(
        outcome === 'purged'
          ? {
              id: job.head.id,
              why: 'entry was purged while its replay was being enqueued; the replay does nothing',
              state: 'purged',
            }
          : { id: job.head.id, why: 'no dead-letter entry has this id', state: 'missing' },
      );
    }
    await this.removeMirrors(done);
    if (done.length > 0) {
      this.logger.info(
        { entries: done.length, firstId: done[0], lastId: done.at(-1) },
        done.length === 1 ? 'dead-letter entry replayed' : 'dead-letter entries replayed',
      );
    }
    await eachAtOnce(undone, async ({ head, shard, jobId }) => {
      try {
        await this.queues.shard(shard).remove(jobId);
      } catch (error) {
        this.logger.debug(
          { deadLetterId: head.id, jobId, err: error },
          'could not remove the replay job of a purged entry; it will skip the entry',
        );
      }
      this.logger.warn(
        { deadLetterId: head.id, batchId: head.batchId, uid: head.uid, jobId },
        outcomes.get(head.id) === 'purged'
          ? 'dead-letter entry purged while its replay was enqueued: replay skipped'
          : 'dead-letter entry vanished while its replay was enqueued',
      );
    });
    // batches marked processing whose replays will not run: their statuses are brought up to date now
    await this.refreshStatuses([...undone, ...refused].map((job) => job.head.batchId));
    if (refused.length > 0) throw this.refusedError(refused, refusal, replayed.count);
  }

  /** The error of replays a shard queue refused: which entries stay in the dead-letter queue, and what went through. */
  private refusedError(refused: readonly { head: DeadLetterHead }[], cause: unknown, replayedBefore: number): Error {
    const ids = refused.map((job) => job.head.id).sort(compareIds);
    const named =
      ids.length === 1
        ? `dead-letter entry ${ids[0]}`
        : `dead-letter entries ${ids.slice(0, 5).join(', ')}${ids.length > 5 ? ` and ${ids.length - 5} more` : ''}`;
    const before =
      replayedBefore > 0
        ? `; ${replayedBefore} entr${replayedBefore === 1 ? 'y was' : 'ies were'} replayed (see the audit trail), the others were not`
        : '';
    return new Error(
      `could not enqueue the replay of ${named} (${cause instanceof Error ? cause.message : String(cause)}); ${ids.length === 1 ? 'it stays' : 'they stay'} in the dead-letter queue${before}`,
      { cause },
    );
  }

  private async auditReplay(
    filter: DeadLetterFilter,
    actor: string | undefined,
    replayed: CountedList<ReplayedEntry>,
    skipped: CountedList<SkippedEntry>,
    rewardCount: number,
    error?: unknown,
  ): Promise<void> {
    await recordAudit(this.pool, {
      actor: actor ?? 'library',
      action: 'dlq.replay',
      target: deadLetterTarget(filter),
      details: { filter: auditedFilter(filter) },
      result: {
        replayedCount: replayed.count,
        rewardCount,
        replayed: replayed.first(AUDIT_SAMPLE_SIZE).map((entry) => entry.id),
        skippedCount: skipped.count,
        skipped: skipped.first(AUDIT_SAMPLE_SIZE).map(({ id, state }) => ({ id, state })),
        ...(error !== undefined ? { error: error instanceof Error ? error.message : String(error) } : {}),
      },
    }).catch((auditError: unknown) =>
      this.logger.error({ err: auditError }, 'could not write the audit record of a replay'),
    );
  }

  /** Removes entries' jobs from the BullMQ mirror (entries closed elsewhere, e.g. by a batch revert). */
  async unmirror(ids: readonly string[]): Promise<void> {
    for (let from = 0; from < ids.length; from += DEAD_LETTER_PAGE_SIZE) {
      await this.removeMirrors(ids.slice(from, from + DEAD_LETTER_PAGE_SIZE));
    }
  }

  private async refreshStatuses(batchIds: readonly string[]): Promise<void> {
    for (const batchId of new Set(batchIds)) {
      try {
        await refreshStoredStatus(this.pool, batchId, this.events);
      } catch (error) {
        this.logger.warn({ err: error, batchId }, 'could not bring the batch status up to date');
      }
    }
  }

  /**
   * Takes open entries out of the queue (they stay on record, counted as dead-lettered). Works in pages of
   * {@link DEAD_LETTER_PAGE_SIZE} entries, each one statement in a transaction of its own (no transaction spans a big
   * purge); the audit record (`dlq.purge`: the filter, the count, the first {@link AUDIT_SAMPLE_SIZE} ids) is written
   * in the transaction of the last page, so a purge of ids (at most one page) and its record are one transaction. A
   * purge of several pages that fails half-way records what it purged and the error (best effort). `dryRun`: reads
   * the pages, changes and records nothing.
   */
  async purge(filter: DeadLetterFilter, options: { dryRun?: boolean } & ActorOption = {}): Promise<PurgeReport> {
    const dryRun = options.dryRun ?? false;
    const purged = new CountedList<string>(REPORT_LIST_LIMIT);
    const report = (): PurgeReport => ({
      dryRun,
      purged: purged.items,
      count: purged.count,
      truncated: purged.truncated,
    });
    // the record counts the entries purged so far and `now` (those of the page in the record's own transaction)
    const record = (now: readonly string[], error?: unknown) => ({
      actor: options.actor ?? 'library',
      action: 'dlq.purge' as const,
      target: deadLetterTarget(filter),
      details: { filter: auditedFilter(filter) },
      result: {
        count: purged.count + now.length,
        purged: [...purged.first(AUDIT_SAMPLE_SIZE), ...now].slice(0, AUDIT_SAMPLE_SIZE),
        ...(error !== undefined ? { error: error instanceof Error ? error.message : String(error) } : {}),
      },
    });
    const pages = pagesOf(filter);
    let after: string | null = null;
    let taken = 0;
    try {
      for (let n = 0; ; n += 1) {
        const { filter: selection, last: lastSlice } = pages.selection(n);
        const size = pageSize(pages, filter.limit, taken);
        const from: string | null = selection.ids ? null : after;
        if (dryRun) {
          const heads: DeadLetterHead[] = size === 0 ? [] : await pageDeadLetterHeads(this.pool, selection, from, size);
          for (const head of heads) if (head.state === 'open') purged.add(head.id);
          taken += heads.length;
          if (lastSlice || size === 0 || (!selection.ids && heads.length < size)) break;
          after = heads.at(-1)?.id ?? after;
          continue;
        }
        const { page, final } = await inTransaction(this.pool, async (client): Promise<PurgeStep> => {
          const page: PurgedPage =
            size === 0
              ? { purged: [], scanned: 0, last: null }
              : await purgeDeadLetterPage(client, selection, from, size);
          const final = lastSlice || size === 0 || (!selection.ids && page.scanned < size);
          if (final) await recordAudit(client, record(page.purged));
          return { page, final };
        });
        for (const id of page.purged) purged.add(id);
        taken += page.scanned;
        await this.removeMirrors(page.purged);
        if (final) break;
        after = page.last ?? after;
      }
    } catch (error) {
      if (!dryRun && purged.count > 0) {
        await recordAudit(this.pool, record([], error)).catch((auditError: unknown) =>
          this.logger.error({ err: auditError }, 'could not write the audit record of a purge that failed half-way'),
        );
      }
      throw error;
    }
    if (!dryRun && purged.count > 0) this.logger.warn({ count: purged.count }, 'dead-letter entries purged');
    return report();
  }

  /** Removes the mirror jobs of a page of entries, all at once; failures are counted and logged once. */
  private async removeMirrors(ids: readonly string[]): Promise<void> {
    let failed = 0;
    let firstError: unknown;
    await eachAtOnce(ids, async (id) => {
      try {
        await this.queues.deadLetters().remove(deadLetterJobId(id));
      } catch (error) {
        failed += 1;
        firstError ??= error;
      }
    });
    if (failed > 0) {
      this.logger.warn(
        { err: firstError, failed, firstId: ids[0] },
        'could not remove the dead-letter queue mirror job of some entries',
      );
    }
  }
}

/** Orders digit-string ids as numbers. */
function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

/** A filter as the audit trail records it (only what was asked for). */
function auditedFilter(filter: DeadLetterFilter): Record<string, unknown> {
  return Object.fromEntries(Object.entries(filter).filter(([, value]) => value !== undefined));
}
