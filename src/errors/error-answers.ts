import { ERROR_TABLE, UNKNOWN_ERROR_RULE } from './error-table.js';
import { WindfallError } from './windfall-error.js';

/** An error as a document: `{error, message, …}`, as the CLI's `--json` prints it and the HTTP API sends it. */
export interface ErrorDocument {
  /** The word of {@link ERROR_TABLE} for the surface (`invalid batch`, `usage`, `not found`, …). */
  readonly error: string;
  readonly message: string;
  readonly [field: string]: unknown;
}

/** How the CLI answers an error: the exit code, and the `--json` document. */
export interface CliAnswer {
  readonly exit: 1 | 2;
  /** Its message is the error's as it is: the CLI scrubs secrets from it before printing. */
  readonly document: ErrorDocument;
}

/** How the HTTP API answers an error: the status and the body. */
export interface HttpAnswer {
  readonly status: number;
  readonly body: ErrorDocument;
}

/**
 * The CLI's answer to `error`, from {@link ERROR_TABLE}: a `WindfallError` by its code, anything else exit 1
 * `failed` with its message.
 */
export function cliAnswer(error: unknown): CliAnswer {
  if (!(error instanceof WindfallError)) {
    const message = error instanceof Error ? error.message : String(error);
    return { exit: UNKNOWN_ERROR_RULE.exit, document: { error: UNKNOWN_ERROR_RULE.cli, message } };
  }
  const rule = ERROR_TABLE[error.code];
  return { exit: rule.exit, document: { error: rule.cli, message: error.answerMessage(), ...error.answerFields() } };
}

/**
 * The HTTP API's answer to `error`, from {@link ERROR_TABLE}: `{error, message, …fields}`, plus
 * `errors: [{row: 0, field, reason}]` when a request field is at fault. Null when the error is not answered as such
 * (not a `WindfallError`, or status 500): the server logs it and answers an internal error.
 */
export function httpAnswer(error: unknown): HttpAnswer | null {
  if (!(error instanceof WindfallError)) return null;
  const rule = ERROR_TABLE[error.code];
  if (rule.status === 500) return null;
  const fieldErrors =
    error.field !== undefined ? { errors: [{ row: 0, field: error.field, reason: error.message }] } : {};
  return {
    status: rule.status,
    body: { error: rule.http, message: error.answerMessage(), ...error.answerFields(), ...fieldErrors },
  };
}
