import type { Command } from 'commander';
import { type CommandRegistry, resolveConfig } from '../support/context.js';
import { printJson, printLine } from '../support/output.js';

/** Registers `migrate`: create the database if missing and apply the migrations. */
export function registerMigrateCommand(program: Command, registry: CommandRegistry): void {
  const { globals } = registry;

  program
    .command('migrate')
    .description('create the database if missing and apply migrations (idempotent)')
    .option('--json', 'print a JSON document')
    .action(async (options: { json?: boolean }, command: Command) => {
      const { config, logger } = resolveConfig(globals(command));
      const { migrateDatabase } = await import('./migrate.js');
      const report = await migrateDatabase(config, logger);
      if (options.json) printJson(report);
      else {
        printLine(`database ${report.database}: ${report.created ? 'created' : 'exists'}`);
        printLine(
          report.applied.length > 0 ? `applied migrations: ${report.applied.join(', ')}` : 'migrations: up to date',
        );
      }
    });
}
