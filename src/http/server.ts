import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { httpAnswer } from '../errors/error-answers.js';
import { ERROR_TABLE } from '../errors/error-table.js';
import { isDatabaseUnavailable } from '../db/pg-errors.js';
import { INTERNAL_ERROR } from '../errors/error-table.js';
import type { Logger } from '../log/logger.js';
import type { WindfallMetrics } from '../metrics/metrics.js';
import type { TrustProxy } from '../config/env-values.js';
import { JsonSyntaxError, parseRawJson } from '../rewards/raw-json.js';
import { NDJSON_MEDIA_TYPE } from './routes/streamed-batch.js';
import type { Windfall } from '../runtime/windfall.js';
import type { Principal } from './auth.js';
import { checkServerTokens, TokenGuard } from './auth.js';
import { registerDashboard } from './dashboard.js';
import { registerConsole } from './console.js';
import { openApiDocument } from './openapi.js';
import { fail } from './routes/route-support.js';
import { registerAuditRoutes } from './routes/audit.js';
import { registerBatchOperatorRoutes, registerBatchRoutes } from './routes/batches.js';
import { registerCampaignRoutes } from './routes/campaigns.js';
import { registerDeadLetterRoutes } from './routes/dead-letters.js';
import { registerEventRoutes } from './routes/events.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerLockRoutes } from './routes/locks.js';
import { registerMetricsRoutes } from './routes/metrics.js';
import { registerRewardRoutes } from './routes/rewards.js';
import { registerWalletRoutes } from './routes/wallets.js';

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

/** Route pattern of a request for metric labels (never the raw URL: uids would explode the label set). */
function routeLabel(request: FastifyRequest): string {
  const pattern = request.routeOptions.url;
  if (!pattern) return 'unmatched';
  return pattern.startsWith('/admin/queues') ? '/admin/queues' : pattern;
}

/**
 * Builds (does not start) the HTTP server of `windfall serve` over an open Windfall: the producer and operator
 * API under /v1 (one file per resource in `routes/`), the Bull Board dashboard, /metrics, /healthz, /readyz and
 * /openapi.json.
 * An error a route throws is answered by the error table (src/errors/error-table.ts, docs/errors.md).
 * @throws `HttpConfigError` (see {@link checkServerTokens}) without an API token, or when the admin token equals it.
 */
export async function buildHttpServer(windfall: Windfall, options: HttpServerOptions): Promise<FastifyInstance> {
  checkServerTokens(options.apiToken, options.adminToken);
  const logger = options.logger ?? windfall.logger;
  const guard = new TokenGuard({ apiToken: options.apiToken, adminToken: options.adminToken });
  const readyTimeoutMs = options.readyTimeoutMs ?? 2000;
  const openApi = openApiDocument();
  const streamLimit = options.streamLimit ?? windfall.config.httpStreamLimit;
  const bodyLimit = options.bodyLimit ?? windfall.config.httpBodyLimit;

  const app = Fastify({
    // (the assertion picks fastify's logger type for the instance: without it the instance's type does not fit
    // the plugins registered below)
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: logger as FastifyBaseLogger,
    // fastify's per-request lines are off; an access log line per response is written below, without headers
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    // an id (batchId, rewardId, uid) is up to 128 code points: percent-encoded, up to 1,536 characters of a path
    // (the router's default, 100, answered a valid 101-character id with 414 in fastify's own error format)
    routerOptions: { maxParamLength: 2048 },
    // off by default: the socket's peer is the client, and an X-Forwarded-For header anyone can send is ignored
    trustProxy: fastifyTrustProxy(options.trustProxy ?? windfall.config.trustProxy),
    // unknown fields are refused, not silently dropped; every problem is reported
    ajv: { customOptions: { removeAdditional: false, allErrors: true, coerceTypes: 'array', useDefaults: true } },
  });

  addAccessLog(app, windfall.metrics, logger);

  app.setErrorHandler((error: FastifyError, request, reply) => answerError(error, request, reply, bodyLimit));

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
  registerHealthRoutes(app, { windfall, logger, readyTimeoutMs });
  registerMetricsRoutes(app, { windfall, logger, readyTimeoutMs, metricsRefreshMs: options.metricsRefreshMs });

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

    registerBatchRoutes(producer, { windfall, logger, streamLimit });
    registerRewardRoutes(producer, { windfall });
  });

  // ---- operator routes (admin token)
  await app.register(async (scope) => {
    const operator = scope.withTypeProvider<JsonSchemaToTsProvider>();
    operator.addHook('onRequest', needs('admin'));

    registerWalletRoutes(operator, { windfall });
    registerLockRoutes(operator, { windfall, logger });
    registerBatchOperatorRoutes(operator, { windfall, logger });
    registerCampaignRoutes(operator, { windfall });
    registerAuditRoutes(operator, { windfall });
    registerEventRoutes(operator, { windfall });
    registerDeadLetterRoutes(operator, { windfall, logger });
  });

  await registerDashboard(app, windfall.queues, guard);
  await registerConsole(app, { windfall, guard, logger });
  return app;
}

/**
 * Counts and times every response in the metrics (by route pattern, {@link routeLabel}) and writes an access log line
 * for it, without headers: at info for the API under /v1, at debug for the rest.
 */
function addAccessLog(app: FastifyInstance, metrics: WindfallMetrics, logger: Logger): void {
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
}

/**
 * The answer to an error a route or fastify threw: the error table's (src/errors/error-table.ts) for Windfall's
 * errors; 400 for a request its schema refuses (every problem listed), 413 past `bodyLimit` bytes, fastify's other
 * 4xx as they are; 503 with `Retry-After` while PostgreSQL does not answer; else 500, logged.
 */
function answerError(
  error: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
  bodyLimit: number,
): FastifyReply {
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
      const reason = params.additionalProperty ? 'is not a known field' : `${issue.message ?? 'is invalid'}${allowed}`;
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
      `the body is larger than ${bodyLimit} bytes (WINDFALL_HTTP_BODY_LIMIT); split the batch, or use \`windfall enqueue --file\``,
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
}

/** The setting as fastify takes it (a list of addresses is a mutable array there). */
function fastifyTrustProxy(trustProxy: TrustProxy): boolean | string[] {
  return typeof trustProxy === 'boolean' ? trustProxy : [...trustProxy];
}
