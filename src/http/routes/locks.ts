import type { Windfall } from '../../runtime/windfall.js';
import type { Logger } from '../../log/logger.js';
import { UserLocks } from '../../lock/user-locks.js';
import { actorOf, type TypedScope } from './route-support.js';
import { uidParams } from './schemas.js';

/** What the lock routes use. */
export interface LockRouteDeps {
  readonly windfall: Windfall;
  readonly logger: Logger;
}

/**
 * Registers `GET /v1/locks/:uid` (a user's lock as Redis holds it) and `DELETE /v1/locks/:uid` (released by force,
 * audited) on the operator scope.
 */
export function registerLockRoutes(operator: TypedScope, { windfall, logger }: LockRouteDeps): void {
  const locks = new UserLocks(windfall.redis, { prefix: windfall.config.prefix, logger });

  operator.get('/v1/locks/:uid', { schema: { params: uidParams } }, async (request) => {
    const { uid } = request.params;
    return locks.status(uid);
  });

  operator.delete('/v1/locks/:uid', { schema: { params: uidParams } }, async (request) => {
    const { uid } = request.params;
    const previous = await windfall.wallet.forceReleaseLock(uid, { actor: actorOf(request) });
    return { uid, released: previous.locked, previous };
  });
}
