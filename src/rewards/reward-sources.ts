import type { RowError } from './reward.js';
import { REWARD_FIELDS } from './reward.js';
import { readLineBatches } from './line-reader.js';
import { JsonNumber } from '../money/amount.js';
import { parseRawJson } from './raw-json.js';
import { problem, type Problem } from './row-problems.js';
import { WindfallError } from '../errors/windfall-error.js';

/** A raw reward record and where it came from, or why its row could not be parsed. */
export type SourceRecord =
  | { readonly row: number; readonly value: unknown; readonly error?: undefined }
  | { readonly row: number; readonly value?: undefined; readonly error: RowError };

/** File formats the CLI reads. */
export type RewardFileFormat = 'jsonl' | 'csv';

/** Picks the format from a file name: `.jsonl`/`.ndjson` → jsonl, `.csv` → csv; null when unknown. */
export function formatFromFileName(name: string): RewardFileFormat | null {
  const lower = name.toLowerCase();
  if (lower.endsWith('.jsonl') || lower.endsWith('.ndjson')) return 'jsonl';
  if (lower.endsWith('.csv')) return 'csv';
  return null;
}

/**
 * The shape nearly every producer writes (`JSON.stringify` of `{rewardId, uid, amount, description?}`): the four
 * keys in that order, no white space, strings without escapes or control characters, the amount a JSON integer
 * (no leading zero) or a string of digits. Such a line is read with one match; any other line goes through the full
 * parser ({@link parseRawJson}), which gives the same value for this shape (`test/unit/fuzz-parsing.test.ts` checks it).
 */
const COMMON_REWARD_LINE =
  /^\{"rewardId":"([^"\\\u0000-\u001f]*)","uid":"([^"\\\u0000-\u001f]*)","amount":(?:(0|[1-9][0-9]{0,29})|"([0-9]{0,30})")(?:,"description":"([^"\\\u0000-\u001f]*)")?\}$/;

/** A reward line in the common shape as the full parser would read it, or null when the line has another shape. */
export function readCommonRewardLine(text: string): Record<string, unknown> | null {
  const match = COMMON_REWARD_LINE.exec(text);
  if (!match) return null;
  const record: Record<string, unknown> = {
    rewardId: match[1],
    uid: match[2],
    amount: match[3] !== undefined ? new JsonNumber(match[3]) : match[4],
  };
  if (match[5] !== undefined) record['description'] = match[5];
  return record;
}

/**
 * Reads JSON Lines: one reward object a line; blank lines are skipped. `row` is the line number.
 */
export async function* readJsonLines(source: AsyncIterable<Uint8Array | string>): AsyncGenerator<SourceRecord> {
  for await (const lines of readLineBatches(source)) {
    for (const line of lines) {
      if (line.problem !== undefined) {
        yield { row: line.lineNo, error: { row: line.lineNo, field: 'row', ...line.problem } };
        continue;
      }
      const common = readCommonRewardLine(line.text);
      if (common) {
        yield { row: line.lineNo, value: common };
        continue;
      }
      if (line.text.trim() === '') continue;
      try {
        yield { row: line.lineNo, value: parseRawJson(line.text) };
      } catch (error) {
        yield {
          row: line.lineNo,
          error: {
            row: line.lineNo,
            field: 'row',
            code: 'invalid_json',
            reason: `is not valid JSON: ${(error as Error).message}`,
          },
        };
      }
    }
  }
}

/** Splits CSV records (RFC 4180 quoting); quoted fields may span lines. */
function splitCsvLine(text: string, carry: { fields: string[]; field: string; quoted: boolean } | null) {
  const state = carry ?? { fields: [], field: '', quoted: false };
  let i = 0;
  if (carry) state.field += '\n';
  let found: Problem | null = null;
  while (i < text.length) {
    const char = text[i] as string;
    if (state.quoted) {
      if (char === '"') {
        if (text[i + 1] === '"') {
          state.field += '"';
          i += 2;
          continue;
        }
        state.quoted = false;
        i += 1;
        if (i < text.length && text[i] !== ',') {
          found = problem(
            'csv_text_after_quote',
            'has text after a closing quote (double the quote inside a quoted field: "")',
          );
        }
        continue;
      }
      state.field += char;
      i += 1;
      continue;
    }
    if (char === ',') {
      state.fields.push(state.field);
      state.field = '';
      i += 1;
      continue;
    }
    if (char === '"') {
      if (state.field === '') {
        state.quoted = true;
        i += 1;
        continue;
      }
      found = problem(
        'csv_stray_quote',
        'has a quote inside an unquoted field (quote the whole field and double the quote)',
      );
    }
    state.field += char;
    i += 1;
  }
  return { state, problem: found };
}

/** Most physical lines one quoted CSV record may span before it is called unterminated. */
const MAX_RECORD_LINES = 1000;

/**
 * Reads CSV with the header `rewardId,uid,amount,description` (description may be left out of the header).
 * Empty descriptions are absent. `row` is the line on which the record starts (the header is line 1).
 */
export async function* readCsv(source: AsyncIterable<Uint8Array | string>): AsyncGenerator<SourceRecord> {
  let header: string[] | null = null;
  let carry: { fields: string[]; field: string; quoted: boolean } | null = null;
  let recordStart = 0;
  let recordLines = 0;
  let recordProblem: Problem | null = null;

  for await (const lines of readLineBatches(source)) {
    for (const line of lines) {
      if (line.problem !== undefined) {
        carry = null;
        yield { row: line.lineNo, error: { row: line.lineNo, field: 'row', ...line.problem } };
        continue;
      }
      if (!carry) {
        if (line.text.trim() === '') continue;
        recordStart = line.lineNo;
        recordLines = 0;
        recordProblem = null;
      }
      recordLines += 1;
      const { state, problem } = splitCsvLine(line.text, carry);
      recordProblem ??= problem;
      if (state.quoted) {
        if (recordLines >= MAX_RECORD_LINES) {
          carry = null;
          yield {
            row: recordStart,
            error: {
              row: recordStart,
              field: 'row',
              code: 'csv_unclosed_quote',
              reason: `has a quoted field that is never closed (spans over ${MAX_RECORD_LINES} lines)`,
            },
          };
          continue;
        }
        carry = state;
        continue;
      }
      carry = null;
      const fields = [...state.fields, state.field];
      if (header === null) {
        const names = fields.map((name) => name.trim());
        const expected = REWARD_FIELDS as readonly string[];
        const withDescription = names.length === 4 && names.every((name, index) => name === expected[index]);
        const withoutDescription = names.length === 3 && names.every((name, index) => name === expected[index]);
        if (!withDescription && !withoutDescription) {
          throw new CsvHeaderError(
            `line ${recordStart}: the CSV header must be "rewardId,uid,amount,description" (description optional), got ${JSON.stringify(fields.join(',').slice(0, 200))}`,
          );
        }
        header = names;
        continue;
      }
      if (recordProblem) {
        yield { row: recordStart, error: { row: recordStart, field: 'row', ...recordProblem } };
        continue;
      }
      if (fields.length !== header.length) {
        yield {
          row: recordStart,
          error: {
            row: recordStart,
            field: 'row',
            code: 'csv_field_count',
            reason: `has ${fields.length} fields; the header has ${header.length} (${header.join(',')})`,
          },
        };
        continue;
      }
      const record: Record<string, string> = {};
      header.forEach((name, index) => {
        const value = fields[index] as string;
        if (name === 'description' && value === '') return;
        record[name] = value;
      });
      yield { row: recordStart, value: record };
    }
  }
  if (carry) {
    yield {
      row: recordStart,
      error: {
        row: recordStart,
        field: 'row',
        code: 'csv_unclosed_quote',
        reason: 'has a quoted field that is never closed',
      },
    };
  }
  if (header === null)
    throw new CsvHeaderError('the CSV file is empty: it needs the header "rewardId,uid,amount,description"');
}

/** The CSV header is missing or wrong: no row can be read. */
export class CsvHeaderError extends WindfallError {
  static override readonly code = 'CSV_HEADER_INVALID';
  override readonly name = 'CsvHeaderError';
}

/** Reads a reward file of either format. */
export function readRewardFile(
  source: AsyncIterable<Uint8Array | string>,
  format: RewardFileFormat,
): AsyncGenerator<SourceRecord> {
  return format === 'csv' ? readCsv(source) : readJsonLines(source);
}

/** Records from an in-memory array (HTTP bodies, the library API): row = 1-based position. */
export async function* recordsFromArray(values: readonly unknown[]): AsyncGenerator<SourceRecord> {
  for (let index = 0; index < values.length; index += 1) yield { row: index + 1, value: values[index] };
}
