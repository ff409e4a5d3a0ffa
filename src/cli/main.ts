import { Command, CommanderError } from 'commander';
import { cliAnswer } from '../errors/error-answers.js';
import { WindfallError } from '../errors/windfall-error.js';
import { BatchValidationError } from '../rewards/batch-errors.js';
import { createLogger, scrubSecrets } from '../log/logger.js';
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
import { EXIT } from './support/exit-codes.js';
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
