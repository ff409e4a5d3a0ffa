import { ERROR_TABLE, INTERNAL_ERROR } from './error-table.js';

/** The command that writes docs/errors.md from {@link renderErrorsDoc}. */
export const ERRORS_DOC_COMMAND = 'npm run docs:errors';

/** A table cell: no line breaks, and a `|` escaped. */
function cell(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');
}

/** docs/errors.md: the error table for people, generated from {@link ERROR_TABLE}. */
export function renderErrorsDoc(): string {
  const rows = Object.entries(ERROR_TABLE).map(
    ([code, rule]) =>
      `| \`${code}\` | ${rule.exit} | \`${rule.cli}\` | ${rule.status} | \`${rule.http}\` | ${cell(rule.meaning)} |`,
  );
  return [
    '# Errors',
    '',
    `<!-- Generated from src/errors/error-table.ts by \`${ERRORS_DOC_COMMAND}\`: do not edit by hand. -->`,
    '',
    'Every error Windfall lets reach a user is a `WindfallError` with a stable `code`. One table says how the CLI',
    '(exit code, and the `error` word of its `--json` document) and the HTTP API (status, and the `error` word of the',
    'body) answer each code. Both surfaces send the same document: `{error, message, …}`, with the fields the error',
    'carries (a refused batch: `errors`, `summary`, `totalErrors`, `badRows`, `rowsRead`; an exceeded budget:',
    '`campaignId`, `remaining`); an HTTP answer to a bad request field also lists it in `errors`.',
    '',
    `Status 500 means the API does not answer the error as such: the server logs it and answers`,
    `\`{"error": "${INTERNAL_ERROR.error}"}\` without its message. Any other error (a bug, a driver's error) is exit 1`,
    '`failed` in the CLI and a 500 in the API.',
    '',
    '| code | exit | CLI `error` | HTTP | HTTP `error` | meaning |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
