import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIGURATION_DOC, renderConfigurationDoc } from '../../src/config/configuration-doc.js';
import { SETTINGS } from '../../src/config/settings.js';

describe(CONFIGURATION_DOC.path, () => {
  it('is what the settings declaration renders', () => {
    const file = readFileSync(new URL(`../../${CONFIGURATION_DOC.path}`, import.meta.url), 'utf8');
    expect(
      file === renderConfigurationDoc(),
      `${CONFIGURATION_DOC.path} is stale: regenerate it with \`${CONFIGURATION_DOC.command}\` (from src/config/settings.ts)`,
    ).toBe(true);
  });

  it('has one row per setting, with its default and range', () => {
    const rows = renderConfigurationDoc()
      .split('\n')
      .filter((line) => line.startsWith('| `'));
    expect(rows.map((line) => /^\| `([A-Z_]+)`/.exec(line)?.[1])).toEqual(
      Object.values(SETTINGS).map((setting) => setting.env),
    );
    expect(rows).toContain(
      '| `WINDFALL_HTTP_BODY_LIMIT` | `10485760` (10 MiB) | a whole number from 1024 to 1073741824 | bytes | Largest request body `windfall serve` accepts; larger bodies get 413. |',
    );
    expect(rows.find((line) => line.startsWith('| `WINDFALL_API_TOKEN`'))).toMatch(
      /^\| `WINDFALL_API_TOKEN` \| none \|/,
    );
  });
});
