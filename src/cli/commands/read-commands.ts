import { getBatchReport, type BatchReport } from '../../status/batch-status.js';
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
