import type { Command } from 'commander';
import { type CommandRegistry, withWindfall } from '../support/context.js';
import { wholeNumber } from '../support/option-parsers.js';

/** Registers `worker`: consume shard queues until SIGINT/SIGTERM. */
export function registerWorkerCommand(program: Command, registry: CommandRegistry): void {
  const { globals } = registry;

  program
    .command('worker')
    .description('consume shard queues until SIGINT/SIGTERM, then drain and exit 0')
    .option('--shards <list>', 'shard queues to consume, e.g. 0-3,6 (default: all WINDFALL_SHARDS)')
    .option(
      '--concurrency <n>',
      'PostgreSQL transactions settling users at once (env WINDFALL_CONCURRENCY)',
      wholeNumber('--concurrency', 1),
    )
    .option('--metrics-port <port>', 'serve Prometheus metrics on this port', wholeNumber('--metrics-port', 1))
    .action(async (options: { shards?: string; concurrency?: number; metricsPort?: number }, command: Command) => {
      const { runWorker } = await import('./worker.js');
      await withWindfall(
        globals(command),
        (windfall) =>
          runWorker(windfall, {
            ...(options.shards !== undefined ? { shards: options.shards } : {}),
            ...(options.metricsPort !== undefined ? { metricsPort: options.metricsPort } : {}),
          }),
        {
          quiet: false,
          // a worker's statements are short: one without an answer past its deadline means a silent connection
          open: { statementDeadlines: 'worker' },
          ...(options.concurrency !== undefined ? { overrides: { concurrency: options.concurrency } } : {}),
        },
      );
    });
}
