import type { PurgeReport, ReplayReport } from '../dead-letters/dead-letter-service.js';
import type { LockStatus } from '../lock/user-locks.js';
import type { RevertReport } from '../revert/batch-revert.js';

/** The console's answers in words: what an action did (or, previewed, would do), for the operator who asked. */

/** `1 entry`, `2 entries`, `1,000 rewards`. */
function count(n: number, one: string, many: string): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}

/** Why entries were skipped, grouped: `1 skipped (already replayed), 2 skipped (purged)`. */
function skippedWords(report: ReplayReport): string {
  if (report.skippedCount === 0) return '';
  const byState = new Map<string, number>();
  for (const entry of report.skipped) byState.set(entry.state, (byState.get(entry.state) ?? 0) + 1);
  const known = [...byState.values()].reduce((a, b) => a + b, 0);
  const parts = [...byState].map(
    ([state, n]) => `${n} ${state === 'replayed' ? 'already replayed' : state === 'missing' ? 'unknown' : state}`,
  );
  if (known < report.skippedCount) parts.push(`${report.skippedCount - known} more`);
  return `; skipped ${count(report.skippedCount, 'entry', 'entries')} (${parts.join(', ')})`;
}

/** "Replayed 1 entry, 2 rewards" / "Would replay …". */
export function replayWords(report: ReplayReport): string {
  const what = `${count(report.replayedCount, 'entry', 'entries')}, ${count(report.rewardCount, 'reward', 'rewards')}`;
  const head =
    report.replayedCount === 0
      ? report.dryRun
        ? 'Nothing to replay'
        : 'Replayed nothing'
      : `${report.dryRun ? 'Would replay' : 'Replayed'} ${what}`;
  return `${head}${skippedWords(report)}`;
}

/** "Purged 1 entry: its rewards will not be paid" / "Would purge …". */
export function purgeWords(report: PurgeReport): string {
  if (report.count === 0) return report.dryRun ? 'Nothing to purge (no open entry selected)' : 'Purged nothing';
  const what = count(report.count, 'entry', 'entries');
  return report.dryRun
    ? `Would purge ${what}: their rewards would never be paid`
    : `Purged ${what}: their rewards will not be paid`;
}

/** "Would revert 3 rewards; 1 user left unreverted (balance too low); the batch would be partially_reverted". */
export function revertWords(report: RevertReport): string {
  const parts = [`${report.dryRun ? 'Would revert' : 'Reverted'} ${count(report.reverted, 'reward', 'rewards')}`];
  if (report.alreadyReverted > 0)
    parts.push(`${count(report.alreadyReverted, 'reward was', 'rewards were')} reverted before`);
  if (report.closedDeadLetters > 0)
    parts.push(
      `${report.dryRun ? 'would close' : 'closed'} ${count(report.closedDeadLetters, 'dead-letter entry', 'dead-letter entries')}`,
    );
  if (report.insufficientFunds.length > 0)
    parts.push(`${count(report.insufficientFunds.length, 'user', 'users')} left unreverted (balance too low)`);
  if (report.failed.length > 0)
    parts.push(
      `${count(report.failed.length, 'user', 'users')} failed (${report.failed.map((f) => f.reason).join(', ')})`,
    );
  // (done, the console adds the batch's status as its page shows it)
  if (report.dryRun) parts.push(`the batch would be ${report.status}`);
  return parts.join('; ');
}

/** "Cancelled 120 rewards; 40 applied stay" / "Would cancel …" / "Nothing to cancel …". */
export function cancelWords(
  report: { batchId: string; cancelled: number; applied: number; status: string; noop: boolean },
  dryRun = false,
): string {
  if (report.noop)
    return report.status === 'cancelled'
      ? `Batch ${report.batchId} was cancelled already (${count(report.cancelled, 'reward', 'rewards')} cancelled)`
      : `Nothing to cancel: every reward of batch ${report.batchId} is settled (status ${report.status})`;
  return `${dryRun ? 'Would cancel' : 'Cancelled'} ${count(report.cancelled, 'reward', 'rewards')} not settled yet; ${count(report.applied, 'applied reward stays', 'applied rewards stay')}`;
}

/** "Released the lock of u1 (held by host:4)" / "Would release …" / "u1 was not locked". */
export function lockReleaseWords(
  result:
    | { readonly dryRun: true; readonly uid: string; readonly wouldRelease: LockStatus }
    | { readonly uid: string; readonly released: boolean; readonly previous: LockStatus },
): string {
  const status = 'wouldRelease' in result ? result.wouldRelease : result.previous;
  if (!status.locked) return `The lock of ${result.uid} is not held: nothing to release`;
  const holder = status.owner ? ` (held by ${status.owner})` : '';
  return 'wouldRelease' in result
    ? `Would release the lock of ${result.uid}${holder}`
    : `Released the lock of ${result.uid}${holder}`;
}
