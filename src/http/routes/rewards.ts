import type { Windfall } from '../../runtime/windfall.js';
import { getRewardReport, unknownRewardMessage } from '../../status/reward-status.js';
import { fail, type TypedScope } from './route-support.js';
import { rewardIdParams } from './schemas.js';

/** What the reward routes use. */
export interface RewardRouteDeps {
  readonly windfall: Windfall;
}

/**
 * Registers `GET /v1/rewards/:rewardId` (as `windfall reward --json`; 404 for an unknown rewardId) on the producer
 * scope.
 */
export function registerRewardRoutes(producer: TypedScope, { windfall }: RewardRouteDeps): void {
  // as `windfall reward --json`
  producer.get('/v1/rewards/:rewardId', { schema: { params: rewardIdParams } }, async (request, reply) => {
    const { rewardId } = request.params;
    const report = await getRewardReport(windfall.database.pool, rewardId);
    if (!report) return fail(reply, 404, 'not found', await unknownRewardMessage(windfall.database.pool, rewardId));
    return report;
  });
}
