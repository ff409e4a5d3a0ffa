import type { Setting } from './setting.js';
import { SETTINGS } from './settings.js';

/** Where the page lives in the repository, and the command that writes it. */
export const CONFIGURATION_DOC = { path: 'docs/configuration.md', command: 'npm run docs:config' } as const;

const KIB = 1024;
const BINARY_UNITS = [
  ['TiB', KIB ** 4],
  ['GiB', KIB ** 3],
  ['MiB', KIB ** 2],
  ['KiB', KIB],
] as const;

/** A readable form of a round number of bytes or milliseconds (`10 MiB`, `30 s`), or nothing. */
function readable(value: number, unit: string | undefined): string | undefined {
  if (unit === 'bytes') {
    const fit = BINARY_UNITS.find(([, size]) => value >= size && value % size === 0);
    return fit && `${value / fit[1]} ${fit[0]}`;
  }
  if (unit === 'ms' && value >= 1000 && value % 1000 === 0) return `${value / 1000} s`;
  return undefined;
}

/** The default as the page shows it: `none` for no value or an empty list. */
function shownDefault(setting: Setting<unknown>): string {
  const value = setting.default;
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return 'none';
  const text = `\`${String(value)}\``;
  const round = typeof value === 'number' ? readable(value, setting.unit) : undefined;
  return round === undefined ? text : `${text} (${round})`;
}

/** Text safe inside a Markdown table cell. */
function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function row(setting: Setting<unknown>): string {
  const meaning = setting.flag === undefined ? setting.meaning : `${setting.meaning} CLI: \`${setting.flag}\`.`;
  const cells = [`\`${setting.env}\``, shownDefault(setting), setting.allowed, setting.unit ?? '', meaning];
  return `| ${cells.map(cell).join(' | ')} |`;
}

/**
 * `docs/configuration.md`: one row per declared setting (variable, default, what it accepts, unit, meaning), in the
 * declaration's order. Written by `npm run docs:config`; a unit test holds the file to it.
 */
export function renderConfigurationDoc(): string {
  const settings: readonly Setting<unknown>[] = Object.values(SETTINGS);
  return [
    `<!-- Generated from src/config/settings.ts by \`${CONFIGURATION_DOC.command}\`: do not edit by hand; edit the declaration and run it again. -->`,
    '',
    '# Configuration',
    '',
    'Windfall reads its settings from environment variables; a CLI flag of the same meaning wins. An unset or empty',
    'variable takes its default. A malformed value (not a number, out of range, a bad URL) stops start-up with exit 2',
    'and a message naming the variable, the value (never a URL or a secret) and what is allowed. Unknown `WINDFALL_*`',
    'variables are logged as likely typos. Values given in code (`loadConfig(env, overrides)`) are checked the same',
    'way, their errors naming the field (`concurrency`, `rewardLockPolicy.ttlMs`).',
    '',
    '| variable | default | accepts | unit | meaning |',
    '|---|---|---|---|---|',
    ...settings.map(row),
    '',
  ].join('\n');
}
