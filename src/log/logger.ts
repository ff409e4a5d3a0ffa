import { pino, type Logger } from 'pino';
import { renderError, renderLogFields, scrubRedisArguments } from './error-rendering.js';
import { dropRepeatedFields, REDACTED } from './repeated-fields.js';

export type { Logger } from 'pino';

/** pino levels accepted by `LOG_LEVEL`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Field names whose values are secrets (or connection strings that may carry one), at any of the first four levels. */
const SECRET_FIELDS = [
  'token',
  'apiToken',
  'adminToken',
  'webhookSecret',
  'password',
  'authorization',
  'cookie',
  'databaseUrl',
  'redisUrl',
  'redisSentinelPassword',
  'sentinelPassword',
  'connectionString',
];

/** Paths pino blanks out wherever they appear in a log record: tokens, passwords, connection strings. */
export const REDACTED_PATHS = [
  ...SECRET_FIELDS.flatMap((field) => [field, `*.${field}`, `*.*.${field}`, `*.*.*.${field}`]),
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-api-key"]',
];

/** `scheme://user:password@` in any text: the password part is replaced. */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@'"]*:)[^\s@/'"]+@/gi;
/** `Bearer <token>` / `Basic <credentials>` in any text. */
const AUTH_HEADER_VALUE = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{4,}/g;

/**
 * Removes URL passwords, bearer/basic credentials and the command arguments Redis quotes in some error texts
 * (`with args beginning with: …`) from free text (messages, error messages, stacks).
 */
export function scrubSecrets(text: string): string {
  const scrubbed = scrubRedisArguments(text);
  if (!scrubbed.includes('://') && !/Bearer|Basic/.test(scrubbed)) return scrubbed;
  return scrubbed.replace(URL_CREDENTIALS, '$1***@').replace(AUTH_HEADER_VALUE, '$1 [redacted]');
}

/** Passes each serialized log line through {@link scrubSecrets} on its way to `target`. */
export function scrubbingDestination(target: pino.DestinationStream): pino.DestinationStream {
  return {
    write(line: string) {
      return target.write(scrubSecrets(line));
    },
  };
}

/** The pino options of {@link createLogger}. */
export function loggerOptions(level: LogLevel, bindings: Record<string, unknown> = {}): pino.LoggerOptions {
  return {
    level,
    base: { service: 'windfall', pid: process.pid, ...bindings },
    redact: { paths: REDACTED_PATHS, censor: REDACTED },
    timestamp: pino.stdTimeFunctions.isoTime,
    // errors under any key, at any depth, and thrown non-Error values: rendered for people, Redis command
    // arguments (a rotated password in a failed AUTH) never printed
    serializers: { err: renderError },
    formatters: {
      level: (label) => ({ level: label }),
      log: (fields) => renderLogFields(fields),
      bindings: (bindings) => renderLogFields(bindings),
    },
    // a key the logger already binds is written once per line
    hooks: { logMethod: dropRepeatedFields },
  };
}

/**
 * A structured JSON logger writing to standard error (standard output is kept for `--json` documents), or to
 * `destination`. Secret fields ({@link REDACTED_PATHS}) are replaced by `[redacted]`, and every line is scrubbed
 * of URL passwords and bearer/basic credentials wherever they appear: messages, error messages and stacks, child
 * bindings ({@link scrubSecrets}). Errors are rendered by {@link renderError} under `err` and under any other key
 * or depth (a Redis command keeps its name, never its arguments); a field the logger already binds is written
 * once ({@link dropRepeatedFields}).
 */
export function createLogger(
  level: LogLevel = 'info',
  bindings: Record<string, unknown> = {},
  destination?: pino.DestinationStream,
): Logger {
  const logger = pino(
    loggerOptions(level, bindings),
    scrubbingDestination(destination ?? pino.destination({ fd: 2, sync: true })),
  );
  // pino applies `formatters.bindings` to the base bindings only; a child's bindings are rendered here (children,
  // fastify's request loggers included, inherit this method)
  type ChildMethod = (this: unknown, bindings: pino.Bindings, options?: unknown) => unknown;
  // taken off the logger on purpose: it is called below with the child's own `this`
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const pinoChild = logger.child as unknown as ChildMethod;
  const childWithRenderedBindings: ChildMethod = function (this: unknown, childBindings, options) {
    return pinoChild.call(this, renderLogFields(childBindings), options);
  };
  logger.child = childWithRenderedBindings as unknown as Logger['child'];
  return logger;
}

/** A logger that drops everything, for library callers who pass none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Removes the password from a connection URL for logs and error messages: `redis://:***@host:6379`. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '[unparseable url]';
  }
}
