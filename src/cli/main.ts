import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { cliAnswer } from '../errors/error-answers.js';
import { WindfallError } from '../errors/windfall-error.js';
import { BatchValidationError } from '../rewards/batch-errors.js';
import { createLogger, scrubSecrets } from '../log/logger.js';
import { registerCampaignCommands } from './commands/campaign-command.js';
import { registerEventsCommand } from './commands/events-command.js';
import { registerOperatorCommands } from './commands/operator-commands.js';
import { registerServeCommand } from './commands/serve-command.js';
import { registerReconcileCommand } from './commands/reconcile-command.js';
import type { CommandRegistry, GlobalFlags } from './support/context.js';
import { resolveConfig, withWindfall } from './support/context.js';
import { EXIT, UsageError } from './support/exit-codes.js';
export { installProcessGuards } from './support/process-guards.js';
import { describeRefusedBatch, printJson, printLine, printNote } from './support/output.js';

function wholeNumber(name: string, min: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < min)
      throw new InvalidArgumentError(`${name} must be a whole number ≥ ${min}`);
    return Number(value);
  };
}

/** Builds the `windfall` command line. `setExit` receives the exit code of a command that ran. */
export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('windfall')
    .description('Queue-driven batch reward worker: enqueue reward batches, run workers, inspect batches and wallets.')
    .option('--redis-url <url>', 'Redis URL (env REDIS_URL)')
    .option('--database-url <url>', 'PostgreSQL URL (env DATABASE_URL)')
    .option('--prefix <prefix>', 'Redis key prefix (env WINDFALL_PREFIX)')
    .option('--log-level <level>', 'pino level (env LOG_LEVEL)')
    .option(
      '--actor <name>',
      'who runs an operator command, recorded in the audit trail (default cli:<os user>@<host>)',
    )
    .showHelpAfterError()
    .exitOverride();

  const globals = (command: Command): GlobalFlags => command.optsWithGlobals<GlobalFlags>();

  program
    .command('migrate')
    .description('create the database if missing and apply migrations (idempotent)')
    .option('--json', 'print a JSON document')
    .action(async (options: { json?: boolean }, command: Command) => {
      const { config, logger } = resolveConfig(globals(command));
      const { migrateDatabase } = await import('./commands/migrate.js');
      const report = await migrateDatabase(config, logger);
      if (options.json) printJson(report);
      else {
        printLine(`database ${report.database}: ${report.created ? 'created' : 'exists'}`);
        printLine(
          report.applied.length > 0 ? `applied migrations: ${report.applied.join(', ')}` : 'migrations: up to date',
        );
      }
    });

  program
    .command('worker')
    .description('consume shard queues until SIGINT/SIGTERM, then drain and exit 0')
    .option('--shards <list>', 'shard queues to consume, e.g. 0-3,6 (default: all WINDFALL_SHARDS)')
    .option('--concurrency <n>', 'users processed at once (env WINDFALL_CONCURRENCY)', wholeNumber('--concurrency', 1))
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port', wholeNumber('--metrics-port', 1))
    .action(async (options: { shards?: string; concurrency?: number; metricsPort?: number }, command: Command) => {
      const parent = command.parent?.opts<GlobalFlags>() ?? {};
      const { runWorker } = await import('./commands/worker.js');
      await withWindfall(
        parent,
        (windfall) =>
          runWorker(windfall, {
            ...(options.shards !== undefined ? { shards: options.shards } : {}),
            ...(options.metricsPort !== undefined ? { metricsPort: options.metricsPort } : {}),
          }),
        {
          quiet: false,
          // a worker's statements are short: one without an answer past its deadline means a silent connection
          open: { statementDeadlines: true },
          ...(options.concurrency !== undefined ? { overrides: { concurrency: options.concurrency } } : {}),
        },
      );
    });

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
        const { enqueueFile, waitForBatch, withEnqueueSession } = await import('./commands/enqueue.js');
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
            const { describeBatch } = await import('./commands/read-commands.js');
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

  const batch = program
    .command('batch')
    .description(
      'status and counts of a batch (`batch cancel <batchId>` stops it, `batch revert <batchId>` takes it back)',
    )
    .argument('<batchId>')
    .option('--json', 'print a JSON document')
    .action(async (batchId: string, options: { json?: boolean }, command: Command) => {
      const { describeBatch, readBatch } = await import('./commands/read-commands.js');
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
        const { runRevert, describeRevert } = await import('./commands/revert-command.js');
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
      const { runCancel, describeCancel } = await import('./commands/cancel-command.js');
      await withWindfall(globals(command), async (windfall) => {
        const report = await runCancel(windfall, batchId, { actor: globals(command).actor, reason: options.reason });
        // (`batch` has a --json of its own, which takes the flag when it follows `cancel`)
        if (options.json || command.optsWithGlobals<{ json?: boolean }>().json) printJson(report);
        else printLine(describeCancel(report));
      });
    });

  program
    .command('reward')
    .description(
      'where one reward stands: its batch, uid, amount, state (pending, applied, duplicate, dead_lettered, purged, reverted), ledger or dead-letter entry; exit 1 for an unknown id',
    )
    .argument('<rewardId>')
    .option('--json', 'print a JSON document')
    .action(async (rewardId: string, options: { json?: boolean }, command: Command) => {
      const { describeReward, readReward } = await import('./commands/read-commands.js');
      await withWindfall(globals(command), async (windfall) => {
        const report = await readReward(windfall, rewardId);
        if (options.json) printJson(report);
        else printLine(describeReward(report));
      });
    });

  program
    .command('wallet')
    .description('balance and latest ledger entries of users')
    .argument('<uid...>')
    .option('--limit <n>', 'ledger entries per user', wholeNumber('--limit', 0), 10)
    .option('--json', 'print a JSON document')
    .action(async (uids: string[], options: { json?: boolean; limit: number }, command: Command) => {
      const { describeWallets, readWallets } = await import('./commands/read-commands.js');
      await withWindfall(globals(command), async (windfall) => {
        const wallets = await readWallets(windfall, uids, options.limit);
        if (options.json) printJson(wallets);
        else printLine(describeWallets(wallets));
      });
    });

  program
    .command('demo')
    .description('quick start: migrate, run workers, enqueue a sample batch with progress, print a summary')
    .option('--rewards <n>', 'rewards in the sample batch', wholeNumber('--rewards', 1), 20_000)
    .option('--users <n>', 'users in the sample batch', wholeNumber('--users', 1), 5_000)
    .option('--json', 'print the summary as a JSON document')
    .action(async (options: { rewards: number; users: number; json?: boolean }, command: Command) => {
      const { runDemo } = await import('./commands/demo.js');
      const ok = await runDemo(globals(command), options);
      if (!ok) setExit(EXIT.FAILED);
    });

  const registry: CommandRegistry = { globals, setExit };
  registerOperatorCommands(program, registry);
  registerCampaignCommands(program, registry);
  registerServeCommand(program, registry);
  registerReconcileCommand(program, registry);
  registerEventsCommand(program, registry);
  return program;
}

/**
 * Maps an error to its exit code by the error table (src/errors/error-table.ts, docs/errors.md) and prints it for
 * people (stderr). Under `--json` the error is also one JSON document on stdout — `{error, message}` plus the fields
 * the error carries (a refused batch: `errors` (the first 1,000), `summary`, `totalErrors`, `badRows`, `rowsRead`; an
 * exceeded budget: `campaignId`, `remaining`) — so that a script reading stdout always gets a document: `error` is
 * `invalid batch`, `batch conflict`, `budget exceeded`, `usage` (exit 2), `unavailable` (Redis or PostgreSQL does
 * not answer; exit 1) or `failed` (exit 1).
 */
export function reportError(error: unknown, json: boolean): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.exitCode === 0)
      return EXIT.OK;
    if (json) printJson({ error: 'usage', message: error.message.replace(/^error: /, '') });
    return EXIT.USAGE;
  }
  const { exit, document } = cliAnswer(error);
  // an error message may quote a connection URL or a header: never print a password or token
  const message = scrubSecrets(document.message);
  if (json) printJson({ ...document, message });
  if (error instanceof BatchValidationError) printNote(describeRefusedBatch(error, { listRows: !json }));
  else printNote(`windfall: ${message}`);
  if (
    !(error instanceof WindfallError) &&
    (process.env['LOG_LEVEL'] === 'debug' || process.env['LOG_LEVEL'] === 'trace')
  ) {
    createLogger('debug').error({ err: error }, 'command failed');
  }
  return exit;
}

/** Runs the CLI with `argv` (as `process.argv`); resolves with the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  let code: number = EXIT.OK;
  const program = buildProgram((exit) => {
    code = exit;
  });
  try {
    await program.parseAsync(argv);
    return code;
  } catch (error) {
    return reportError(error, argv.includes('--json'));
  }
}
