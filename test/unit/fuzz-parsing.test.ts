import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_LINE_BYTES, FileEncodingError } from '../../src/rewards/line-reader.js';
import {
  CsvHeaderError,
  readCommonRewardLine,
  readCsv,
  readJsonLines,
  type SourceRecord,
} from '../../src/rewards/reward-sources.js';
import { parseRawJson } from '../../src/rewards/raw-json.js';
import { JsonNumber } from '../../src/money/amount.js';
import { validateReward } from '../../src/rewards/reward.js';

async function collect(source: AsyncIterable<SourceRecord>): Promise<SourceRecord[]> {
  const out: SourceRecord[] = [];
  for await (const record of source) out.push(record);
  return out;
}

/** Feeds `bytes` in pieces cut at the given offsets (a stream may split anywhere, even inside a character). */
async function* pieces(bytes: Buffer, cuts: readonly number[]): AsyncGenerator<Uint8Array> {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  let start = 0;
  for (const point of points) {
    yield bytes.subarray(start, point);
    start = point;
  }
  yield bytes.subarray(start);
}

/** What a parse produced, in a comparable form (errors thrown at the end included). */
async function outcome(read: () => AsyncIterable<SourceRecord>): Promise<unknown> {
  try {
    return (await collect(read())).map((record) =>
      record.error
        ? { row: record.row, error: record.error }
        : { row: record.row, value: JSON.stringify(record.value) },
    );
  } catch (error) {
    if (error instanceof FileEncodingError || error instanceof CsvHeaderError)
      return { thrown: error.name, message: error.message };
    throw error;
  }
}

const rewardIds = fc.stringMatching(/^[A-Za-z0-9_.:-]{1,40}$/);
const text = fc
  .array(
    fc.oneof(
      fc.string({ maxLength: 10, unit: 'grapheme' }),
      fc.constantFrom('"', ',', '\n', '\r\n', '""', '\\', '\t', '奖励', '🎁'),
    ),
    { maxLength: 8 },
  )
  .map((parts) => parts.join(''))
  .filter((value) => [...value].length <= 500);
const amounts = fc.bigInt({ min: 1n, max: 9_007_199_254_740_991n });
const validReward = fc.record({
  rewardId: rewardIds,
  uid: fc
    .string({ minLength: 1, maxLength: 30, unit: 'grapheme' })
    .filter((uid) => uid.trim() === uid && !/[\u0000-\u001f\u007f]/.test(uid)),
  amount: amounts,
  description: fc.option(
    text.filter((d) => !d.includes('\u0000') && d !== ''),
    { nil: undefined },
  ),
});

/** RFC 4180 quoting, sometimes when not needed. */
function csvField(value: string, forceQuotes: boolean): string {
  return forceQuotes || /[",\r\n]/.test(value) || value !== value.trim() ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Bytes that make hostile files: quotes, separators, line ends, BOMs, NUL, invalid UTF-8, UTF-16 halves. */
const hostileBytes = fc.array(
  fc.oneof(
    fc.constantFrom(
      '"',
      ',',
      '\n',
      '\r\n',
      '\r',
      '{',
      '}',
      '[',
      ']',
      ':',
      '\\',
      '\ufeff',
      '\u0000',
      '""',
      '"a"',
      'amount',
      '1e2',
      '-1',
      '1.0',
    ),
    fc.string({ maxLength: 8 }),
    fc.uint8Array({ maxLength: 6 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
  ),
  { maxLength: 60 },
);

describe('reward files (fuzz)', () => {
  it('JSON Lines: valid rewards round-trip exactly, whatever the spacing and however the stream is cut', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(validReward, { minLength: 1, maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.array(fc.constantFrom('', ' ', '\t', '  '), { minLength: 4, maxLength: 4 }),
        fc.boolean(),
        fc.boolean(),
        async (rewards, cuts, spaces, bom, crlf) => {
          const lines = rewards.map((reward, index) => {
            const amount = index % 2 === 0 ? reward.amount.toString() : JSON.stringify(reward.amount.toString());
            const description =
              reward.description === undefined
                ? ''
                : `,${spaces[0]}"description":${JSON.stringify(reward.description)}`;
            return `${spaces[1]}{"rewardId":${JSON.stringify(reward.rewardId)},${spaces[2]}"uid":${JSON.stringify(reward.uid)},"amount":${spaces[3]}${amount}${description}}`;
          });
          const file = Buffer.from(`${bom ? '\ufeff' : ''}${lines.join(crlf ? '\r\n' : '\n')}\n`, 'utf8');
          const records = await collect(readJsonLines(pieces(file, cuts)));
          expect(records.map((record) => record.row)).toEqual(rewards.map((_, index) => index + 1));
          records.forEach((record, index) => {
            const check = validateReward(record.value, record.row);
            expect(check).toEqual({
              ok: true,
              reward: {
                rewardId: rewards[index]!.rewardId,
                uid: rewards[index]!.uid,
                amount: rewards[index]!.amount,
                description: rewards[index]!.description ?? null,
              },
            });
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('CSV: valid rewards round-trip exactly with RFC 4180 quoting (a CRLF inside a quoted field reads as LF), however the stream is cut', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(validReward, fc.boolean()), { minLength: 1, maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (rows, cuts) => {
          const body = rows.map(([reward, quote]) =>
            [reward.rewardId, reward.uid, reward.amount.toString(), reward.description ?? '']
              .map((field) => csvField(field, quote))
              .join(','),
          );
          const file = Buffer.from(`rewardId,uid,amount,description\r\n${body.join('\r\n')}\n`, 'utf8');
          const records = await collect(readCsv(pieces(file, cuts)));
          expect(records.filter((record) => record.error)).toEqual([]);
          expect(records).toHaveLength(rows.length);
          records.forEach((record, index) => {
            const [reward] = rows[index]!;
            expect(validateReward(record.value, record.row)).toEqual({
              ok: true,
              reward: {
                rewardId: reward.rewardId,
                uid: reward.uid,
                amount: reward.amount,
                description: reward.description?.replace(/\r\n/g, '\n') ?? null,
              },
            });
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('hostile bytes never crash either reader, give the same answer however they are cut, and number rows in order', async () => {
    await fc.assert(
      fc.asyncProperty(
        hostileBytes,
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.boolean(),
        async (parts, cuts, withHeader) => {
          const bytes = Buffer.from((withHeader ? 'rewardId,uid,amount,description\n' : '') + parts.join(''), 'latin1');
          for (const read of [readJsonLines, readCsv]) {
            const whole = await outcome(() => read(pieces(bytes, [])));
            expect(await outcome(() => read(pieces(bytes, cuts)))).toEqual(whole);
            if (Array.isArray(whole)) {
              const rows = (whole as { row: number; error?: { row: number; reason: string } }[]).map(
                (record) => record.row,
              );
              expect([...rows].sort((a, b) => a - b)).toEqual(rows);
              for (const record of whole as { row: number; error?: { row: number; reason: string } }[]) {
                if (record.error) {
                  expect(record.error.row).toBe(record.row);
                  expect(record.error.reason.length).toBeGreaterThan(0);
                }
              }
            }
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('a line of any length beyond the limit is reported, never buffered whole, and the next line is read', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: MAX_LINE_BYTES + 1, max: MAX_LINE_BYTES * 3 }),
        fc.array(fc.nat(), { maxLength: 4 }),
        async (length, cuts) => {
          const huge = Buffer.alloc(length, 0x61);
          const file = Buffer.concat([
            Buffer.from('{"rewardId":"before","uid":"u","amount":1}\n'),
            huge,
            Buffer.from('\n{"rewardId":"after","uid":"u","amount":2}\n'),
          ]);
          const records = await collect(
            readJsonLines(
              pieces(
                file,
                cuts.map((cut) => cut * 4099),
              ),
            ),
          );
          expect(records.map((record) => [record.row, record.error ? 'error' : 'ok'])).toEqual([
            [1, 'ok'],
            [2, 'error'],
            [3, 'ok'],
          ]);
          expect(records[1]!.error!.reason).toContain(`longer than ${MAX_LINE_BYTES} bytes`);
        },
      ),
      { numRuns: 5 },
    );
  });

  it('wrong encodings: UTF-16 (with a BOM) is refused whole; Latin-1 or UTF-16 without a BOM never yields a valid reward', async () => {
    const line = '{"rewardId":"r-é","uid":"ü","amount":5}\n';
    await expect(
      collect(readJsonLines(pieces(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(line, 'utf16le')]), []))),
    ).rejects.toBeInstanceOf(FileEncodingError);
    await expect(
      collect(readCsv(pieces(Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from('rewardId', 'utf16le')]), []))),
    ).rejects.toBeInstanceOf(FileEncodingError);
    const latin1 = await collect(readJsonLines(pieces(Buffer.from(line, 'latin1'), [])));
    expect(latin1[0]!.error!.reason).toMatch(/not valid UTF-8/);
    const utf16 = await collect(readJsonLines(pieces(Buffer.from(line, 'utf16le'), [])));
    expect(utf16.every((record) => record.error !== undefined || !validateReward(record.value, record.row).ok)).toBe(
      true,
    );
  });
});

describe('the common-shape fast path of JSON Lines', () => {
  /** Values as they compare: a JSON number keeps its text. */
  const comparable = (value: unknown): string =>
    JSON.stringify(value, (_key, v: unknown) => (v instanceof JsonNumber ? { number: v.raw } : v));
  const field = fc.oneof(
    fc.string({ maxLength: 12, unit: 'grapheme' }),
    fc.constantFrom('', 'a"b', 'a\\b', 'tab\there', 'nul\u0000', 'é奖🎁', ' spaced ', '\u001f'),
  );
  const amountText = fc.oneof(
    fc.bigInt({ min: 0n, max: 10n ** 35n }).map(String),
    fc.constantFrom('007', '0', '-5', '1.5', '1e2', '100.0', '+3', ' 4', ''),
  );

  it('reads a line exactly as the full parser does, or leaves it to the full parser', () => {
    fc.assert(
      fc.property(
        field,
        field,
        amountText,
        fc.boolean(),
        fc.option(field, { nil: undefined }),
        fc.constantFrom('', ' ', ',"x":1'),
        (rewardId, uid, amount, asString, description, extra) => {
          const amountJson = asString ? JSON.stringify(amount) : amount;
          const line =
            `{"rewardId":${JSON.stringify(rewardId)},"uid":${JSON.stringify(uid)},"amount":${amountJson}` +
            `${description === undefined ? '' : `,"description":${JSON.stringify(description)}`}${extra}}`;
          const fast = readCommonRewardLine(line);
          let full: unknown;
          try {
            full = parseRawJson(line);
          } catch {
            expect(fast).toBeNull();
            return;
          }
          if (fast !== null) expect(comparable(fast)).toBe(comparable(full));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('takes the lines a producer usually writes', () => {
    expect(readCommonRewardLine('{"rewardId":"r1","uid":"u1","amount":100,"description":"活动奖励"}')).not.toBeNull();
    expect(readCommonRewardLine('{"rewardId":"r1","uid":"u1","amount":"200"}')).not.toBeNull();
    // leading zeros are not JSON; other orders, spaces and escapes go to the full parser
    expect(readCommonRewardLine('{"rewardId":"r1","uid":"u1","amount":007}')).toBeNull();
    expect(readCommonRewardLine('{"uid":"u1","rewardId":"r1","amount":1}')).toBeNull();
    expect(readCommonRewardLine('{"rewardId": "r1","uid":"u1","amount":1}')).toBeNull();
    expect(readCommonRewardLine('{"rewardId":"r\\"1","uid":"u1","amount":1}')).toBeNull();
  });
});
