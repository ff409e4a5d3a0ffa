import type { ErrorCode } from './error-table.js';

/**
 * The base of every error Windfall lets reach a user (the CLI, the HTTP API, a library caller). Its `code` is stable
 * and names a row of `ERROR_TABLE`, which says how the CLI (exit code) and the HTTP API (status) answer it.
 *
 * A subclass names its code once, as a static field (`static override readonly code = 'BATCH_INVALID'`); each
 * instance carries it as `code`.
 */
export abstract class WindfallError extends Error {
  /** The code of this class's errors. Every subclass sets it. */
  static readonly code: ErrorCode;

  /** The stable code of this error: a key of `ERROR_TABLE`. */
  readonly code: ErrorCode;

  /** The request field at fault, when there is one: HTTP answers list it under `errors`. */
  declare readonly field?: string;

  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    this.code = new.target.code;
  }

  /** The `message` of the CLI's `--json` error document and of the HTTP answer. Default: the error's message. */
  answerMessage(): string {
    return this.message;
  }

  /** Fields those documents carry besides `error` and `message`. Default: none. */
  answerFields(): object {
    return {};
  }
}
