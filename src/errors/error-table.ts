/** How one error code is answered by the CLI and by the HTTP API. */
export interface ErrorRule {
  /** Exit code of the `windfall` command (contract): 1 the operation failed, 2 bad usage or invalid input. */
  readonly exit: 1 | 2;
  /** The `error` word of the CLI's `--json` error document. */
  readonly cli: string;
  /**
   * HTTP status of the answer. 500: never answered as such — the server logs the error and answers
   * `{error: "internal error"}` without its message.
   */
  readonly status: 400 | 404 | 409 | 413 | 500 | 503;
  /** The `error` word of the HTTP answer's body. */
  readonly http: string;
  /** What the code means, and what to do (docs/errors.md). */
  readonly meaning: string;
}

/** The `error` word and message of an HTTP 500: the error itself is in the server log only. */
export const INTERNAL_ERROR = {
  error: 'internal error',
  message: 'the request failed; the server log has the details',
} as const;

/**
 * Every error code, and how the CLI and the HTTP API answer it: the one table both use (docs/errors.md is generated
 * from it by `npm run docs:errors`). A code is stable: scripts and clients may branch on it. Each class extending
 * `WindfallError` carries one of these codes; `test/unit/error-table.test.ts` holds the classes and the table to
 * each other.
 */
export const ERROR_TABLE = {
  BATCH_INVALID: {
    exit: 2,
    cli: 'invalid batch',
    status: 400,
    http: 'invalid batch',
    meaning:
      'a batch was refused whole: nothing was enqueued. The answer lists the invalid rows (row, field, reason; the first 1,000) and counts every error per field and reason',
  },
  BATCH_CONFLICT: {
    exit: 2,
    cli: 'batch conflict',
    status: 409,
    http: 'batch conflict',
    meaning: 'the batchId is known with other rewards: nothing of this input was recorded; use a new batchId',
  },
  BUDGET_EXCEEDED: {
    exit: 2,
    cli: 'budget exceeded',
    status: 409,
    http: 'budget exceeded',
    meaning:
      "the batch's total exceeds what remains of its campaign's budget (`remaining`): nothing was recorded; raise the budget or split the batch",
  },
  CSV_HEADER_INVALID: {
    exit: 2,
    cli: 'usage',
    status: 400,
    http: 'bad request',
    meaning: 'a CSV reward file has no header `rewardId,uid,amount,description`, or another one',
  },
  FILE_ENCODING_INVALID: {
    exit: 2,
    cli: 'usage',
    status: 400,
    http: 'invalid batch',
    meaning: 'a reward file (or a streamed body) is not UTF-8 text, for example UTF-16',
  },
  JSON_INVALID: {
    exit: 2,
    cli: 'usage',
    status: 400,
    http: 'invalid JSON',
    meaning: 'a request body is not valid JSON',
  },
  PAYLOAD_TOO_LARGE: {
    exit: 2,
    cli: 'usage',
    status: 413,
    http: 'payload too large',
    meaning: 'a streamed batch is larger than `WINDFALL_HTTP_STREAM_LIMIT`: nothing was recorded; split it',
  },
  REQUEST_INVALID: {
    exit: 2,
    cli: 'usage',
    status: 400,
    http: 'invalid request',
    meaning:
      'a field of an operator request (a reason, a campaign id or budget, a dead-letter selection) is invalid: nothing was changed; HTTP lists the field in `errors`',
  },
  BATCH_NOT_FOUND: {
    exit: 1,
    cli: 'failed',
    status: 404,
    http: 'not found',
    meaning: 'no batch has that id (was it enqueued against this `DATABASE_URL`?)',
  },
  CAMPAIGN_NOT_FOUND: {
    exit: 1,
    cli: 'failed',
    status: 404,
    http: 'not found',
    meaning: 'no batch names that campaign and no budget was set for it',
  },
  BATCH_PROCESSING: {
    exit: 2,
    cli: 'usage',
    status: 409,
    http: 'batch processing',
    meaning: 'a revert of a batch still processing was refused: nothing was changed; revert it once it is done',
  },
  SERVICE_UNAVAILABLE: {
    exit: 1,
    cli: 'unavailable',
    status: 503,
    http: 'unavailable',
    meaning: 'Redis or PostgreSQL does not answer (or the database is not migrated); the message says which and where',
  },
  CONFIG_INVALID: {
    exit: 2,
    cli: 'usage',
    status: 500,
    http: 'internal error',
    meaning: 'a setting (environment variable or flag) cannot be used; start-up stops, naming it',
  },
  BAD_USAGE: {
    exit: 2,
    cli: 'usage',
    status: 400,
    http: 'bad request',
    meaning: 'a command line that cannot run as given (CLI only)',
  },
  COMMAND_FAILED: {
    exit: 1,
    cli: 'failed',
    status: 500,
    http: 'internal error',
    meaning: 'a command could not do what was asked, for example an unknown reward or dead-letter id (CLI only)',
  },
  LOCK_BUSY: {
    exit: 1,
    cli: 'failed',
    status: 500,
    http: 'internal error',
    meaning: "a user's lock stayed held through every retry of its policy; retry later (a dead-letter reason too)",
  },
  LOCK_TIMEOUT: {
    exit: 1,
    cli: 'failed',
    status: 500,
    http: 'internal error',
    meaning: "the caller's deadline passed or its AbortSignal fired while waiting for a user's lock",
  },
  INSUFFICIENT_FUNDS: {
    exit: 1,
    cli: 'failed',
    status: 500,
    http: 'internal error',
    meaning: "a user's operations would take the balance below zero: nothing was applied (a dead-letter reason too)",
  },
  CONFLICT: {
    exit: 1,
    cli: 'failed',
    status: 500,
    http: 'internal error',
    meaning:
      'an operation id was already used with another user or amount: never credited twice; use a new id (a dead-letter reason too)',
  },
  INVALID: {
    exit: 1,
    cli: 'failed',
    status: 500,
    http: 'internal error',
    meaning:
      'an operation that can never be applied as given: a bad amount or id, a balance overflow (a dead-letter reason too)',
  },
} as const satisfies Record<string, ErrorRule>;

/** A stable error code: a key of {@link ERROR_TABLE}. */
export type ErrorCode = keyof typeof ERROR_TABLE;

/** How the CLI answers an error that is not a `WindfallError` (a bug, a driver's error): exit 1, `failed`. */
export const UNKNOWN_ERROR_RULE = { exit: 1, cli: 'failed' } as const;
