import { createLogger, scrubSecrets } from '../log/logger.js';
import { EXIT } from './exit-codes.js';

/**
 * Reports an error nothing caught (an uncaught exception, an unhandled rejection) and exits 1, as Node does by
 * default — but through the logger's error rendering: Node's own report prints every field of the error with
 * `util.inspect`, and a Redis error carries its command's arguments (a failed AUTH's are the password).
 * Writes `windfall: unexpected error: <message>` and one `fatal` log line with the rendered error on stderr.
 */
export function installCrashReporting(): void {
  const report = (thrown: unknown): void => {
    try {
      const message = thrown instanceof Error ? thrown.message : String(thrown);
      process.stderr.write(`windfall: unexpected error: ${scrubSecrets(message)}\n`);
      createLogger('fatal').fatal({ err: thrown }, 'unexpected error; exiting');
    } finally {
      process.exit(EXIT.FAILED);
    }
  };
  process.on('uncaughtException', report);
  process.on('unhandledRejection', report);
}
