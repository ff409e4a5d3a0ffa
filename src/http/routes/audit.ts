import type { Windfall } from '../../runtime/windfall.js';
import { listAudit } from '../../audit/audit-trail.js';
import type { TypedScope } from './route-support.js';
import { auditQuery } from './schemas.js';

/** What the audit route uses. */
export interface AuditRouteDeps {
  readonly windfall: Windfall;
}

/** Registers `GET /v1/audit` (the audit trail, newest first, by action and target) on the operator scope. */
export function registerAuditRoutes(operator: TypedScope, { windfall }: AuditRouteDeps): void {
  operator.get('/v1/audit', { schema: { querystring: auditQuery } }, async (request) => {
    const query = request.query;
    return listAudit(windfall.database.pool, {
      ...(query.action !== undefined ? { action: query.action } : {}),
      ...(query.target !== undefined ? { target: query.target } : {}),
      limit: query.limit,
    });
  });
}
