import type { Command } from 'commander';
import { type CommandRegistry, resolveConfig } from '../support/context.js';
import { EXIT } from '../support/exit-codes.js';
import { printJson, printLine, printNote } from '../support/output.js';

/** Registers `enqueue`: validate a reward file and enqueue it as one batch. */
export function registerEnqueueCommand(program: Command, registry: CommandRegistry): void {
  const { globals, setExit } = registry;

  program
    .command('enqueue')
    .description('validate a reward file (JSONL or CSV) and enqueue it as one batch; prints the batchId')
    .requiredOption('--file <file>', 'reward file (.jsonl, .ndjson, .csv) or - for standard input')
    .option('--format <format>', 'jsonl or csv (default: from the extension)')
    .option(
      '--batch-id <id>',
      'batch id (default: generated); a known id with the same rewards is a no-op, with other rewards refused (exit 2)',
    )
    .option(
      '--campaign <id>',
      "the campaign paying for the batch: refused (exit 2) when its total exceeds what remains of the campaign's budget",
    )
    .option(
      '--priority <priority>',
      'high, normal or low: high goes ahead of work already queued; a small batch never waits for a big one',
      'normal',
    )
    .option('--wait', 'show progress until the batch is done; exit 1 if anything was dead-lettered')
    .option('--json', 'print a JSON document')
    .action(
      async (
        options: {
          file: string;
          format?: string;
          batchId?: string;
          campaign?: string;
          priority?: string;
          wait?: boolean;
          json?: boolean;
        },
        command: Command,
      ) => {
        // the command's own light path (no worker, wallet or metrics code): see withEnqueueSession
        const { config, logger } = resolveConfig(globals(command));
        const { enqueueFile, waitForBatch, withEnqueueSession } = await import('./enqueue.js');
        await withEnqueueSession(config, logger, async ({ producer, pool }) => {
          const result = await enqueueFile(producer, options);
          if (!result.created) printNote(`batch ${result.batchId} was already enqueued: nothing new was enqueued`);
          if (!options.wait) {
            if (options.json) printJson({ batchId: result.batchId, total: result.total });
            else printLine(result.batchId);
            return;
          }
          if (!options.json)
            printNote(
              `batch ${result.batchId}: ${result.total} rewards for ${result.users} users in ${result.chunks} jobs`,
            );
          const report = await waitForBatch(pool, result.batchId);
          if (options.json) printJson(report);
          else {
            const { describeBatch } = await import('./read-commands.js');
            printLine(result.batchId);
            printNote(describeBatch(report));
          }
          if (report.deadLettered > 0) {
            if (!options.json)
              printNote(
                `${report.deadLettered} reward(s) were dead-lettered: see \`windfall dlq list --batch ${result.batchId}\``,
              );
            setExit(EXIT.FAILED);
          }
        });
      },
    );
}
