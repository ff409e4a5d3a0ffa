import type { Windfall } from '../../runtime/windfall.js';
import { listEvents } from '../../events/event-store.js';
import type { TypedScope } from './route-support.js';
import { eventsQuery } from './schemas.js';

/** What the events route uses. */
export interface EventRouteDeps {
  readonly windfall: Windfall;
}

/** Registers `GET /v1/events` (recorded batch events and their delivery, by batch and state) on the operator scope. */
export function registerEventRoutes(operator: TypedScope, { windfall }: EventRouteDeps): void {
  operator.get('/v1/events', { schema: { querystring: eventsQuery } }, async (request) => {
    const query = request.query;
    return listEvents(windfall.database.pool, {
      ...(query.batchId !== undefined ? { batchId: query.batchId } : {}),
      ...(query.state !== undefined ? { state: query.state } : {}),
      limit: query.limit,
    });
  });
}
