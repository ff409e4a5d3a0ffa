import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BatchValidationError } from '../src/rewards/batch-errors.js';
import { forEachLimited } from '../src/concurrency/semaphore.js';
import { JsonNumber, MAX_REWARD_AMOUNT } from '../src/money/amount.js';
import { JsonSyntaxError, parseRawJson, type RawJsonValue } from '../src/rewards/raw-json.js';
import { REWARD_FIELDS, validateReward } from '../src/rewards/reward.js';
import { readRewardFile } from '../src/rewards/reward-sources.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

/** Texts that look like numbers: integers, signs, leading zeros, fractions, exponents, huge values, specials. */
const numberTexts = fc.oneof(
  fc.bigInt({ min: 0n, max: MAX_REWARD_AMOUNT * 3n }).map(String),
  fc
    .tuple(
      fc.constantFrom('', '-', '+', '0', '00', ' '),
      fc.bigInt({ min: 0n, max: 10n ** 20n }),
      fc.constantFrom('', '.0', '.5', 'e2', 'E+1', 'e-1', '.', ' ', 'n'),
    )
    .map(([head, digits, tail]) => `${head}${digits}${tail}`),
  fc.constantFrom(
    'NaN',
    'Infinity',
    '-0',
    '0x10',
    '1_000',
    '١٢٣',
    '１２３',
    '9007199254740991',
    '9007199254740992',
    '18446744073709551616',
  ),
);

const ids = fc.oneof(
  fc.stringMatching(/^[a-z0-9-]{1,12}$/),
  fc.string({ maxLength: 140, unit: 'grapheme' }),
  fc.constantFrom(' u', 'u ', '', 'a\u0000b', '\ud800', 'x'.repeat(129), '🎁'.repeat(128), '🎁'.repeat(129)),
);
const amountValues = fc.oneof(
  numberTexts,
  numberTexts.map((text) => new JsonNumber(text)),
  fc.double(),
  fc.integer(),
  fc.bigInt(),
  fc.constantFrom(null, undefined, true, [], {}, '1'),
);
const rawRecords = fc.record(
  {
    rewardId: ids,
    uid: ids,
    amount: amountValues,
    description: fc.oneof(fc.string({ maxLength: 600 }), fc.constant(null), fc.integer()),
    amout: fc.integer(),
  },
  { requiredKeys: [] },
);

describe('amount and reward validation (fuzz)', () => {
  it('an accepted reward carries exactly what was written; a refused one names its row and fields', () => {
    fc.assert(
      fc.property(rawRecords, fc.integer({ min: 1, max: 10_000_000 }), (raw, row) => {
        const check = validateReward(raw, row);
        if (check.ok) {
          const amount = raw.amount;
          const written =
            amount instanceof JsonNumber ? amount.raw : typeof amount === 'string' ? amount : String(amount);
          expect(/^\d+$/.test(written)).toBe(true);
          expect(check.reward.amount).toBe(BigInt(written));
          expect(check.reward.amount > 0n && check.reward.amount <= MAX_REWARD_AMOUNT).toBe(true);
          expect(check.reward.rewardId).toBe(raw.rewardId);
          expect(check.reward.uid).toBe(raw.uid);
          expect(Object.keys(raw).every((key) => (REWARD_FIELDS as readonly string[]).includes(key))).toBe(true);
        } else {
          expect(check.errors.length).toBeGreaterThan(0);
          for (const error of check.errors) {
            expect(error.row).toBe(row);
            expect([...REWARD_FIELDS, 'amout', 'row']).toContain(error.field);
            expect(error.reason.length).toBeGreaterThan(0);
          }
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('a JSON line credits the digits written or nothing: no rounding, no exponent, no leading zero, no sign', () => {
    fc.assert(
      fc.property(numberTexts, fc.boolean(), (text, quoted) => {
        const line = `{"rewardId":"r","uid":"u","amount":${quoted ? JSON.stringify(text) : text}}`;
        let parsed: unknown;
        try {
          parsed = parseRawJson(line);
        } catch {
          return; // not JSON: the row is reported as such
        }
        const check = validateReward(parsed, 1);
        if (check.ok) {
          // unquoted, white space around the number is JSON's, not the number's
          const written = quoted ? text : text.trim();
          expect(written).toMatch(quoted ? /^\d+$/ : /^[1-9]\d*$/);
          expect(check.reward.amount).toBe(BigInt(written));
          expect(check.reward.amount).toBeLessThanOrEqual(MAX_REWARD_AMOUNT);
        } else {
          expect(check.errors.map((error) => error.field)).toEqual(['amount']);
        }
      }),
      { numRuns: 5000 },
    );
  });
});

/** A parsed value as JSON.parse gives it: numbers as numbers, objects with a prototype. */
function plain(value: RawJsonValue): unknown {
  if (value instanceof JsonNumber) return Number(value.raw);
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') {
    const copy: Record<string, unknown> = {};
    for (const key of Object.keys(value))
      Object.defineProperty(copy, key, {
        value: plain(value[key]!),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    return copy;
  }
  return value;
}

/** Numbers as parseRawJson keeps them: the text written, in document order. */
function numberTextsOf(value: RawJsonValue, into: string[] = []): string[] {
  if (value instanceof JsonNumber) into.push(value.raw);
  else if (Array.isArray(value)) for (const item of value) numberTextsOf(item, into);
  else if (value !== null && typeof value === 'object')
    for (const key of Object.keys(value)) numberTextsOf(value[key]!, into);
  return into;
}

describe('raw JSON parser (fuzz, against JSON.parse)', () => {
  it('reads every JSON document as JSON.parse does, keeping each number as written', () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 6 }), fc.constantFrom('', ' ', '\n\t', '\r\n '), (json, space) => {
        const spaced = `${space}${json}${space}`;
        const parsed = parseRawJson(spaced);
        expect(plain(parsed)).toEqual(JSON.parse(spaced));
        for (const raw of numberTextsOf(parsed)) expect(raw).toMatch(/^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/);
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses exactly what JSON.parse refuses, and also repeated keys; errors say where', () => {
    const piece = fc.constantFrom(
      '{',
      '}',
      '[',
      ']',
      ':',
      ',',
      '"',
      'a',
      '1',
      '0',
      '-',
      '.',
      'e',
      '+',
      '\\',
      'u',
      'n',
      'null',
      'true',
      'fals',
      ' ',
      '\u0001',
      '"k"',
      '"k":1',
    );
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 24 }).map((pieces) => pieces.join('')),
        (text) => {
          let expected: unknown;
          let refused = false;
          try {
            expected = JSON.parse(text);
          } catch {
            refused = true;
          }
          let parsed: RawJsonValue | undefined;
          let error: unknown;
          try {
            parsed = parseRawJson(text);
          } catch (caught) {
            error = caught;
          }
          if (refused) {
            expect(error).toBeInstanceOf(JsonSyntaxError);
            const position = (error as JsonSyntaxError).position;
            expect(position).toBeGreaterThanOrEqual(0);
            expect(position).toBeLessThanOrEqual(text.length);
          } else if (error !== undefined) {
            // JSON.parse keeps the last of two equal keys; Windfall refuses the row
            expect((error as Error).message).toMatch(/appears twice/);
          } else {
            expect(plain(parsed!)).toEqual(expected);
          }
        },
      ),
      { numRuns: 20_000 },
    );
  });
});

/** A valid reward for row n, and ways to break exactly one of its fields. */
const validAt = (n: number, tag: string) => ({
  rewardId: `${tag}-${n}`,
  uid: `${tag}-u${n % 7}`,
  amount: String(1 + n),
});
const breakers: ((reward: Record<string, unknown>) => void)[] = [
  (r) => (r['amount'] = '1.5'),
  (r) => (r['amount'] = 0),
  (r) => (r['amount'] = '-3'),
  (r) => (r['amount'] = '1e3'),
  (r) => (r['amount'] = new JsonNumber('100.0')),
  (r) => (r['amount'] = '9007199254740992'),
  (r) => (r['uid'] = ''),
  (r) => (r['uid'] = ' padded'),
  (r) => (r['rewardId'] = 'x'.repeat(129)),
  (r) => delete r['rewardId'],
  (r) => (r['description'] = 'd'.repeat(501)),
  (r) => (r['colour'] = 'red'),
  (r) => (r['description'] = 'nul\u0000'),
];
const COLOUR = 11;

/** The rows as a JSONL or CSV file (amounts as written, JsonNumber raw), with a BOM, CRLFs, quotes and a garbage line. */
async function* hostileFile(
  rows: readonly Record<string, unknown>[],
  format: 'jsonl' | 'csv',
  n: number,
): AsyncGenerator<Uint8Array> {
  const amountText = (amount: unknown): string =>
    amount instanceof JsonNumber ? amount.raw : typeof amount === 'string' ? JSON.stringify(amount) : String(amount);
  const quote = (value: unknown): string =>
    value === undefined ? '' : `"${String(value instanceof JsonNumber ? value.raw : value).replace(/"/g, '""')}"`;
  const lines =
    format === 'jsonl'
      ? rows.map(
          (row) =>
            `{${Object.entries(row)
              .map(
                ([key, value]) =>
                  `${JSON.stringify(key)}:${key === 'amount' ? amountText(value) : JSON.stringify(value)}`,
              )
              .join(',')}}`,
        )
      : [
          'rewardId,uid,amount,description',
          ...rows.map((row) => [row['rewardId'], row['uid'], row['amount'], row['description']].map(quote).join(',')),
        ];
  if (n % 5 === 0)
    lines.splice(1, 0, format === 'jsonl' ? '{"rewardId":"g","uid":"g","amount":1' : '"unterminated,g,1');
  const text = `${n % 2 === 0 ? '\ufeff' : ''}${lines.join(n % 4 === 0 ? '\r\n' : '\n')}\n`;
  const bytes = Buffer.from(text, 'utf8');
  const cut = n % bytes.length;
  yield bytes.subarray(0, cut);
  yield bytes.subarray(cut);
}

describe('batches with bad rows (fuzz, against PostgreSQL and Redis)', () => {
  it('refuses a batch with any bad row, reporting exactly the bad rows; a clean batch is staged with its exact amounts', async () => {
    const windfall = await env.open();
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 60 }),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: breakers.length - 1 })), { maxLength: 6 }),
        async (size, breaks) => {
          run += 1;
          const tag = `fz${run}`;
          const rows: Record<string, unknown>[] = Array.from({ length: size }, (_, n) => validAt(n, tag));
          const bad = new Set<number>();
          for (const [index, breaker] of breaks) {
            breakers[breaker]!(rows[index % size]!);
            bad.add((index % size) + 1);
          }
          const result = await windfall.producer
            .enqueueRewards(rows, { batchId: tag })
            .catch((error: unknown) => error);
          if (bad.size === 0) {
            expect(result).toMatchObject({ batchId: tag, total: size, created: true });
            const { rows: staged } = await env.pool.query<{ reward_id: string; amount: string }>(
              'select reward_id, amount::text from reward_batch_items where batch_id = $1 order by row_no',
              [tag],
            );
            expect(staged.map((row) => row.amount)).toEqual(rows.map((row) => row['amount']));
          } else {
            expect(result).toBeInstanceOf(BatchValidationError);
            expect(new Set((result as BatchValidationError).errors.map((error) => error.row))).toEqual(bad);
            const { rows: staged } = await env.pool.query('select 1 from reward_batches where batch_id = $1', [tag]);
            expect(staged).toHaveLength(0);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('10,000 random invalid batches (arrays, JSONL and CSV files with hostile bytes): every one refused, nothing recorded, nothing enqueued', async () => {
    const windfall = await env.open();
    const { rows: before } = await env.pool.query<{ n: number }>('select count(*)::int as n from reward_batches');
    const batches = fc.sample(
      fc.tuple(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: breakers.length - 1 })), { minLength: 1, maxLength: 3 }),
      ),
      { numRuns: 10_000, seed: 4 },
    );
    let refused = 0;
    const started = performance.now();
    await forEachLimited(batches.entries(), 8, async ([n, [size, breaks]]) => {
      const rows: Record<string, unknown>[] = Array.from({ length: size }, (_, i) => validAt(i, `inv${n}`));
      const format = (['array', 'jsonl', 'csv'] as const)[n % 3]!;
      for (const [index, breaker] of breaks) {
        // CSV has no room for an unknown field: break another one instead
        const chosen = format === 'csv' && breaker === COLOUR ? 0 : breaker;
        breakers[chosen]!(rows[index % size]!);
      }
      const batchId = `inv-${n}`;
      const error = await (
        format === 'array'
          ? windfall.producer.enqueueRewards(rows, { batchId })
          : windfall.producer.enqueue(readRewardFile(hostileFile(rows, format, n), format), { batchId })
      ).catch((e: unknown) => e);
      if (error instanceof BatchValidationError && error.errors.length > 0) refused += 1;
    });
    const seconds = (performance.now() - started) / 1000;
    expect(refused).toBe(10_000);
    const { rows: after } = await env.pool.query<{ batches: number; items: number }>(
      `select (select count(*) from reward_batches where batch_id like 'inv-%')::int as batches,
              (select count(*) from reward_batch_items where batch_id like 'inv-%')::int as items`,
    );
    expect(after[0]).toEqual({ batches: 0, items: 0 });
    const { rows: total } = await env.pool.query<{ n: number }>('select count(*)::int as n from reward_batches');
    expect(total[0]!.n).toBe(before[0]!.n);
    let jobs = 0;
    for (const { queue } of windfall.queues.all()) {
      const all = await queue.getJobs(['waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized']);
      jobs += all.filter((job) => String((job.data as { batchId?: string }).batchId).startsWith('inv-')).length;
    }
    expect(jobs).toBe(0);
    expect(seconds).toBeGreaterThan(0);
  }, 240_000);
});
