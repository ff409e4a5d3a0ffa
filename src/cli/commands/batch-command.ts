import type { Command } from 'commander';
import { type CommandRegistry, withWindfall } from '../support/context.js';
import { EXIT, UsageError } from '../support/exit-codes.js';
import { printJson, printLine } from '../support/output.js';

/** Registers `batch <batchId>` and its `revert` and `cancel`. */
export function registerBatchCommands(program: Command, registry: CommandRegistry): void {
  const { globals, setExit } = registry;

  const batch = program
    .command('batch')
    .description(
      'status and counts of a batch (`batch cancel <batchId>` stops it, `batch revert <batchId>` takes it back)',
    )
    .argument('<batchId>')
    .option('--json', 'print a JSON document')
    .action(async (batchId: string, options: { json?: boolean }, command: Command) => {
      const { describeBatch, readBatch } = await import('./read-commands.js');
      await withWindfall(globals(command), async (windfall) => {
        const report = await readBatch(windfall, batchId);
        if (options.json) printJson(report);
        else printLine(describeBatch(report));
      });
    });

  batch
    .command('revert')
    .description(
      'debit back every reward the batch applied, exactly once; never drives a balance negative (such users are listed, exit 1)',
    )
    .argument('<batchId>')
    .option('--yes', 'really revert')
    .option('--dry-run', 'show what would be reverted; change nothing')
    .option('--reason <text>', 'why (recorded with the debits and in the audit trail)')
    .option('--json', 'print a JSON document')
    .action(
      async (
        batchId: string,
        options: { yes?: boolean; dryRun?: boolean; reason?: string; json?: boolean },
        command: Command,
      ) => {
        if (!options.yes && !options.dryRun) {
          throw new UsageError(
            `refusing to revert batch ${JSON.stringify(batchId)} without --yes: it debits every reward the batch applied. Try --dry-run first.`,
          );
        }
        const { runRevert, describeRevert } = await import('./revert-command.js');
        await withWindfall(globals(command), async (windfall) => {
          const report = await runRevert(windfall, batchId, {
            dryRun: options.dryRun ?? false,
            actor: globals(command).actor,
            reason: options.reason,
          });
          // (`batch` has a --json of its own, which takes the flag when it follows `revert`)
          if (options.json || command.optsWithGlobals<{ json?: boolean }>().json) printJson(report);
          else printLine(describeRevert(report));
          if (report.insufficientFunds.length > 0 || report.failed.length > 0) setExit(EXIT.FAILED);
        });
      },
    );

  batch
    .command('cancel')
    .description(
      'stop a batch in flight: no new chunk starts, users in flight finish whole, what was applied stays (revert is separate), the rest is cancelled',
    )
    .argument('<batchId>')
    .option('--yes', 'really cancel')
    .option('--reason <text>', 'why (recorded in the audit trail)')
    .option('--json', 'print a JSON document')
    .action(async (batchId: string, options: { yes?: boolean; reason?: string; json?: boolean }, command: Command) => {
      if (!options.yes) {
        throw new UsageError(
          `refusing to cancel batch ${JSON.stringify(batchId)} without --yes: its rewards not paid yet will never be paid by it.`,
        );
      }
      const { runCancel, describeCancel } = await import('./cancel-command.js');
      await withWindfall(globals(command), async (windfall) => {
        const report = await runCancel(windfall, batchId, { actor: globals(command).actor, reason: options.reason });
        // (`batch` has a --json of its own, which takes the flag when it follows `cancel`)
        if (options.json || command.optsWithGlobals<{ json?: boolean }>().json) printJson(report);
        else printLine(describeCancel(report));
      });
    });
}
