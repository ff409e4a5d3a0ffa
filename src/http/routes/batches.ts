import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { BatchValidationError } from '../../rewards/batch-errors.js';
import { WindfallError } from '../../errors/windfall-error.js';
import { getBatchReport } from '../../status/batch-status.js';
import type { Logger } from '../../log/logger.js';
import { JsonNumber } from '../../money/amount.js';
import type { RawJsonValue } from '../../rewards/raw-json.js';
import { FileEncodingError } from '../../rewards/line-reader.js';
import { readJsonLines } from '../../rewards/reward-sources.js';
import type { RowError } from '../../rewards/reward.js';
import type { Windfall } from '../../runtime/windfall.js';
import { RewardProducer, type EnqueueOptions, type EnqueueResult } from '../../producer/reward-producer.js';
import { Semaphore } from '../../concurrency/semaphore.js';
import { revertBatch } from '../../revert/batch-revert.js';
import { cancelBatch } from '../../cancel/batch-cancel.js';
import { dropRestAfterAnswer, StreamLimitError, streamedBatchOptions, withinByteLimit } from './streamed-batch.js';
import { actorOf, fail, type TypedScope } from './route-support.js';
import { batchIdParams, cancelRequestSchema, revertRequestSchema } from './schemas.js';

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

/** What the batch routes use. */
export interface BatchRouteDeps {
  readonly windfall: Windfall;
  readonly logger: Logger;
  /** Largest streamed batch body (`application/x-ndjson`) in bytes (413 above). */
  readonly streamLimit: number;
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

/**
 * The answer to an enqueue, as both forms give it: 202; why not (400, 409; 503 when Redis did not take the
 * recorded batch's jobs in time: posting the batch again finishes the hand-over) is the error table's.
 */
async function answerEnqueue(reply: FastifyReply, enqueue: () => Promise<EnqueueResult>): Promise<FastifyReply> {
  const result = await enqueue();
  return reply.code(202).send({ batchId: result.batchId, total: result.total, created: result.created });
}

/** What a streamed batch is staged with: its own producer, the turns streamed batches take, the byte limit. */
interface StreamedBatches {
  readonly producer: RewardProducer;
  readonly turns: Semaphore;
  readonly limit: number;
  readonly logger: Logger;
}

/**
 * `POST /v1/batches` with a JSON Lines body: staged as `windfall enqueue` stages a `.jsonl` file (the same reader,
 * validation, limits and bounded error report), one chunk of the body at a time, in the one transaction that
 * records the batch only when every row is valid. An answer given before the body's end (the batch over
 * WINDFALL_MAX_BATCH_ROWS or the byte limit, a bad query) is followed by {@link dropRestAfterAnswer}.
 */
async function enqueueStreamed(
  streamed: StreamedBatches,
  request: FastifyRequest<BatchPost>,
  reply: FastifyReply,
  body: Readable,
): Promise<FastifyReply> {
  dropRestAfterAnswer(request.raw, reply.raw);
  const limit = streamed.limit;
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
      streamed.turns.run(() => streamed.producer.enqueue(readJsonLines(withinByteLimit(body, limit)), enqueueOptions)),
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
      streamed.logger.info({ reqId: request.id }, 'a streamed batch was cut off before its end: nothing was recorded');
      return fail(reply, 400, 'bad request', 'the body was cut off before its end: nothing was recorded');
    }
    throw error;
  }
}

/**
 * Registers `POST /v1/batches` (a JSON body, or a JSON Lines stream staged as it arrives, at most two at once per
 * process; 202) and `GET /v1/batches/:id` (the batch's report; 404 for an unknown id) on the producer scope, whose
 * content-type parsers hand this route a raw JSON value or the request's stream.
 */
export function registerBatchRoutes(producer: TypedScope, { windfall, logger, streamLimit }: BatchRouteDeps): void {
  const streamed: StreamedBatches = {
    producer: new RewardProducer({
      pool: windfall.database.pool,
      queues: windfall.queues,
      chunkSize: windfall.config.chunkSize,
      maxBatchRows: windfall.config.maxBatchRows,
      handOverTimeoutMs: windfall.config.handOverTimeoutMs,
      plannedBytes: STREAM_PLANNED_BYTES,
      logger,
    }),
    turns: new Semaphore(STREAMED_BATCHES_AT_ONCE),
    limit: streamLimit,
    logger,
  };

  producer.post<BatchPost>('/v1/batches', async (request, reply) => {
    if (request.body instanceof Readable) return enqueueStreamed(streamed, request, reply, request.body);
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
}

/**
 * Registers `POST /v1/batches/:id/revert` (the batch's credits debited back, or with `dryRun` only reported; audited)
 * and `POST /v1/batches/:id/cancel` (the batch stopped in flight; audited) on the operator scope.
 */
export function registerBatchOperatorRoutes(
  operator: TypedScope,
  { windfall, logger }: Omit<BatchRouteDeps, 'streamLimit'>,
): void {
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
}
