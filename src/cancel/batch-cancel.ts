import type pg from 'pg';
import { recordAudit } from '../audit/audit-trail.js';
import { forEachLimited } from '../concurrency/semaphore.js';
import { retryConflicts } from '../db/retry.js';
import { inTransaction } from '../db/transaction.js';
import type { EventSink } from '../events/event-publisher.js';
import { writeStatusWithEvent } from '../events/event-store.js';
import type { Logger } from '../log/logger.js';
import { UnknownBatchError } from '../revert/batch-revert.js';
import { descriptionProblem } from '../rewards/field-rules.js';
import { getBatchReport, type BatchReport } from '../status/batch-status.js';
import { WindfallError } from '../errors/windfall-error.js';

/** What a batch cancel did (CONTRACT: `windfall batch cancel --json`, `POST /v1/batches/:id/cancel`). */
export interface CancelReport {
  readonly batchId: string;
  /** Rewards of the batch that will never be paid by it: not settled when it was cancelled. */
  readonly cancelled: number;
  /** Rewards the batch paid (before the cancel, or by statements that committed while it waited for them). */
  readonly applied: number;
  /** The batch's status now: `cancelled`, or, when nothing was left to cancel, the status it had. */
  readonly status: BatchReport['status'];
  /** True when this call changed nothing: the batch was cancelled already, or had nothing left to settle. */
  readonly noop: boolean;
}

/** The request itself is invalid (its reason); nothing was changed. */
export class CancelRequestError extends WindfallError {
  static override readonly code = 'REQUEST_INVALID';
  override readonly name = 'CancelRequestError';
  /** The field at fault. */
  override readonly field = 'reason';
}

/** What {@link cancelBatch} needs. */
export interface CancelContext {
  readonly pool: pg.Pool;
  readonly logger: Logger;
  /** Webhooks configured: the cancel records the batch's `batch.cancelled` event and hands it here. */
  readonly events?: EventSink;
}

/** Options of {@link cancelBatch}. */
export interface CancelOptions {
  /** Why (into the audit trail). At most 500 characters. */
  readonly reason?: string;
  /** Who asks (audit trail). Default `library`. */
  readonly actor?: string;
}

/** Chunks whose fences a cancel moves on at once (each waits for its own statements in flight). */
const FENCES_AT_ONCE = 8;

/**
 * Stops batch `batchId` in flight (ADR 0013's fence), in three steps, each safe to run again:
 *
 * 1. the decision, at once: `cancelled_at` is set on the batch row (locked `for update`: a chunk's claim reads it
 *    `for key share`, so from then on no new chunk starts, and no replay of the batch's entries);
 * 2. the fences: every chunk's fence moves on and every open chunk closes (several chunks at once, each waiting for
 *    its own statements in flight — their users are paid whole — none sent later pays), then every dead-letter
 *    entry's fence;
 * 3. the record, with the final counts: status `cancelled`, the `batch.cancelled` event (with webhooks) and the audit
 *    record (`batch.cancel`).
 *
 * From step 1 the batch's unsettled rewards count as `cancelled`, its dead-letter entries cannot be replayed, and its
 * campaign keeps reserved only what it paid. What was applied stays (revert is a separate choice). Idempotent: a
 * batch cancelled already (its steps 2 and 3 are run again: an interrupted cancel is finished), or with nothing left
 * to settle, is answered as it stands (`noop`).
 *
 * @throws {@link UnknownBatchError} for an unknown batch id; {@link CancelRequestError} for an invalid reason
 */
export async function cancelBatch(
  context: CancelContext,
  batchId: string,
  options: CancelOptions = {},
): Promise<CancelReport> {
  const problem = options.reason !== undefined ? descriptionProblem(options.reason) : null;
  if (problem) throw new CancelRequestError(`the reason ${problem.reason}`);
  const actor = options.actor ?? 'library';

  const started = performance.now();
  const since = (): number => Math.round(performance.now() - started);
  // 1. the decision
  const decision = await inTransaction(context.pool, async (client) => {
    const { rows } = await client.query<{ cancelled_at: Date | null }>(
      'select cancelled_at from reward_batches where batch_id = $1 for update',
      [batchId],
    );
    if (rows.length === 0)
      throw new UnknownBatchError(
        `no batch has id ${JSON.stringify(batchId)} (was it enqueued against this DATABASE_URL?)`,
      );
    if (rows[0]!.cancelled_at !== null) return 'already' as const;
    // a batch with nothing left to settle (its chunks complete, no replay in flight) is left as it is; while a chunk
    // is open the batch is in flight, and the decision does not wait for its counts
    const open = await client.query(
      'select 1 from reward_chunks where batch_id = $1 and completed_at is null limit 1',
      [batchId],
    );
    if (open.rowCount === 0 && (await getBatchReport(client, batchId))!.pending === 0) return 'settled' as const;
    await client.query('update reward_batches set cancelled_at = now() where batch_id = $1', [batchId]);
    return 'cancelled' as const;
  });

  context.logger.debug({ batchId, decision, ms: since() }, 'batch cancel: decided');
  // 2. the fences
  if (decision !== 'settled') {
    const { rows: chunks } = await context.pool.query<{ chunk_no: number }>(
      'select chunk_no from reward_chunks where batch_id = $1 order by chunk_no',
      [batchId],
    );
    let failure: Error | undefined;
    await forEachLimited(chunks, FENCES_AT_ONCE, async ({ chunk_no }) => {
      try {
        await retryConflicts(() =>
          context.pool.query(
            `update reward_chunks set fence = fence + 1, completed_at = coalesce(completed_at, now())
             where batch_id = $1 and chunk_no = $2`,
            [batchId, chunk_no],
          ),
        );
      } catch (error) {
        failure ??= error instanceof Error ? error : new Error(String(error));
      }
    });
    // (the decision stands: running the cancel again finishes the fences)
    if (failure !== undefined) throw failure;
    await retryConflicts(() =>
      context.pool.query('update dead_letters set fence = fence + 1 where batch_id = $1', [batchId]),
    );
  }

  context.logger.debug({ batchId, ms: since() }, 'batch cancel: fenced');
  // 3. the record
  const outcome = await inTransaction(context.pool, async (client) => {
    const report = (await getBatchReport(client, batchId))!;
    const noop = decision !== 'cancelled';
    let event = null;
    if (decision !== 'settled') {
      event = await writeStatusWithEvent(client, {
        batchId,
        status: 'cancelled',
        type: context.events ? 'batch.cancelled' : null,
        applied: report.applied,
        duplicate: report.duplicate,
        deadLettered: report.deadLettered,
        reverted: report.reverted,
        cancelled: report.cancelled,
        // a cancelled batch reverted afterwards keeps its status
        onlyIfChanged: true,
      });
    }
    const answer: CancelReport = {
      batchId,
      cancelled: report.cancelled,
      applied: report.applied,
      status: report.status,
      noop,
    };
    await recordAudit(client, {
      actor,
      action: 'batch.cancel',
      target: `batch:${batchId}`,
      details: options.reason !== undefined ? { reason: options.reason } : {},
      result: { cancelled: answer.cancelled, applied: answer.applied, status: answer.status, noop },
    });
    return { answer, event };
  });
  if (outcome.event) await context.events?.publish(outcome.event);
  if (!outcome.answer.noop)
    context.logger.warn(
      { batchId, cancelled: outcome.answer.cancelled, applied: outcome.answer.applied, actor },
      'batch cancelled',
    );
  return outcome.answer;
}
