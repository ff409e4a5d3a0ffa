import { cliActor } from '../../audit/audit-trail.js';
import { cancelBatch, type CancelReport } from '../../cancel/batch-cancel.js';
import type { Windfall } from '../../runtime/windfall.js';

/** `windfall batch cancel`: exit 1 for an unknown batch, 2 for a bad reason (the error table). */
export async function runCancel(
  windfall: Windfall,
  batchId: string,
  options: { actor: string | undefined; reason: string | undefined },
): Promise<CancelReport> {
  return cancelBatch({ pool: windfall.database.pool, logger: windfall.logger, events: windfall.events }, batchId, {
    actor: cliActor(options.actor),
    ...(options.reason !== undefined ? { reason: options.reason } : {}),
  });
}

/** Human form of a cancel report. */
export function describeCancel(report: CancelReport): string {
  if (report.noop) {
    return report.status === 'cancelled'
      ? `batch ${report.batchId} was cancelled already: ${report.cancelled} reward(s) cancelled, ${report.applied} applied`
      : `nothing to cancel: batch ${report.batchId} has no reward left to settle (status ${report.status}); revert it to take back what it paid`;
  }
  return `cancelled batch ${report.batchId}: ${report.cancelled} reward(s) will never be paid by it, ${report.applied} applied stay (revert is a separate choice); status cancelled`;
}
