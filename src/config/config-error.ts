import { WindfallError } from '../errors/windfall-error.js';

/**
 * A configuration value that cannot be used. The message names the variable (or flag) and says what it accepts.
 * Start-up stops on this error; nothing has been connected yet when it is thrown.
 */
export class ConfigError extends WindfallError {
  static override readonly code = 'CONFIG_INVALID';
  override readonly name = 'ConfigError';
  /** The environment variable or CLI flag at fault, e.g. `WINDFALL_SHARDS`; for a value given in code, its field. */
  readonly variable: string;

  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`);
    this.variable = variable;
  }
}
