import type { FastifyInstance, FastifyRequest } from 'fastify';
import type pg from 'pg';
import { httpActor } from '../audit/audit-trail.js';
import { UserLocks } from '../lock/user-locks.js';
import type { Logger } from '../log/logger.js';
import type { Windfall } from '../runtime/windfall.js';
import type { TokenGuard } from './auth.js';
import { registerConsoleActions } from './console-actions.js';
import { registerConsolePages } from './console-pages.js';
import { browserAdminGuard } from './dashboard.js';

export { CONSOLE_CONTENT_SECURITY_POLICY, CONSOLE_MARKER } from './console-assets.js';
export { CONSOLE_PATH } from './console-html.js';

/** Options of {@link registerConsole}. */
export interface ConsoleOptions {
  readonly windfall: Windfall;
  readonly guard: TokenGuard;
  readonly logger: Logger;
}

/** What the console's pages and actions use, made once by {@link registerConsole}. */
export interface ConsoleContext {
  readonly windfall: Windfall;
  /** `windfall.database.pool`. */
  readonly pool: pg.Pool;
  /** The users' locks, read by the locks page and the lock release preview. */
  readonly locks: UserLocks;
  /** {@link ConsoleOptions.logger}: the logger of cancels and reverts. */
  readonly logger: Logger;
  /** Who acts, for the audit trail: `console`, the client's address and its `x-windfall-actor` header. */
  readonly actorOf: (request: FastifyRequest) => string;
}

/**
 * The operator console at {@link CONSOLE_PATH}: server-rendered pages (batches, rewards, dead letters, locks, the audit
 * trail; lists paged and searchable)
 * behind the admin token (bearer, or basic auth with the token as password), and JSON actions that need the
 * console's request marker ({@link CONSOLE_MARKER}). Served entirely by the package: no CDN, no network fetch.
 */
export async function registerConsole(app: FastifyInstance, options: ConsoleOptions): Promise<void> {
  const { windfall, guard } = options;
  const pool = windfall.database.pool;
  const locks = new UserLocks(windfall.redis, { prefix: windfall.config.prefix, logger: windfall.logger });
  const actorOf = (request: FastifyRequest): string =>
    httpActor('console', request.ip, request.headers['x-windfall-actor']);

  await app.register(async (scope) => {
    scope.addHook('onRequest', browserAdminGuard(guard));
    const context: ConsoleContext = { windfall, pool, locks, logger: options.logger, actorOf };
    registerConsolePages(scope, context);
    registerConsoleActions(scope, context);
  });
}
