import { Readable } from 'node:stream';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { BatchValidationError } from '../rewards/batch-errors.js';
import { httpAnswer } from '../errors/error-answers.js';
import { ERROR_TABLE } from '../errors/error-table.js';
import { isDatabaseUnavailable } from '../db/pg-errors.js';
import { INTERNAL_ERROR } from '../errors/error-table.js';
import { WindfallError } from '../errors/windfall-error.js';
import { getBatchReport } from '../status/batch-status.js';
import { getRewardReport, unknownRewardMessage } from '../status/reward-status.js';
import { selectionFilter } from '../dead-letters/dead-letter-selection.js';
import type { Logger } from '../log/logger.js';
import type { TrustProxy } from '../config/env-values.js';
import { UserLocks } from '../lock/user-locks.js';
import { JsonNumber } from '../money/amount.js';
import { sampleQueueDepths } from '../queue/queue-stats.js';
import { JsonSyntaxError, parseRawJson, type RawJsonValue } from '../rewards/raw-json.js';
import { FileEncodingError } from '../rewards/line-reader.js';
import { readJsonLines } from '../rewards/reward-sources.js';
import {
  dropRestAfterAnswer,
  NDJSON_MEDIA_TYPE,
  StreamLimitError,
  streamedBatchOptions,
  withinByteLimit,
} from './streamed-batch.js';
import type { RowError } from '../rewards/reward.js';
import type { Windfall } from '../runtime/windfall.js';
import { readBalance, readLedger } from '../wallet/wallet-service.js';
import { httpActor, listAudit } from '../audit/audit-trail.js';
import { getCampaignReport, setCampaignBudget } from '../campaign/campaign-budget.js';
import { RewardProducer, type EnqueueOptions, type EnqueueResult } from '../producer/reward-producer.js';
import { Semaphore } from '../concurrency/semaphore.js';
import { listEvents } from '../events/event-store.js';
import { revertBatch } from '../revert/batch-revert.js';
import { cancelBatch } from '../cancel/batch-cancel.js';
import type { Principal } from './auth.js';
import { checkServerTokens, TokenGuard } from './auth.js';
import { registerDashboard } from './dashboard.js';
import { registerConsole } from './console.js';
import { openApiDocument } from './openapi.js';
import { withTimeout } from '../concurrency/with-timeout.js';
import { ThrottledRefresh } from '../metrics/throttled-refresh.js';
import { ReadinessChecks } from './readiness.js';
import {
  auditQuery,
  eventsQuery,
  revertRequestSchema,
  cancelRequestSchema,
  campaignBudgetSchema,
  campaignIdParams,
  batchIdParams,
  rewardIdParams,
  deadLetterIdParams,
  deadLetterQuery,
  deadLetterShowQuery,
  replayRequestSchema,
  uidParams,
  walletQuery,
} from './schemas.js';

/**
 * Streamed batches share `serve`'s process with every other request. Their chunk plan is kept in memory only up to
 * this many bytes (estimated; about 80,000 users of 20-character uids); a batch with more users is planned by
 * PostgreSQL from its staged rows. With the CLI's 32 MiB, 2,000,000 rewards of 250,000 users made the process peak at
 * 323 MB (the plan held to the end, the heap grown for it); with 8 MiB, 242 MB (both before the COPY buffers were
 * reused; since, 188–195 MB for 500,000 users). The set that spots repeated rewardIds is held to the same budget
 * (it took 32 MiB of tables for 2,000,000 rewards, 48 MiB while it grew: the peak went from 248 to 214 MB).
 */
const STREAM_PLANNED_BYTES = 8 * 1024 * 1024;

/** Streamed batches staged at once by one `serve` process; later ones wait for a turn, their bodies not read yet. */
const STREAMED_BATCHES_AT_ONCE = 2;

/** Options of {@link buildHttpServer}. */
export interface HttpServerOptions {
  /** Opens producer routes. Required. */
  readonly apiToken: string;
  /** Opens operator routes and the dashboard; without it they answer 401. */
  readonly adminToken?: string | undefined;
  /** Largest request body in bytes (413 above). Default: the configuration's `httpBodyLimit` (10 MiB). */
  readonly bodyLimit?: number;
  /**
   * Largest streamed batch body (`application/x-ndjson`) in bytes (413 above). Default: the configuration's
   * `httpStreamLimit` (4 GiB).
   */
  readonly streamLimit?: number;
  /** Longest wait of a readiness check per service. Default 2000 ms. */
  readonly readyTimeoutMs?: number;
  /** Default: the Windfall's logger. */
  readonly logger?: Logger;
  /**
   * Proxies whose `X-Forwarded-For` gives the client address (`request.ip`, the audit actor's `@<address>`).
   * Default: the configuration's `trustProxy` (`WINDFALL_TRUST_PROXY`; none).
   */
  readonly trustProxy?: TrustProxy;
  /**
   * Shortest time between two reads of the figures `/metrics` takes from Redis (queue depths) and PostgreSQL (open
   * dead letters); scrapes in between answer the last figures. Default `METRICS_REFRESH_MS` (5000).
   */
  readonly metricsRefreshMs?: number;
}

/** An error answer: `{error, message, errors?}`. */
function fail(
  reply: FastifyReply,
  status: number,
  error: string,
  message: string,
  errors?: readonly unknown[],
): FastifyReply {
  return reply.code(status).send({ error, message, ...(errors ? { errors } : {}) });
}

/** Type name of a raw JSON value, for messages. */
function kindOf(value: RawJsonValue | undefined): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (value instanceof JsonNumber) return 'number';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** The fields of a batch besides its rewards. */
const BATCH_FIELDS = ['batchId', 'campaignId', 'priority', 'rewards'];

/**
 * POST /v1/batches (no JSON schema: the producer checks the rows): a JSON body parsed keeping number text, a JSON
 * Lines stream (the raw request, read by its route), or nothing; the query of a streamed one.
 */
interface BatchPost {
  Body: RawJsonValue | Readable | undefined;
  Querystring: Readonly<Record<string, unknown>>;
}

/** A batch's rewards and its fields besides them, read from the JSON body of POST /v1/batches. */
interface BatchEnvelope {
  readonly rewards: readonly RawJsonValue[];
  readonly options: EnqueueOptions;
}

/**
 * Reads the envelope `{batchId?, campaignId?, priority?, rewards[]}` of POST /v1/batches, or says what is wrong with
 * it (every problem); the rows are checked by the producer.
 */
function readBatchEnvelope(body: RawJsonValue | undefined): BatchEnvelope | RowError[] {
  if (body === null || typeof body !== 'object' || Array.isArray(body) || body instanceof JsonNumber) {
    return [
      {
        row: 0,
        field: 'body',
        code: 'not_object',
        reason: `must be a JSON object {batchId?, campaignId?, priority?, rewards: [...]}, got ${kindOf(body)}`,
      },
    ];
  }
  const errors: RowError[] = [];
  for (const key of Object.keys(body)) {
    if (!BATCH_FIELDS.includes(key))
      errors.push({
        row: 0,
        field: key.length > 64 ? `${key.slice(0, 64)}…` : key,
        code: 'unknown_field',
        reason: `is not a batch field (expected ${BATCH_FIELDS.join(', ')})`,
      });
  }
  const rewards = body['rewards'];
  if (rewards === undefined) errors.push({ row: 0, field: 'rewards', code: 'missing', reason: 'is missing' });
  else if (!Array.isArray(rewards))
    errors.push({
      row: 0,
      field: 'rewards',
      code: 'not_array',
      reason: `must be an array of rewards, got ${kindOf(rewards)}`,
    });
  else if (rewards.length === 0)
    errors.push({ row: 0, field: 'rewards', code: 'empty', reason: 'is empty: a batch needs at least one reward' });
  const options: { -readonly [field in keyof EnqueueOptions]: string } = {};
  for (const field of ['batchId', 'campaignId', 'priority'] as const) {
    const value = body[field];
    if (typeof value === 'string') options[field] = value;
    else if (value !== undefined)
      errors.push({ row: 0, field, code: 'not_string', reason: `must be a string, got ${kindOf(value)}` });
  }
  return errors.length > 0 || !Array.isArray(rewards) ? errors : { rewards, options };
}

/** Route pattern of a request for metric labels (never the raw URL: uids would explode the label set). */
function routeLabel(request: FastifyRequest): string {
  const pattern = request.routeOptions.url;
  if (!pattern) return 'unmatched';
  return pattern.startsWith('/admin/queues') ? '/admin/queues' : pattern;
}

/**
 * Builds (does not start) the HTTP server of `windfall serve` over an open Windfall: the producer and operator
 * API under /v1, the Bull Board dashboard, /metrics, /healthz, /readyz and /openapi.json.
 * An error a route throws is answered by the error table (src/errors/error-table.ts, docs/errors.md).
 * @throws `HttpConfigError` (see {@link checkServerTokens}) without an API token, or when the admin token equals it.
 */
export async function buildHttpServer(windfall: Windfall, options: HttpServerOptions): Promise<FastifyInstance> {
  checkServerTokens(options.apiToken, options.adminToken);
  const logger = options.logger ?? windfall.logger;
  const guard = new TokenGuard({ apiToken: options.apiToken, adminToken: options.adminToken });
  const readyTimeoutMs = options.readyTimeoutMs ?? 2000;
  const locks = new UserLocks(windfall.redis, { prefix: windfall.config.prefix, logger });
  const metrics = windfall.metrics;
  const openApi = openApiDocument();
  const streamLimit = options.streamLimit ?? windfall.config.httpStreamLimit;
  const streamProducer = new RewardProducer({
    pool: windfall.database.pool,
    queues: windfall.queues,
    chunkSize: windfall.config.chunkSize,
    maxBatchRows: windfall.config.maxBatchRows,
    handOverTimeoutMs: windfall.config.handOverTimeoutMs,
    plannedBytes: STREAM_PLANNED_BYTES,
    logger,
  });
  const streamTurns = new Semaphore(STREAMED_BATCHES_AT_ONCE);

  const app = Fastify({
    // (the assertion picks fastify's logger type for the instance: without it the instance's type does not fit
    // the plugins registered below)
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: logger as FastifyBaseLogger,
    // fastify's per-request lines are off; an access log line per response is written below, without headers
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimit ?? windfall.config.httpBodyLimit,
    // an id (batchId, rewardId, uid) is up to 128 code points: percent-encoded, up to 1,536 characters of a path
    // (the router's default, 100, answered a valid 101-character id with 414 in fastify's own error format)
    routerOptions: { maxParamLength: 2048 },
    // off by default: the socket's peer is the client, and an X-Forwarded-For header anyone can send is ignored
    trustProxy: fastifyTrustProxy(options.trustProxy ?? windfall.config.trustProxy),
    // unknown fields are refused, not silently dropped; every problem is reported
    ajv: { customOptions: { removeAdditional: false, allErrors: true, coerceTypes: 'array', useDefaults: true } },
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = routeLabel(request);
    const seconds = reply.elapsedTime / 1000;
    metrics.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) });
    metrics.httpDuration.observe({ method: request.method, route }, seconds);
    const line = {
      method: request.method,
      route,
      url: request.url.split('?')[0],
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime),
      reqId: request.id,
    };
    if (route.startsWith('/v1/')) logger.info(line, 'http request');
    else logger.debug(line, 'http request');
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const answer = httpAnswer(error);
    if (answer) return reply.code(answer.status).send(answer.body);
    if (error.validation) {
      const errors = error.validation.map((issue) => {
        const where = (issue.instancePath || '').replace(/^\//, '').replace(/\//g, '.');
        const params = (issue.params ?? {}) as {
          missingProperty?: string;
          additionalProperty?: string;
          allowedValues?: unknown[];
        };
        const field =
          params.missingProperty ?? params.additionalProperty ?? (where || error.validationContext || 'request');
        const allowed = params.allowedValues ? ` (${params.allowedValues.join(', ')})` : '';
        const reason = params.additionalProperty
          ? 'is not a known field'
          : `${issue.message ?? 'is invalid'}${allowed}`;
        return { row: 0, field: String(field), reason };
      });
      return fail(
        reply,
        400,
        'invalid request',
        `${error.validationContext ?? 'request'}: ${errors.map((e) => `${e.field} ${e.reason}`).join('; ')}`,
        errors,
      );
    }
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || error.statusCode === 413) {
      return fail(
        reply,
        413,
        'payload too large',
        `the body is larger than ${options.bodyLimit ?? windfall.config.httpBodyLimit} bytes (WINDFALL_HTTP_BODY_LIMIT); split the batch, or use \`windfall enqueue --file\``,
      );
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      const kind =
        error.code === 'WINDFALL_INVALID_JSON' ||
        error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
        error instanceof SyntaxError
          ? 'invalid JSON'
          : error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
            ? 'unsupported media type'
            : 'bad request';
      return fail(reply, error.statusCode, kind, error.message);
    }
    if (isDatabaseUnavailable(error)) {
      // a restart or a failover of PostgreSQL (or of the pooler before it): the same request will succeed soon
      request.log.warn({ route: routeLabel(request), reason: error.message }, 'PostgreSQL did not answer a request');
      reply.header('retry-after', '5');
      return fail(
        reply,
        ERROR_TABLE.SERVICE_UNAVAILABLE.status,
        ERROR_TABLE.SERVICE_UNAVAILABLE.http,
        'PostgreSQL does not answer (a restart or a failover?): try the request again in a few seconds',
      );
    }
    request.log.error({ err: error, route: routeLabel(request) }, 'request failed');
    return fail(reply, 500, INTERNAL_ERROR.error, INTERNAL_ERROR.message);
  });

  app.setNotFoundHandler((request, reply) =>
    fail(reply, 404, 'not found', `no route ${request.method} ${request.url.split('?')[0]} (see GET /openapi.json)`),
  );

  const needs = (principal: Principal) => async (request: FastifyRequest, reply: FastifyReply) => {
    const decision = guard.check(request.headers.authorization, principal);
    if (decision.ok) return;
    if (decision.status === 401) reply.header('www-authenticate', `Bearer realm="windfall"`);
    return fail(reply, decision.status, decision.status === 401 ? 'unauthorized' : 'forbidden', decision.message);
  };

  // ---- no auth: liveness, readiness, metrics, the OpenAPI document
  app.get('/healthz', async () => ({ status: 'ok' }));

  // the answer names the failing service only; the driver's error (hosts, user names) is logged once per change
  const readiness = new ReadinessChecks(windfall, logger, readyTimeoutMs);
  app.addHook('onClose', async () => readiness.close());
  app.get('/readyz', async (_request, reply) => {
    const { ready, checks } = await readiness.check();
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', checks });
  });

  // /metrics needs no token: what it reads from Redis and PostgreSQL is refreshed at most every metricsRefreshMs
  // (default 5 s) at a cost that does not grow with the queues, however often and by whom it is scraped
  const queueFigures = new ThrottledRefresh(
    () =>
      sampleQueueDepths(windfall.queues, metrics).catch((error: unknown) =>
        logger.debug({ err: error }, 'could not sample queue depths'),
      ),
    options.metricsRefreshMs,
  );
  const deadLetterFigures = new ThrottledRefresh(
    () =>
      windfall.deadLetters.openCounts().then(
        (counts) => {
          for (const [reason, count] of Object.entries(counts)) {
            metrics.deadLettersOpen.set({ reason }, count.entries);
            metrics.deadLetterRewardsOpen.set({ reason }, count.rewards);
          }
        },
        (error: unknown) => logger.debug({ err: error }, 'could not count open dead letters'),
      ),
    options.metricsRefreshMs,
  );
  app.get('/metrics', async (_request, reply) => {
    // a refresh that outlasts the timeout goes on, and the next scrape waits for it rather than starting another
    await Promise.all([
      withTimeout(queueFigures.run(), readyTimeoutMs).catch(() => undefined),
      withTimeout(deadLetterFigures.run(), readyTimeoutMs).catch(() => undefined),
    ]);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  app.get('/openapi.json', async () => openApi);

  // ---- producer routes (API token)
  await app.register(async (scope) => {
    // here and in the operator scope, handlers see params, query and body as their route's JSON schema types them
    // (with the defaults it fills in): no assertion of what a request holds
    const producer = scope.withTypeProvider<JsonSchemaToTsProvider>();
    // JSON bodies keep number text, so that `100.0` and `1e2` can be refused as amounts (JSON.parse would read 100)
    // only JSON is accepted here (fastify's text/plain parser is removed too): anything else gets 415
    producer.removeAllContentTypeParsers();
    producer.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
      try {
        done(null, parseRawJson(body as string));
      } catch (error) {
        const problem = error instanceof JsonSyntaxError ? error.message : 'unreadable body';
        done(
          Object.assign(new Error(`the body is not valid JSON: ${problem}`), {
            statusCode: 400,
            code: 'WINDFALL_INVALID_JSON',
          }),
          undefined,
        );
      }
    });
    producer.addHook('onRequest', needs('api'));

    // a streamed batch (JSON Lines) is not read here: its route stages it as it arrives, with a byte limit of its own
    // (the JSON body limit does not apply to it)
    producer.addContentTypeParser(NDJSON_MEDIA_TYPE, (_request, payload, done) => done(null, payload));

    /**
     * The answer to an enqueue, as both forms give it: 202; why not (400, 409; 503 when Redis did not take the
     * recorded batch's jobs in time: posting the batch again finishes the hand-over) is the error table's.
     */
    const answerEnqueue = async (reply: FastifyReply, enqueue: () => Promise<EnqueueResult>): Promise<FastifyReply> => {
      const result = await enqueue();
      return reply.code(202).send({ batchId: result.batchId, total: result.total, created: result.created });
    };

    /**
     * `POST /v1/batches` with a JSON Lines body: staged as `windfall enqueue` stages a `.jsonl` file (the same reader,
     * validation, limits and bounded error report), one chunk of the body at a time, in the one transaction that
     * records the batch only when every row is valid. An answer given before the body's end (the batch over
     * WINDFALL_MAX_BATCH_ROWS or the byte limit, a bad query) is followed by {@link dropRestAfterAnswer}.
     */
    const enqueueStreamed = async (
      request: FastifyRequest<BatchPost>,
      reply: FastifyReply,
      body: Readable,
    ): Promise<FastifyReply> => {
      dropRestAfterAnswer(request.raw, reply.raw);
      const limit = streamLimit;
      if (Number(request.headers['content-length']) > limit) throw new StreamLimitError(limit);
      const { options: enqueueOptions, errors } = streamedBatchOptions(request.query);
      if (errors.length > 0) {
        throw new BatchValidationError(
          errors,
          0,
          `batch refused: ${errors.map((e) => `${e.field} ${e.reason}`).join('; ')}`,
        );
      }
      try {
        return await answerEnqueue(reply, () =>
          streamTurns.run(() => streamProducer.enqueue(readJsonLines(withinByteLimit(body, limit)), enqueueOptions)),
        );
      } catch (error) {
        if (error instanceof FileEncodingError) {
          const problem: RowError = { row: 0, field: 'body', code: 'invalid_utf8', reason: error.message };
          throw new BatchValidationError([problem], 0, `batch refused: ${error.message}`);
        }
        // a refusal (an invalid or too large batch, a conflict, a budget) is answered even when the client is gone
        if (error instanceof WindfallError) throw error;
        if (!request.raw.complete && request.raw.destroyed) {
          // the client went away mid-body: the staging transaction was rolled back; nobody is left to answer
          logger.info({ reqId: request.id }, 'a streamed batch was cut off before its end: nothing was recorded');
          return fail(reply, 400, 'bad request', 'the body was cut off before its end: nothing was recorded');
        }
        throw error;
      }
    };

    producer.post<BatchPost>('/v1/batches', async (request, reply) => {
      if (request.body instanceof Readable) return enqueueStreamed(request, reply, request.body);
      const envelope = readBatchEnvelope(request.body);
      if (Array.isArray(envelope)) {
        throw new BatchValidationError(
          envelope,
          0,
          `batch refused: ${envelope.map((e) => `${e.field} ${e.reason}`).join('; ')}`,
        );
      }
      return answerEnqueue(reply, () => windfall.producer.enqueueRewards(envelope.rewards, envelope.options));
    });

    producer.get('/v1/batches/:id', { schema: { params: batchIdParams } }, async (request, reply) => {
      const { id } = request.params;
      const report = await getBatchReport(windfall.database.pool, id);
      if (!report) return fail(reply, 404, 'not found', `no batch has id ${JSON.stringify(id)}`);
      return report;
    });

    // as `windfall reward --json`
    producer.get('/v1/rewards/:rewardId', { schema: { params: rewardIdParams } }, async (request, reply) => {
      const { rewardId } = request.params;
      const report = await getRewardReport(windfall.database.pool, rewardId);
      if (!report) return fail(reply, 404, 'not found', await unknownRewardMessage(windfall.database.pool, rewardId));
      return report;
    });
  });

  // ---- operator routes (admin token)
  await app.register(async (scope) => {
    const operator = scope.withTypeProvider<JsonSchemaToTsProvider>();
    operator.addHook('onRequest', needs('admin'));

    operator.get('/v1/wallets/:uid', { schema: { params: uidParams, querystring: walletQuery } }, async (request) => {
      const { uid } = request.params;
      const { limit } = request.query;
      return {
        uid,
        balance: (await readBalance(windfall.database.pool, uid)).toString(),
        entries: await readLedger(windfall.database.pool, uid, limit),
      };
    });

    operator.get('/v1/locks/:uid', { schema: { params: uidParams } }, async (request) => {
      const { uid } = request.params;
      return locks.status(uid);
    });

    operator.delete('/v1/locks/:uid', { schema: { params: uidParams } }, async (request) => {
      const { uid } = request.params;
      const previous = await windfall.wallet.forceReleaseLock(uid, { actor: actorOf(request) });
      return { uid, released: previous.locked, previous };
    });

    operator.post(
      '/v1/batches/:id/revert',
      { schema: { params: batchIdParams, body: revertRequestSchema } },
      async (request) => {
        const { id } = request.params;
        const body = request.body ?? {};
        return revertBatch(
          {
            pool: windfall.database.pool,
            wallet: windfall.wallet,
            logger,
            deadLetters: windfall.deadLetters,
            events: windfall.events,
          },
          id,
          {
            dryRun: body.dryRun ?? false,
            actor: actorOf(request),
            ...(body.reason !== undefined ? { reason: body.reason } : {}),
          },
        );
      },
    );

    operator.post(
      '/v1/batches/:id/cancel',
      { schema: { params: batchIdParams, body: cancelRequestSchema } },
      async (request) => {
        const { id } = request.params;
        const body = request.body ?? {};
        return cancelBatch({ pool: windfall.database.pool, logger, events: windfall.events }, id, {
          actor: actorOf(request),
          ...(body.reason !== undefined ? { reason: body.reason } : {}),
        });
      },
    );

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

    operator.get('/v1/audit', { schema: { querystring: auditQuery } }, async (request) => {
      const query = request.query;
      return listAudit(windfall.database.pool, {
        ...(query.action !== undefined ? { action: query.action } : {}),
        ...(query.target !== undefined ? { target: query.target } : {}),
        limit: query.limit,
      });
    });

    operator.get('/v1/events', { schema: { querystring: eventsQuery } }, async (request) => {
      const query = request.query;
      return listEvents(windfall.database.pool, {
        ...(query.batchId !== undefined ? { batchId: query.batchId } : {}),
        ...(query.state !== undefined ? { state: query.state } : {}),
        limit: query.limit,
      });
    });

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
  });

  await registerDashboard(app, windfall.queues, guard);
  await registerConsole(app, { windfall, guard, logger });
  return app;
}

/** The setting as fastify takes it (a list of addresses is a mutable array there). */
function fastifyTrustProxy(trustProxy: TrustProxy): boolean | string[] {
  return typeof trustProxy === 'boolean' ? trustProxy : [...trustProxy];
}

/**
 * The audit trail's actor of an operator request (admin token): its address and `X-Windfall-Actor`. The address is
 * the socket's peer, or the client a trusted proxy forwarded for (`WINDFALL_TRUST_PROXY`).
 */
function actorOf(request: FastifyRequest): string {
  return httpActor('admin', request.ip, request.headers['x-windfall-actor']);
}
