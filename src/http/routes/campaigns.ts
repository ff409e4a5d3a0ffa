import type { Windfall } from '../../runtime/windfall.js';
import { getCampaignReport, setCampaignBudget } from '../../campaign/campaign-budget.js';
import { actorOf, fail, type TypedScope } from './route-support.js';
import { campaignBudgetSchema, campaignIdParams } from './schemas.js';

/** What the campaign routes use. */
export interface CampaignRouteDeps {
  readonly windfall: Windfall;
}

/**
 * Registers `PUT /v1/campaigns/:id` (sets a campaign's budget, audited) and `GET /v1/campaigns/:id` (its budget and
 * spending; 404 for a campaign no batch names and no budget was set for) on the operator scope.
 */
export function registerCampaignRoutes(operator: TypedScope, { windfall }: CampaignRouteDeps): void {
  operator.put(
    '/v1/campaigns/:id',
    { schema: { params: campaignIdParams, body: campaignBudgetSchema } },
    async (request) => {
      const { id } = request.params;
      const { budget } = request.body;
      return setCampaignBudget(windfall.database.pool, id, budget, { actor: actorOf(request) });
    },
  );

  operator.get('/v1/campaigns/:id', { schema: { params: campaignIdParams } }, async (request, reply) => {
    const { id } = request.params;
    const report = await getCampaignReport(windfall.database.pool, id);
    if (!report)
      return fail(
        reply,
        404,
        'not found',
        `no campaign ${JSON.stringify(id)}: no batch names it and no budget was set`,
      );
    return report;
  });
}
