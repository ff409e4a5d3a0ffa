import type { Command } from 'commander';
import type { WindfallConfig } from '../../config/config.js';
import { loadConfig, unknownSettings } from '../../config/config.js';
import { SETTINGS } from '../../config/settings.js';
import type { Logger } from '../../log/logger.js';
import { createLogger } from '../../log/logger.js';
import type { OpenOptions, Windfall } from '../../runtime/windfall.js';

/** Options every command accepts (they win over the environment). */
export interface GlobalFlags {
  readonly redisUrl?: string;
  readonly databaseUrl?: string;
  readonly prefix?: string;
  readonly logLevel?: string;
  /** Who runs an operator command, for the audit trail (default `cli:<os user>@<host>`). */
  readonly actor?: string;
}

/**
 * Resolves the configuration: environment, then global flags. Long-running commands log at `info` by default;
 * one-shot commands at `warn`, unless `LOG_LEVEL` or `--log-level` says otherwise.
 */
export function resolveConfig(
  flags: GlobalFlags,
  overrides: Partial<WindfallConfig> = {},
  quiet = true,
): { config: WindfallConfig; logger: Logger } {
  const env: Record<string, string | undefined> = { ...process.env };
  // a flag is read as its variable would be: the same checks, and errors naming the variable
  for (const name of ['redisUrl', 'databaseUrl', 'prefix', 'logLevel'] as const) {
    if (flags[name] !== undefined) env[SETTINGS[name].env] = flags[name];
  }
  if (quiet && flags.logLevel === undefined && !env[SETTINGS.logLevel.env]) env[SETTINGS.logLevel.env] = 'warn';
  const config = loadConfig(env, overrides);
  const logger = createLogger(config.logLevel);
  const unknown = unknownSettings(env);
  if (unknown.length > 0) logger.warn({ variables: unknown }, 'ignoring unknown WINDFALL_* variables (typos?)');
  return { config, logger };
}

/** Opens Windfall for one command and closes it afterwards, whatever happens. */
export async function withWindfall<T>(
  flags: GlobalFlags,
  run: (windfall: Windfall) => Promise<T>,
  options: { overrides?: Partial<WindfallConfig>; quiet?: boolean; open?: OpenOptions } = {},
): Promise<T> {
  const { config, logger } = resolveConfig(flags, options.overrides, options.quiet ?? true);
  // loaded here, not at start-up: commands that do not open all of Windfall start faster
  const { openWindfall } = await import('../../runtime/windfall.js');
  const windfall = await openWindfall(config, logger, options.open);
  try {
    return await run(windfall);
  } finally {
    await windfall.close();
  }
}

/** What command modules get to register their commands. */
export interface CommandRegistry {
  /** The global flags (`--redis-url`, …) as seen from a subcommand. */
  readonly globals: (command: Command) => GlobalFlags;
  /** Sets the process exit code of the command that runs (e.g. 1 when a check found problems). */
  readonly setExit: (code: number) => void;
}
