import { getBatchReport, type BatchReport } from '../../status/batch-status.js';
import { assertNoStrandedChunks } from '../../queue/stranded-chunks.js';
import type { SourceRecord } from '../../rewards/reward-sources.js';
import { openWindfall, type Windfall } from '../../runtime/windfall.js';
import { InsufficientFundsError } from '../../wallet/wallet-errors.js';
import type { GlobalFlags } from '../support/context.js';
import { resolveConfig } from '../support/context.js';
import { printJson, printLine, printNote, formatCount, formatTable } from '../support/output.js';
import { watchBatch } from '../support/progress.js';
import { migrateDatabase } from './migrate.js';
import { seededRandom } from '../../runtime/seeded-random.js';

/** Options of the demo. */
export interface DemoOptions {
  readonly rewards: number;
  readonly users: number;
  readonly json?: boolean;
}

interface SampleBatch {
  readonly records: SourceRecord[];
  readonly expected: Map<string, bigint>;
  readonly hotUsers: string[];
}

/** About `rewards` rewards over `users` users of this run; 1 % of the users (the hot ones) get a quarter of them. */
function generateSample(run: string, rewards: number, users: number): SampleBatch {
  const next = seededRandom(42);
  const uid = (n: number): string => `demo-${run}-u${n}`;
  const hotCount = Math.max(1, Math.floor(users / 100));
  const hotUsers = Array.from({ length: hotCount }, (_, n) => uid(n));
  const records: SourceRecord[] = [];
  const expected = new Map<string, bigint>();
  for (let n = 0; n < rewards; n += 1) {
    // every user gets at least one reward; after that, a quarter go to hot users
    const user =
      n < users ? uid(n) : next() < 0.25 ? uid(Math.floor(next() * hotCount)) : uid(Math.floor(next() * users));
    const amount = BigInt(1 + Math.floor(next() * 1000));
    expected.set(user, (expected.get(user) ?? 0n) + amount);
    records.push({
      row: n + 1,
      value: { rewardId: `demo-${run}-r${n}`, uid: user, amount: amount.toString(), description: '活动奖励' },
    });
  }
  return { records, expected, hotUsers };
}

async function* fromArray(records: readonly SourceRecord[]): AsyncGenerator<SourceRecord> {
  yield* records;
}

/** Debits small amounts from hot users while the batch runs, as other wallet traffic would. */
async function withdrawWhileRunning(
  windfall: Windfall,
  run: string,
  hotUsers: readonly string[],
  done: { value: boolean },
) {
  let applied = 0;
  let refused = 0;
  let n = 0;
  while (!done.value) {
    const uid = hotUsers[n % hotUsers.length]!;
    try {
      await windfall.wallet.withdrawBalance(uid, 1n, {
        operationId: `demo-${run}-w${n}`,
        description: 'demo withdrawal',
      });
      applied += 1;
    } catch (error) {
      if (!(error instanceof InsufficientFundsError)) throw error;
      refused += 1;
    }
    n += 1;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return { applied, refused };
}

async function waitQuietly(windfall: Windfall, batchId: string, show: boolean): Promise<BatchReport> {
  return watchBatch(
    async () => {
      const report = await getBatchReport(windfall.database.pool, batchId);
      if (!report) throw new Error(`batch ${batchId} is missing`);
      return report;
    },
    show ? {} : { write: () => undefined },
  );
}

/**
 * The quick start: migrate; start a worker in this process; enqueue a generated batch (default 20,000 rewards over
 * 5,000 users, some hot) while withdrawals hit the hot users; show progress; enqueue a batch repeating 200 of the
 * rewards (all duplicates); print a summary and check every balance against the ledger and the generated data.
 * Returns false when a check fails.
 */
export async function runDemo(flags: GlobalFlags, options: DemoOptions): Promise<boolean> {
  const { config, logger } = resolveConfig(flags, {}, true);
  const say = options.json ? () => undefined : printNote;
  say(`migrating ${config.databaseUrl.replace(/:[^:@/]*@/, ':***@')} …`);
  await migrateDatabase(config, logger);
  const windfall = await openWindfall(config, logger);
  try {
    await assertNoStrandedChunks(windfall.database.pool, config.shards);
    const worker = windfall.createWorker();
    await worker.start();
    // with WINDFALL_WEBHOOK_URL the demo's batches send their events, as a worker's would
    await windfall.startEventDelivery();
    const run = Date.now().toString(36);
    const sample = generateSample(run, options.rewards, options.users);
    say(
      `enqueueing ${formatCount(options.rewards)} rewards over ${formatCount(options.users)} users (${sample.hotUsers.length} hot users also get withdrawals) …`,
    );

    const started = performance.now();
    const first = await windfall.producer.enqueue(fromArray(sample.records), { batchId: `demo-${run}` });
    const done = { value: false };
    const withdrawals = withdrawWhileRunning(windfall, run, sample.hotUsers, done);
    const report = await waitQuietly(windfall, first.batchId, !options.json);
    const seconds = (performance.now() - started) / 1000;
    done.value = true;
    const debits = await withdrawals;

    const repeats = sample.records.slice(0, 200);
    const second = await windfall.producer.enqueue(fromArray(repeats), { batchId: `demo-${run}-repeat` });
    const repeatReport = await waitQuietly(windfall, second.batchId, false);

    // Verification: every demo wallet equals its ledger, and equals generated credits minus withdrawals.
    const { rows } = await windfall.database.pool.query<{
      uid: string;
      balance: bigint;
      ledger: string;
      debits: string;
    }>(
      `select w.uid, w.balance,
              (select coalesce(sum(amount), 0) from ledger_entries l where l.uid = w.uid)::text as ledger,
              (select coalesce(-sum(amount), 0) from ledger_entries l where l.uid = w.uid and kind = 'debit')::text as debits
       from wallets w where w.uid like $1`,
      [`demo-${run}-%`],
    );
    let ledgerMismatches = 0;
    let expectedMismatches = 0;
    for (const row of rows) {
      if (row.balance !== BigInt(row.ledger)) ledgerMismatches += 1;
      if (row.balance !== (sample.expected.get(row.uid) ?? 0n) - BigInt(row.debits)) expectedMismatches += 1;
    }
    const missingWallets = sample.expected.size - rows.length;
    const ok =
      ledgerMismatches === 0 &&
      expectedMismatches === 0 &&
      missingWallets === 0 &&
      report.applied === options.rewards &&
      repeatReport.duplicate === repeats.length &&
      report.deadLettered === 0;

    const summary = {
      batchId: first.batchId,
      rewards: report.total,
      users: first.users,
      applied: report.applied,
      duplicates: repeatReport.duplicate,
      deadLettered: report.deadLettered + repeatReport.deadLettered,
      seconds: Number(seconds.toFixed(2)),
      rewardsPerSecond: Math.round(report.total / seconds),
      withdrawalsApplied: debits.applied,
      withdrawalsRefused: debits.refused,
      walletsChecked: rows.length,
      ledgerMismatches,
      expectedMismatches,
      missingWallets,
      ok,
    };
    if (options.json) printJson(summary);
    else {
      printLine();
      printLine(
        formatTable(
          ['', 'value'],
          [
            ['rewards enqueued', summary.rewards],
            ['users', summary.users],
            ['applied', summary.applied],
            ['duplicates (repeat batch)', summary.duplicates],
            ['dead-lettered', summary.deadLettered],
            ['time (s)', summary.seconds],
            ['rewards/s', summary.rewardsPerSecond],
            ['withdrawals applied / refused', `${summary.withdrawalsApplied} / ${summary.withdrawalsRefused}`],
            ['wallets checked', summary.walletsChecked],
            ['balance ≠ ledger', summary.ledgerMismatches],
            ['balance ≠ generated − withdrawn', summary.expectedMismatches],
          ],
        ),
      );
      printLine(
        ok ? '\nOK: every balance equals its ledger and the generated rewards.' : '\nFAILED: see the mismatches above.',
      );
      printLine(`Look closer: windfall batch ${first.batchId} · windfall wallet ${sample.hotUsers[0]}`);
    }
    return ok;
  } finally {
    await windfall.close();
  }
}
