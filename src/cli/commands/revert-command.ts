import {
  BatchRevertRefusedError,
  revertBatch,
  RevertRequestError,
  UnknownBatchError,
  type RevertReport,
} from '../../revert/batch-revert.js';
import { cliActor } from '../../audit/audit-trail.js';
import type { Windfall } from '../../runtime/windfall.js';
import { CommandFailedError, UsageError } from '../support/exit-codes.js';
import { formatTable } from '../support/output.js';

/** `windfall batch revert`: exit 2 while the batch is processing, 1 for an unknown batch. */
export async function runRevert(
  windfall: Windfall,
  batchId: string,
  options: { dryRun: boolean; actor: string | undefined; reason: string | undefined },
): Promise<RevertReport> {
  try {
    return await revertBatch(
      {
        pool: windfall.database.pool,
        wallet: windfall.wallet,
        logger: windfall.logger,
        deadLetters: windfall.deadLetters,
        events: windfall.events,
      },
      batchId,
      {
        dryRun: options.dryRun,
        actor: cliActor(options.actor),
        ...(options.reason !== undefined ? { reason: options.reason } : {}),
      },
    );
  } catch (error) {
    if (error instanceof BatchRevertRefusedError || error instanceof RevertRequestError)
      throw new UsageError(error.message);
    if (error instanceof UnknownBatchError) throw new CommandFailedError(error.message);
    throw error;
  }
}

/** Human form of a revert report. */
export function describeRevert(report: RevertReport): string {
  const lines = [
    `${report.dryRun ? 'would revert' : 'reverted'} ${report.reverted} reward(s) of batch ${report.batchId}; ${report.alreadyReverted} reverted earlier; ` +
      `${report.closedDeadLetters} open dead-letter entr${report.closedDeadLetters === 1 ? 'y' : 'ies'} ${report.dryRun ? 'would be ' : ''}closed; status ${report.status}`,
  ];
  if (report.insufficientFunds.length > 0) {
    lines.push('left unreverted (their balance is lower than what the batch gave them):');
    lines.push(
      formatTable(
        ['uid', 'amount', 'balance'],
        report.insufficientFunds.map((user) => [user.uid, user.amount, user.balance]),
      ),
    );
  }
  if (report.failed.length > 0) {
    lines.push('not reverted (run the revert again):');
    lines.push(
      formatTable(
        ['uid', 'reason', 'error'],
        report.failed.map((user) => [user.uid, user.reason, user.error]),
      ),
    );
  }
  return lines.join('\n');
}
