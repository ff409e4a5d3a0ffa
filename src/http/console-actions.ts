import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { revertBatch } from '../revert/batch-revert.js';
import { getBatchReport } from '../status/batch-status.js';
import { MAX_IDS_PER_REQUEST } from '../dead-letters/dead-letter-selection.js';
import { cancelWords, lockReleaseWords, purgeWords, replayWords, revertWords } from './console-words.js';
import { cancelBatch } from '../cancel/batch-cancel.js';
import { httpAnswer } from '../errors/error-answers.js';
import type { ConsoleContext } from './console.js';
import { CONSOLE_MARKER } from './console-assets.js';
import { CONSOLE_PATH } from './console-html.js';

/*
 * What the console's actions read from a request. They have no JSON schema (an action answers 400 with words for
 * people), so these are the route's types as fastify's generics declare them: the fields a handler looks at.
 */
/** The body of a replay or purge action. */
interface SelectionAction {
  ids?: unknown;
  dryRun?: unknown;
}
/** The body of a lock release action. */
interface LockReleaseAction {
  uid?: unknown;
  reason?: unknown;
  dryRun?: unknown;
}
/** The body of a cancel or revert action. */
interface BatchAction {
  batchId?: unknown;
  reason?: unknown;
  dryRun?: unknown;
}

/** Longest reason an action records (the audit trail's field); a longer one is cut. */
const MAX_REASON_LENGTH = 500;

/** The reason given with an action, trimmed and cut to {@link MAX_REASON_LENGTH}; undefined when none was given. */
function reasonOf(body: { reason?: unknown }): string | undefined {
  return typeof body.reason === 'string' && body.reason.trim() !== ''
    ? body.reason.trim().slice(0, MAX_REASON_LENGTH)
    : undefined;
}

/** Answers 400 naming `field` unless `value` is a non-empty string; true when it is one. */
function required(reply: FastifyReply, field: string, value: unknown): value is string {
  if (typeof value === 'string' && value !== '') return true;
  void reply.code(400).send({ error: 'invalid request', message: `${field} is required` });
  return false;
}

/**
 * A refused action as the console's script reads it: `{error, message}` with the error table's status and word; an
 * error the table does not answer is thrown on (a logged 500).
 */
function refusal(reply: FastifyReply, error: unknown): FastifyReply {
  const answer = httpAnswer(error);
  if (!answer) throw error;
  return reply.code(answer.status).send({ error: answer.body.error, message: answer.body.message });
}

/** An action's pre-handler: 403 without the console's request marker or from another site, 415 unless JSON. */
const guardAction = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
  const crossSite = request.headers['sec-fetch-site'] === 'cross-site';
  if (request.headers[CONSOLE_MARKER] !== '1' || crossSite) {
    return reply.code(403).send({
      error: 'forbidden',
      message: `console actions need the console's request marker (${CONSOLE_MARKER}) and a same-site request`,
    });
  }
  if (!String(request.headers['content-type'] ?? '').startsWith('application/json')) {
    return reply.code(415).send({ error: 'unsupported media type', message: 'console actions take application/json' });
  }
  return undefined;
};

/** The ids of a replay or purge: 1 to {@link MAX_IDS_PER_REQUEST} entry ids, or why not. */
const idsOf = (body: SelectionAction): string[] | string => {
  const ids: unknown = body.ids;
  if (!Array.isArray(ids) || ids.length === 0) return 'select at least one entry';
  if (ids.length > MAX_IDS_PER_REQUEST)
    return `at most ${MAX_IDS_PER_REQUEST} entries in one action, got ${ids.length}: select fewer`;
  const entryId = (id: unknown): id is string => typeof id === 'string' && /^[0-9]{1,18}$/.test(id);
  return ids.every(entryId) ? ids : 'entry ids are whole numbers';
};

/**
 * `POST /console/actions/<name>`: replay or purge dead-letter entries by id (a dry run unless `dryRun: false`),
 * answered with the report and its words.
 */
function selectionAction<Report>(
  scope: FastifyInstance,
  context: ConsoleContext,
  name: 'replay' | 'purge',
  run: (ids: string[], options: { dryRun: boolean; actor: string }) => Promise<Report>,
  words: (report: Report) => string,
): void {
  const { actorOf } = context;
  scope.post<{ Body: SelectionAction | undefined }>(
    `${CONSOLE_PATH}/actions/${name}`,
    { preHandler: guardAction },
    async (request, reply) => {
      const body: SelectionAction = request.body ?? {};
      const ids = idsOf(body);
      if (typeof ids === 'string') return reply.code(400).send({ error: 'invalid request', message: ids });
      const report = await run(ids, { dryRun: body.dryRun !== false, actor: actorOf(request) });
      return { ...report, message: words(report) };
    },
  );
}

/** `POST /console/actions/lock-release`: force-release a user's lock, with a reason (previewed first). */
function lockReleaseAction(scope: FastifyInstance, context: ConsoleContext): void {
  const { windfall, locks, actorOf } = context;
  scope.post<{ Body: LockReleaseAction | undefined }>(
    `${CONSOLE_PATH}/actions/lock-release`,
    { preHandler: guardAction },
    async (request, reply) => {
      const body: LockReleaseAction = request.body ?? {};
      if (!required(reply, 'uid', body.uid)) return reply;
      const reason = reasonOf(body) ?? null;
      if (body.dryRun !== false) {
        const preview = { dryRun: true as const, uid: body.uid, wouldRelease: await locks.status(body.uid) };
        return { ...preview, message: lockReleaseWords(preview) };
      }
      if (!reason)
        return reply
          .code(400)
          .send({ error: 'invalid request', message: 'say why the lock is force-released (reason)' });
      const previous = await windfall.wallet.forceReleaseLock(body.uid, { actor: actorOf(request), reason });
      const result = { uid: body.uid, released: previous.locked, previous };
      return { ...result, message: lockReleaseWords(result) };
    },
  );
}

/** `POST /console/actions/cancel`: cancel a batch in flight (previewed first). */
function cancelAction(scope: FastifyInstance, context: ConsoleContext): void {
  const { windfall, pool, logger, actorOf } = context;
  scope.post<{ Body: BatchAction | undefined }>(
    `${CONSOLE_PATH}/actions/cancel`,
    { preHandler: guardAction },
    async (request, reply) => {
      const body: BatchAction = request.body ?? {};
      if (!required(reply, 'batchId', body.batchId)) return reply;
      const reason = reasonOf(body);
      if (body.dryRun !== false) {
        const report = await getBatchReport(pool, body.batchId);
        if (!report)
          return reply
            .code(404)
            .send({ error: 'not found', message: `no batch has id ${JSON.stringify(body.batchId)}` });
        const preview = {
          dryRun: true as const,
          batchId: report.batchId,
          cancelled: report.status === 'cancelled' ? report.cancelled : report.pending,
          applied: report.applied,
          status: report.status,
          noop: report.pending === 0,
        };
        return { ...preview, message: cancelWords(preview, true) };
      }
      try {
        const report = await cancelBatch({ pool, logger, events: windfall.events }, body.batchId, {
          actor: actorOf(request),
          ...(reason !== undefined ? { reason } : {}),
        });
        return { ...report, message: cancelWords(report) };
      } catch (error) {
        return refusal(reply, error);
      }
    },
  );
}

/** `POST /console/actions/revert`: revert a batch (a dry run unless `dryRun: false`). */
function revertAction(scope: FastifyInstance, context: ConsoleContext): void {
  const { windfall, pool, logger, actorOf } = context;
  scope.post<{ Body: BatchAction | undefined }>(
    `${CONSOLE_PATH}/actions/revert`,
    { preHandler: guardAction },
    async (request, reply) => {
      const body: BatchAction = request.body ?? {};
      if (!required(reply, 'batchId', body.batchId)) return reply;
      const reason = reasonOf(body);
      try {
        const report = await revertBatch(
          {
            pool,
            wallet: windfall.wallet,
            logger,
            deadLetters: windfall.deadLetters,
            events: windfall.events,
          },
          body.batchId,
          {
            dryRun: body.dryRun !== false,
            actor: actorOf(request),
            ...(reason !== undefined ? { reason } : {}),
          },
        );
        return { ...report, message: revertWords(report) };
      } catch (error) {
        return refusal(reply, error);
      }
    },
  );
}

/**
 * The console's actions on `scope` (JSON, under {@link CONSOLE_PATH}/actions/, each behind the console's request
 * marker): replay, purge, lock-release, cancel, revert.
 */
export function registerConsoleActions(scope: FastifyInstance, context: ConsoleContext): void {
  const { deadLetters } = context.windfall;
  selectionAction(scope, context, 'replay', (ids, options) => deadLetters.replay({ ids }, options), replayWords);
  selectionAction(scope, context, 'purge', (ids, options) => deadLetters.purge({ ids }, options), purgeWords);
  lockReleaseAction(scope, context);
  cancelAction(scope, context);
  revertAction(scope, context);
}
