import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { WindfallQueues } from '../queue/windfall-queues.js';
import type { TokenGuard } from './auth.js';

/**
 * An `onRequest` hook for pages a browser opens (the dashboard, the console): the admin token as bearer or basic-auth
 * password; a 401 carries a Basic challenge, so that browsers ask for it.
 */
export function browserAdminGuard(guard: TokenGuard) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const decision = guard.check(request.headers.authorization, 'admin');
    if (decision.ok) return undefined;
    if (decision.status === 401) reply.header('www-authenticate', 'Basic realm="windfall operator", charset="UTF-8"');
    return reply.code(decision.status).type('text/plain; charset=utf-8').send(`${decision.message}\n`);
  };
}

/** Where the dashboard lives. */
export const DASHBOARD_PATH = '/admin/queues';

/**
 * Bull Board at {@link DASHBOARD_PATH} over every shard queue and the dead-letter queue, behind the admin token
 * (bearer, or basic auth with the token as password so that a browser can log in).
 *
 * Read-only on purpose: removing or cleaning a shard job there would leave its rewards pending in PostgreSQL with no
 * job to run them, and the dead-letter queue is a mirror of the `dead_letters` table, which its buttons would not
 * touch. Replays and purges go through `windfall dlq` or `POST /v1/dead-letters/replay`, which keep both in step.
 */
export async function registerDashboard(
  app: FastifyInstance,
  queues: WindfallQueues,
  guard: TokenGuard,
): Promise<void> {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(DASHBOARD_PATH);
  createBullBoard({
    queues: queues.all().map(
      ({ name, queue }) =>
        new BullMQAdapter(queue, {
          readOnlyMode: true,
          displayName: name,
          description:
            name === 'dead-letter'
              ? 'Mirror of the dead_letters table: inspect here, replay with `windfall dlq replay` or POST /v1/dead-letters/replay'
              : 'Shard queue: one job per chunk of a batch (rewards stay in PostgreSQL), or a dead-letter replay',
        }),
    ),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Windfall queues' } },
  });

  await app.register(async (scope) => {
    scope.addHook('onRequest', browserAdminGuard(guard));
    await scope.register(serverAdapter.registerPlugin(), { prefix: DASHBOARD_PATH });
  });
}
