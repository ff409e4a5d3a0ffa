import type { Command } from 'commander';
import { type CommandRegistry, withWindfall } from '../support/context.js';
import { wholeNumber } from '../support/option-parsers.js';
import { printJson, printLine } from '../support/output.js';

/** Registers `reward <rewardId>` and `wallet <uid...>`. */
export function registerLookupCommands(program: Command, registry: CommandRegistry): void {
  const { globals } = registry;

  program
    .command('reward')
    .description(
      'where one reward stands: its batch, uid, amount, state (pending, applied, duplicate, dead_lettered, purged, reverted), ledger or dead-letter entry; exit 1 for an unknown id',
    )
    .argument('<rewardId>')
    .option('--json', 'print a JSON document')
    .action(async (rewardId: string, options: { json?: boolean }, command: Command) => {
      const { describeReward, readReward } = await import('./read-commands.js');
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
      const { describeWallets, readWallets } = await import('./read-commands.js');
      await withWindfall(globals(command), async (windfall) => {
        const wallets = await readWallets(windfall, uids, options.limit);
        if (options.json) printJson(wallets);
        else printLine(describeWallets(wallets));
      });
    });
}
