import { getBatchReport, type BatchReport } from '../../status/batch-status.js';
import { getRewardReport, unknownRewardMessage, type RewardReport } from '../../status/reward-status.js';
import type { Windfall } from '../../runtime/windfall.js';
import { readBalances, readLedger, type LedgerEntryView } from '../../wallet/wallet-service.js';
import { CommandFailedError } from '../support/exit-codes.js';
import { formatCount, formatTable } from '../support/output.js';

/** `windfall batch <id>`. */
export async function readBatch(windfall: Windfall, batchId: string): Promise<BatchReport> {
  const report = await getBatchReport(windfall.database.pool, batchId);
  if (!report)
    throw new CommandFailedError(
      `no batch has id ${JSON.stringify(batchId)} (was it enqueued against this DATABASE_URL?)`,
    );
  return report;
}

/** Human form of a batch report. */
export function describeBatch(report: BatchReport): string {
  return formatTable(
    [
      'batchId',
      'status',
      'total',
      'applied',
      'duplicate',
      'deadLettered',
      'pending',
      'reverted',
      'campaign',
      'priority',
    ],
    [
      [
        report.batchId,
        report.status,
        report.total,
        report.applied,
        report.duplicate,
        report.deadLettered,
        report.pending,
        report.reverted,
        report.campaignId ?? '-',
        report.priority,
      ],
    ],
  );
}

/** `windfall reward <rewardId>`: where the reward stands; exit 1 when no batch holds it. */
export async function readReward(windfall: Windfall, rewardId: string): Promise<RewardReport> {
  const report = await getRewardReport(windfall.database.pool, rewardId);
  if (!report) throw new CommandFailedError(await unknownRewardMessage(windfall.database.pool, rewardId));
  return report;
}

/** Human form of a reward report: one field a line, then the other batches holding the rewardId, if any. */
export function describeReward(report: RewardReport): string {
  const fields: [string, string | null][] = [
    ['rewardId', report.rewardId],
    ['batchId', report.batchId],
    ['uid', report.uid],
    ['amount', report.amount],
    ['state', report.state],
    ['ledgerEntryId', report.ledgerEntryId],
    ['appliedAt', report.appliedAt],
    ['deadLetterId', report.deadLetterId],
    ['reason', report.reason],
  ];
  if (report.revertedAt !== null) fields.push(['revertedAt', report.revertedAt]);
  const width = Math.max(...fields.map(([name]) => name.length));
  const lines = fields.map(([name, value]) => `${name.padEnd(width)}  ${value ?? '-'}`);
  const others = report.batches.filter((batch) => batch.batchId !== report.batchId);
  if (others.length > 0) {
    lines.push('', `also in ${formatCount(others.length)} other batch${others.length === 1 ? '' : 'es'}:`);
    lines.push(
      formatTable(
        ['batchId', 'state'],
        others.map((batch) => [batch.batchId, batch.state]),
      ),
    );
  }
  return lines.join('\n');
}

/** A wallet as `windfall wallet` shows it. */
export interface WalletView {
  readonly uid: string;
  readonly balance: string;
  readonly entries: readonly LedgerEntryView[];
}

/** `windfall wallet <uid>…`: balance (0 for an unknown user) and the latest entries of each. */
export async function readWallets(windfall: Windfall, uids: readonly string[], limit: number): Promise<WalletView[]> {
  const balances = await readBalances(windfall.database.pool, uids);
  return Promise.all(
    uids.map(async (uid) => ({
      uid,
      balance: (balances.get(uid) ?? 0n).toString(),
      entries: await readLedger(windfall.database.pool, uid, limit),
    })),
  );
}

/** Human form of wallets. */
export function describeWallets(wallets: readonly WalletView[]): string {
  return wallets
    .map((wallet) => {
      const head = `${wallet.uid}: balance ${wallet.balance} (${formatCount(wallet.entries.length)} latest entries)`;
      if (wallet.entries.length === 0) return head;
      const table = formatTable(
        ['createdAt', 'operationId', 'kind', 'amount', 'batchId', 'description'],
        wallet.entries.map((entry) => [
          entry.createdAt,
          entry.operationId,
          entry.kind,
          entry.amount,
          entry.batchId,
          entry.description,
        ]),
      );
      return `${head}\n${table}`;
    })
    .join('\n\n');
}
