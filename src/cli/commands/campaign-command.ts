import type { Command } from 'commander';
import { cliActor } from '../../audit/audit-trail.js';
import {
  getCampaignReport,
  setCampaignBudget,
  UnknownCampaignError,
  type CampaignReport,
} from '../../campaign/campaign-budget.js';
import { type CommandRegistry, withWindfall } from '../support/context.js';
import { formatTable, printJson, printLine } from '../support/output.js';

/** Human form of a campaign. */
export function describeCampaign(report: CampaignReport): string {
  return formatTable(
    ['campaign', 'budget', 'reserved', 'applied', 'released', 'remaining'],
    [
      [
        report.campaignId,
        report.budget ?? 'unlimited',
        report.reserved,
        report.applied,
        report.released,
        report.remaining ?? 'unlimited',
      ],
    ],
  );
}

/** A campaign's report, or exit 1 naming what to do. */
async function readCampaign(
  pool: Parameters<typeof getCampaignReport>[0],
  campaignId: string,
): Promise<CampaignReport> {
  const report = await getCampaignReport(pool, campaignId);
  if (!report) {
    throw new UnknownCampaignError(
      `no campaign ${JSON.stringify(campaignId)}: no batch names it and no budget was set (set one with \`windfall campaign set ${campaignId} --budget AMOUNT\`)`,
    );
  }
  return report;
}

/** Registers `windfall campaign set|show`. */
export function registerCampaignCommands(program: Command, registry: CommandRegistry): void {
  const campaign = program
    .command('campaign')
    .description("a campaign's payout budget: batches naming the campaign are refused once their total does not fit");

  campaign
    .command('set')
    .description(
      'set or change a budget (minor units); audited. Lowering it below what is reserved refuses new batches, never touches accepted ones',
    )
    .argument('<campaignId>')
    .requiredOption(
      '--budget <amount>',
      'the budget in minor units (cents), a whole number ≥ 0; "unlimited" removes it',
    )
    .option('--json', 'print a JSON document')
    .action(async (campaignId: string, options: { budget: string; json?: boolean }, command: Command) => {
      const globals = registry.globals(command);
      await withWindfall(globals, async (windfall) => {
        const report = await setCampaignBudget(windfall.database.pool, campaignId, options.budget, {
          actor: cliActor(globals.actor),
        });
        if (options.json) printJson(report);
        else printLine(describeCampaign(report));
      });
    });

  campaign
    .command('show')
    .description(
      'a campaign: {campaignId, budget, reserved, applied, released, remaining} (money as digit strings; null budget = unlimited)',
    )
    .argument('<campaignId>')
    .option('--json', 'print a JSON document')
    .action(async (campaignId: string, options: { json?: boolean }, command: Command) => {
      await withWindfall(registry.globals(command), async (windfall) => {
        const report = await readCampaign(windfall.database.pool, campaignId);
        if (options.json) printJson(report);
        else printLine(describeCampaign(report));
      });
    });
}
