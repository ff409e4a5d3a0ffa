import type { Command } from 'commander';
import type { CommandRegistry } from '../support/context.js';
import { EXIT } from '../support/exit-codes.js';
import { wholeNumber } from '../support/option-parsers.js';

/** Registers `demo`: the quick start. */
export function registerDemoCommand(program: Command, registry: CommandRegistry): void {
  const { globals, setExit } = registry;

  program
    .command('demo')
    .description('quick start: migrate, run workers, enqueue a sample batch with progress, print a summary')
    .option('--rewards <n>', 'rewards in the sample batch', wholeNumber('--rewards', 1), 20_000)
    .option('--users <n>', 'users in the sample batch', wholeNumber('--users', 1), 5_000)
    .option('--json', 'print the summary as a JSON document')
    .action(async (options: { rewards: number; users: number; json?: boolean }, command: Command) => {
      const { runDemo } = await import('./demo.js');
      const ok = await runDemo(globals(command), options);
      if (!ok) setExit(EXIT.FAILED);
    });
}
