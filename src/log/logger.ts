import { pino, type Logger } from 'pino';
import type { LogLevel } from '../config/config.js';

export type { Logger } from 'pino';

/** Paths pino blanks out wherever they appear in a log record: tokens, passwords, connection strings. */
export const REDACTED_PATHS = [
  'token',
  'apiToken',
  'adminToken',
  'password',
  'authorization',
  'databaseUrl',
  'redisUrl',
  'config.apiToken',
  'config.adminToken',
  'config.databaseUrl',
  'config.redisUrl',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
];

/**
 * A structured JSON logger writing to standard error (standard output is kept for `--json` documents).
 * Secrets listed in {@link REDACTED_PATHS} are replaced by `[redacted]`.
 */
export function createLogger(level: LogLevel = 'info', bindings: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { service: 'windfall', pid: process.pid, ...bindings },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: 2, sync: true }),
  );
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
