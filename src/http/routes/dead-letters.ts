import type { Windfall } from '../../runtime/windfall.js';
import type { Logger } from '../../log/logger.js';
import { selectionFilter } from '../../dead-letters/dead-letter-selection.js';
import { actorOf, fail, type TypedScope } from './route-support.js';
import { deadLetterIdParams, deadLetterQuery, deadLetterShowQuery, replayRequestSchema } from './schemas.js';

/** What the dead-letter routes use. */
export interface DeadLetterRouteDeps {
  readonly windfall: Windfall;
  readonly logger: Logger;
}

/**
 * Registers `GET /v1/dead-letters` (entries by reason, batch and state, paged), `GET /v1/dead-letters/:id` (one entry;
 * 404 when none has that id) and `POST /v1/dead-letters/replay` (a selection replayed or, with `dryRun`, counted;
 * audited) on the operator scope.
 */
export function registerDeadLetterRoutes(operator: TypedScope, { windfall, logger }: DeadLetterRouteDeps): void {
  operator.get('/v1/dead-letters', { schema: { querystring: deadLetterQuery } }, async (request) => {
    const query = request.query;
    return windfall.deadLetters.list({
      ...(query.reason ? { reason: query.reason } : {}),
      ...(query.batchId ? { batchId: query.batchId } : {}),
      ...(query.after !== undefined ? { after: query.after } : {}),
      state: query.state,
      limit: query.limit,
      rewards: query.rewards,
    });
  });

  operator.get(
    '/v1/dead-letters/:id',
    { schema: { params: deadLetterIdParams, querystring: deadLetterShowQuery } },
    async (request, reply) => {
      const { id } = request.params;
      const { rewards } = request.query;
      const entry = await windfall.deadLetters.get(id, { rewards });
      if (!entry) return fail(reply, 404, 'not found', `no dead-letter entry has id ${id}`);
      return entry;
    },
  );

  operator.post('/v1/dead-letters/replay', { schema: { body: replayRequestSchema } }, async (request) => {
    const body = request.body ?? {};
    const filter = selectionFilter(body, { required: true });
    const actor = actorOf(request);
    const report = await windfall.deadLetters.replay(filter, { dryRun: body.dryRun ?? false, actor });
    logger.info(
      { replayed: report.replayedCount, skipped: report.skippedCount, dryRun: report.dryRun, by: actor },
      'dead-letter replay requested',
    );
    return report;
  });
}
