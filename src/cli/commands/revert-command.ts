import { revertBatch, type RevertReport } from '../../revert/batch-revert.js';
import { cliActor } from '../../audit/audit-trail.js';
import type { Windfall } from '../../runtime/windfall.js';
import { formatTable } from '../support/output.js';

/**
 * `windfall batch revert`: exit 2 while the batch is processing or for a bad reason, 1 for an unknown batch (the
 * error table).
 */
export async function runRevert(
  windfall: Windfall,
  batchId: string,
  options: { dryRun: boolean; actor: string | undefined; reason: string | undefined },
): Promise<RevertReport> {
  return revertBatch(
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
