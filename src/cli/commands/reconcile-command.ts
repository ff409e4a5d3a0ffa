import type { Command } from 'commander';
import { connectDatabase } from '../../db/database.js';
import { reconcile, type ReconcileReport } from '../../reconcile/reconcile.js';
import { describeStranded, resumeOpenWork, type ResumeReport } from '../../reconcile/resume-work.js';
import { checkPostgres } from '../../services/service-check.js';
import { type CommandRegistry, resolveConfig, withWindfall } from '../support/context.js';
import { wholeNumber } from '../support/option-parsers.js';
import { EXIT } from '../support/exit-codes.js';
import { formatCount, formatTable, printJson, printLine, printNote } from '../support/output.js';

/** Flags of `windfall reconcile`. */
interface ReconcileFlags {
  readonly json?: boolean;
  readonly strict?: boolean;
  readonly limit: number;
  readonly resume?: boolean;
  readonly dryRun?: boolean;
}

/** Human form of a reconcile report. */
export function describeReconcile(report: ReconcileReport): string {
  const lines: string[] = [];
  const r = report.rewards;
  lines.push(
    `checked ${formatCount(report.wallets)} wallets, ${formatCount(report.ledgerEntries)} ledger entries, ${formatCount(report.batches)} batches ` +
      `(${formatCount(r.total)} rewards: ${formatCount(r.applied)} applied, ${formatCount(r.duplicate)} duplicate, ` +
      `${formatCount(r.deadLettered)} dead-lettered, ${formatCount(r.inFlight)} in flight) in ${report.seconds} s`,
  );
  if (report.pendingBatches.length > 0) {
    lines.push(
      '',
      `batches still processing${report.strict ? ' (strict: counted as mismatches)' : ' (not mismatches)'}:`,
    );
    lines.push(
      formatTable(
        ['batchId', 'pending', 'openChunks', 'replaying', 'createdAt'],
        report.pendingBatches.map((batch) => [
          batch.batchId,
          batch.pending,
          batch.openChunks,
          batch.replaying,
          batch.createdAt,
        ]),
      ),
    );
  }
  if (report.mismatchCount === 0) {
    lines.push(
      '',
      'reconcile: OK — every balance equals its ledger, every reward is accounted for, no operation id twice',
    );
    return lines.join('\n');
  }
  lines.push(
    '',
    `reconcile: ${formatCount(report.mismatchCount)} mismatch${report.mismatchCount === 1 ? '' : 'es'}${report.truncated ? ` (${report.mismatches.length} listed)` : ''}`,
  );
  lines.push(
    formatTable(
      ['kind', 'uid', 'expected', 'actual', 'batchId', 'rewardId'],
      report.mismatches.map((m) => [m.kind, m.uid, m.expected, m.actual, m.batchId, m.rewardId]),
    ),
  );
  return lines.join('\n');
}

function describeResume(report: ResumeReport, shards: number): string {
  const verb = report.dryRun ? 'would re-add' : 're-added';
  const lines = [
    `resume: ${verb} ${report.chunks.length} chunk job${report.chunks.length === 1 ? '' : 's'} and ${report.replays.length} replay job${report.replays.length === 1 ? '' : 's'} ` +
      `(${report.checkedChunks} open chunks and ${report.checkedReplays} unfinished replays checked)`,
  ];
  for (const job of [...report.chunks, ...report.replays])
    lines.push(`  ${job.jobId} (batch ${job.batchId}, shard ${job.shard}): job was ${job.was}`);
  if (report.stranded.length > 0)
    lines.push(`resume: not re-added (exit 1): ${describeStranded(report.stranded, shards)}`);
  return lines.join('\n');
}

/**
 * Registers `windfall reconcile [--json] [--strict] [--limit N] [--resume [--dry-run]]`.
 * Exit 0 when the books are clean, 1 listing each mismatch (uid, expected, actual).
 */
export function registerReconcileCommand(program: Command, registry: CommandRegistry): void {
  program
    .command('reconcile')
    .description(
      'check that every balance equals the sum of its ledger, every reward of every batch is applied, duplicate or dead-lettered, ' +
        'and no operation id is in the ledger twice; exit 1 listing each mismatch',
    )
    .option('--json', 'print a JSON document')
    .option(
      '--strict',
      'also count rewards still in flight (batches with open chunks, unfinished replays) as mismatches',
    )
    .option('--limit <n>', 'mismatches listed per kind (all are counted)', wholeNumber('--limit'), 1000)
    .option(
      '--resume',
      're-add the lost or failed jobs of open chunks and unfinished replays (needs Redis), then check',
    )
    .option('--dry-run', 'with --resume: only say which jobs would be re-added')
    .action(async (flags: ReconcileFlags, command: Command) => {
      const globals = registry.globals(command);
      const { config, logger } = resolveConfig(globals);
      let resumed: ResumeReport | undefined;
      if (flags.resume) {
        resumed = await withWindfall(globals, (windfall) =>
          resumeOpenWork(windfall.database.pool, windfall.queues, {
            minAgeMs: 0,
            dryRun: flags.dryRun ?? false,
            logger: windfall.logger,
          }),
        );
        if (!flags.json) printNote(describeResume(resumed, config.shards));
        // chunks on shards beyond WINDFALL_SHARDS: no worker of this setting would ever run them
        if (resumed.stranded.length > 0) registry.setExit(EXIT.FAILED);
      }
      // The check itself needs PostgreSQL only: it works while Redis is down.
      const database = connectDatabase(config.databaseUrl, {
        poolSize: 2,
        logger,
        applicationName: 'windfall-reconcile',
      });
      try {
        await checkPostgres(database.pool, config.databaseUrl);
        const report = await reconcile(database.pool, { strict: flags.strict ?? false, limit: flags.limit });
        if (flags.json) printJson(resumed ? { ...report, resumed } : report);
        else printLine(describeReconcile(report));
        if (!report.ok) registry.setExit(EXIT.FAILED);
      } finally {
        await database.close();
      }
    });
}
