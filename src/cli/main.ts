import { Command, CommanderError } from 'commander';
import { BatchConflictError, BatchValidationError } from '../rewards/batch-errors.js';
import { ConfigError } from '../config/config-error.js';
import { createLogger, scrubSecrets } from '../log/logger.js';
import { CsvHeaderError } from '../rewards/reward-sources.js';
import { FileEncodingError } from '../rewards/line-reader.js';
import { ServiceUnavailableError } from '../services/service-check.js';
import { BudgetExceededError } from '../staging/budget-reservation.js';
import { registerBatchCommands } from './commands/batch-command.js';
import { registerCampaignCommands } from './commands/campaign-command.js';
import { registerDemoCommand } from './commands/demo-command.js';
import { registerEnqueueCommand } from './commands/enqueue-command.js';
import { registerLookupCommands } from './commands/lookup-commands.js';
import { registerMigrateCommand } from './commands/migrate-command.js';
import { registerWorkerCommand } from './commands/worker-command.js';
import { registerEventsCommand } from './commands/events-command.js';
import { registerOperatorCommands } from './commands/operator-commands.js';
import { registerServeCommand } from './commands/serve-command.js';
import { registerReconcileCommand } from './commands/reconcile-command.js';
import type { CommandRegistry, GlobalFlags } from './support/context.js';
import { CommandFailedError, EXIT, UsageError } from './support/exit-codes.js';
export { installProcessGuards } from './support/process-guards.js';
import { describeRefusedBatch, printJson, printNote } from './support/output.js';

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

  const registry: CommandRegistry = { globals, setExit };
  registerMigrateCommand(program, registry);
  registerWorkerCommand(program, registry);
  registerEnqueueCommand(program, registry);
  registerBatchCommands(program, registry);
  registerLookupCommands(program, registry);
  registerDemoCommand(program, registry);
  registerOperatorCommands(program, registry);
  registerCampaignCommands(program, registry);
  registerServeCommand(program, registry);
  registerReconcileCommand(program, registry);
  registerEventsCommand(program, registry);
  return program;
}

/**
 * Maps an error to its exit code and prints it for people (stderr). Under `--json` the error is also one JSON
 * document on stdout — `{error, message}`, plus `errors` (the first 1,000), `summary`, `totalErrors`, `badRows` and
 * `rowsRead` for a refused batch — so that a script
 * reading stdout always gets a document: `error` is `invalid batch`, `batch conflict` (a known batchId with other
 * rewards), `budget exceeded` (with `remaining`, the campaign's remaining budget), `usage` (exit 2), `unavailable` (Redis or PostgreSQL does not answer; exit 1) or `failed` (exit 1).
 */
export function reportError(error: unknown, json: boolean): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.exitCode === 0)
      return EXIT.OK;
    if (json) printJson({ error: 'usage', message: error.message.replace(/^error: /, '') });
    return EXIT.USAGE;
  }
  if (error instanceof BatchValidationError) {
    if (json) printJson({ error: 'invalid batch', message: error.message.split('\n')[0], ...error.details() });
    printNote(describeRefusedBatch(error, { listRows: !json }));
    return EXIT.USAGE;
  }
  if (error instanceof BudgetExceededError) {
    if (json)
      printJson({
        error: 'budget exceeded',
        message: error.message,
        remaining: error.remaining.toString(),
        campaignId: error.campaignId,
      });
    printNote(`windfall: ${error.message}`);
    return EXIT.USAGE;
  }
  if (error instanceof BatchConflictError) {
    if (json) printJson({ error: 'batch conflict', message: error.message });
    printNote(`windfall: ${error.message}`);
    return EXIT.USAGE;
  }
  // an error message may quote a connection URL or a header: never print a password or token
  const message = scrubSecrets(error instanceof Error ? error.message : String(error));
  const usage =
    error instanceof UsageError ||
    error instanceof ConfigError ||
    error instanceof CsvHeaderError ||
    error instanceof FileEncodingError;
  const kind = usage ? 'usage' : error instanceof ServiceUnavailableError ? 'unavailable' : 'failed';
  if (json) printJson({ error: kind, message });
  printNote(`windfall: ${message}`);
  if (
    kind === 'failed' &&
    !(error instanceof CommandFailedError) &&
    (process.env['LOG_LEVEL'] === 'debug' || process.env['LOG_LEVEL'] === 'trace')
  ) {
    createLogger('debug').error({ err: error }, 'command failed');
  }
  return usage ? EXIT.USAGE : EXIT.FAILED;
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
