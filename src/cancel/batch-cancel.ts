import type pg from 'pg';
import { recordAudit } from '../audit/audit-trail.js';
import { fenceBatch } from '../db/fences.js';
import { retryConflicts } from '../db/retry.js';
import { inTransaction } from '../db/transaction.js';
import type { EventSink } from '../events/event-publisher.js';
import { writeStatusWithEvent } from '../events/event-store.js';
import type { Logger } from '../log/logger.js';
import { UnknownBatchError } from '../revert/batch-revert.js';
import { descriptionProblem } from '../rewards/field-rules.js';
import { getBatchReport, type BatchReport } from '../status/batch-status.js';

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
export class CancelRequestError extends Error {
  override readonly name = 'CancelRequestError';
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

/**
 * Stops batch `batchId` in flight (ADR 0013's fence): in ONE transaction, every chunk's and dead-letter entry's fence
 * moves on — the statements in flight finish first (their users are paid whole), none sent later pays — and every
 * open chunk is closed (no new attempt claims it); the batch is marked cancelled, its `batch.cancelled` event (with
 * webhooks) and its audit record (`batch.cancel`) written with it. From then on its unsettled rewards count as
 * `cancelled`, its dead-letter entries cannot be replayed, and its campaign keeps reserved only what it paid. What was
 * applied stays (revert is a separate choice). Idempotent: a batch cancelled already, or with nothing left to settle,
 * is answered as it stands (`noop`), and recorded in the audit trail as such.
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
  // a replay's claim may take the batch row after its entry (this takes them in the other order): the deadlock
  // PostgreSQL then reports ends one of them, and either runs again
  const outcome = await retryConflicts(() =>
    inTransaction(context.pool, async (client) => {
      // the batch row first: a concurrent cancel, revert or replay claim waits here (or this waits for it)
      const { rows } = await client.query<{ cancelled_at: Date | null }>(
        'select cancelled_at from reward_batches where batch_id = $1 for update',
        [batchId],
      );
      if (rows.length === 0)
        throw new UnknownBatchError(
          `no batch has id ${JSON.stringify(batchId)} (was it enqueued against this DATABASE_URL?)`,
        );
      const already = rows[0]!.cancelled_at !== null;
      if (!already) {
        await fenceBatch(client, batchId);
        await client.query(
          'update reward_chunks set completed_at = now() where batch_id = $1 and completed_at is null',
          [batchId],
        );
      }
      // after the fence: what the statements that held it paid is counted
      const before = (await getBatchReport(client, batchId))!;
      const noop = already || before.pending === 0;
      let event = null;
      if (!noop) {
        await client.query('update reward_batches set cancelled_at = now() where batch_id = $1', [batchId]);
        event = await writeStatusWithEvent(client, {
          batchId,
          status: 'cancelled',
          type: context.events ? 'batch.cancelled' : null,
          applied: before.applied,
          duplicate: before.duplicate,
          deadLettered: before.deadLettered,
          reverted: before.reverted,
          cancelled: before.pending,
          onlyIfChanged: false,
        });
      }
      const report: CancelReport = {
        batchId,
        cancelled: already ? before.cancelled : noop ? 0 : before.pending,
        applied: before.applied,
        status: noop ? before.status : 'cancelled',
        noop,
      };
      await recordAudit(client, {
        actor,
        action: 'batch.cancel',
        target: `batch:${batchId}`,
        details: options.reason !== undefined ? { reason: options.reason } : {},
        result: { cancelled: report.cancelled, applied: report.applied, status: report.status, noop },
      });
      return { report, event };
    }),
  );
  if (outcome.event) await context.events?.publish(outcome.event);
  if (!outcome.report.noop)
    context.logger.warn(
      { batchId, cancelled: outcome.report.cancelled, applied: outcome.report.applied, actor },
      'batch cancelled',
    );
  return outcome.report;
}
