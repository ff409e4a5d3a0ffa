import { isErrorLike, renderError } from '../../log/error-rendering.js';
import { createLogger, scrubSecrets } from '../../log/logger.js';
import { EXIT } from './exit-codes.js';

/**
 * Guards a `windfall` process's own output against what its libraries print: Node's report of an uncaught error
 * and the `console.error`/`console.warn` calls of dependencies (BullMQ prints some errors that way) show every
 * field of an error with `util.inspect`, and a Redis error carries its command's arguments — a failed AUTH's are
 * the password. Both go through the logger's error rendering instead ({@link renderError}).
 */
export function installProcessGuards(): void {
  guardConsole();
  reportCrashes();
}

/** `console.error`/`console.warn`/`console.log`: error arguments rendered, text scrubbed of credentials. */
function guardConsole(): void {
  for (const method of ['error', 'warn', 'log'] as const) {
    const original = console[method].bind(console);
    console[method] = (...items: unknown[]) => {
      original(
        ...items.map((item) =>
          isErrorLike(item) ? renderError(item) : typeof item === 'string' ? scrubSecrets(item) : item,
        ),
      );
    };
  }
}

/**
 * An error nothing caught (an uncaught exception, an unhandled rejection) is reported and the process exits 1, as
 * Node does by default: `windfall: unexpected error: <message>` and one `fatal` log line with the rendered error,
 * both on stderr.
 */
function reportCrashes(): void {
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
