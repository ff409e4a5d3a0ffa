import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { EnqueueOptions } from '../../producer/reward-producer.js';
import type { RowError } from '../../rewards/reward.js';
import { WindfallError } from '../../errors/windfall-error.js';

/**
 * The media type of a streamed batch: `POST /v1/batches` with this body is JSON Lines of rewards (as a `.jsonl`
 * file), staged as it arrives, its batchId, campaignId and priority in the query string.
 */
export const NDJSON_MEDIA_TYPE = 'application/x-ndjson';

/** What the query string of a streamed batch may say (the JSON form's envelope, its rewards aside). */
const STREAM_QUERY_FIELDS = ['batchId', 'campaignId', 'priority'] as const;

/** A streamed body went past its byte limit (`WINDFALL_HTTP_STREAM_LIMIT`): nothing of it is recorded. */
export class StreamLimitError extends WindfallError {
  static override readonly code = 'PAYLOAD_TOO_LARGE';
  override readonly name = 'StreamLimitError';
  constructor(readonly limit: number) {
    super(
      `the streamed batch is larger than ${limit} bytes (WINDFALL_HTTP_STREAM_LIMIT): nothing was recorded; split it into smaller batches`,
    );
  }
}

/**
 * The chunks of a request body, failing with {@link StreamLimitError} once more than `limit` bytes have come. Reads
 * one chunk at a time as its consumer asks (the socket is paused meanwhile: memory does not grow with the body), and
 * leaves the stream open when its consumer stops early (a refused batch), so that the answer can still be sent.
 */
export async function* withinByteLimit(body: Readable, limit: number): AsyncGenerator<Uint8Array> {
  let received = 0;
  for await (const chunk of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Uint8Array | string>) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    received += bytes.byteLength;
    if (received > limit) throw new StreamLimitError(limit);
    yield bytes;
  }
}

/** A streamed batch's options from its query string, and the problems with it (row 0, as the JSON envelope's). */
export function streamedBatchOptions(query: Readonly<Record<string, unknown>>): {
  readonly options: EnqueueOptions;
  readonly errors: RowError[];
} {
  const errors: RowError[] = [];
  const options: Record<string, string> = {};
  for (const [key, value] of Object.entries(query)) {
    if (!(STREAM_QUERY_FIELDS as readonly string[]).includes(key)) {
      errors.push({
        row: 0,
        field: key.length > 64 ? `${key.slice(0, 64)}…` : key,
        code: 'unknown_field',
        reason: `is not a query parameter of a streamed batch (expected ${STREAM_QUERY_FIELDS.join(', ')})`,
      });
    } else if (typeof value !== 'string') {
      errors.push({ row: 0, field: key, code: 'not_string', reason: 'is given more than once' });
    } else {
      options[key] = value;
    }
  }
  return { options, errors };
}

/** How long the rest of a body answered before its end is read and dropped before the connection is closed. */
export const LINGER_MS = 5000;

/**
 * Once `answer` is sent, reads and drops whatever of `body` is still to come, and closes the connection if the body
 * has not ended within `lingerMs` (default {@link LINGER_MS}). A refusal is often answered before the body's end (a
 * batch over WINDFALL_MAX_BATCH_ROWS or the byte limit); a client still writing reads the answer only once it has
 * written, and closing the connection at once would reset it under the answer. Nothing read is kept.
 */
export function dropRestAfterAnswer(body: IncomingMessage, answer: ServerResponse, lingerMs = LINGER_MS): void {
  answer.once('finish', () => {
    if (body.readableEnded || body.destroyed) return;
    const timer = setTimeout(() => body.socket.destroy(), lingerMs);
    timer.unref();
    body.once('close', () => clearTimeout(timer));
    body.once('end', () => clearTimeout(timer));
    body.resume();
  });
}
