import { describe, expect, it } from 'vitest';
import { CsvHeaderError, readCsv, readJsonLines, type SourceRecord } from '../../src/rewards/reward-sources.js';
import { FileEncodingError, MAX_LINE_BYTES } from '../../src/rewards/line-reader.js';
import { validateReward } from '../../src/rewards/reward.js';
import { JsonNumber } from '../../src/money/amount.js';
import { LISTED_ERRORS, RowErrorReport } from '../../src/rewards/row-error-report.js';
import { ROW_PROBLEMS } from '../../src/rewards/row-problems.js';

async function collect(source: AsyncIterable<SourceRecord>): Promise<SourceRecord[]> {
  const out: SourceRecord[] = [];
  for await (const record of source) out.push(record);
  return out;
}

async function* chunks(...parts: (string | Uint8Array)[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield typeof part === 'string' ? Buffer.from(part, 'utf8') : part;
}

describe('readJsonLines', () => {
  it('reads one object a line, numbering rows by line and skipping blank lines', async () => {
    const records = await collect(
      readJsonLines(
        chunks('{"rewardId":"r1","uid":"u1","amount":100}\n\n{"rewardId":"r2","uid":"u2","amount":"200"}\r\n'),
      ),
    );
    expect(records.map((r) => r.row)).toEqual([1, 3]);
    expect((records[0]!.value as { amount: JsonNumber }).amount).toBeInstanceOf(JsonNumber);
    expect((records[1]!.value as { amount: string }).amount).toBe('200');
  });

  it('joins lines split across chunks, multi-byte characters included', async () => {
    const text = Buffer.from('{"rewardId":"r1","uid":"用户","amount":1,"description":"活动奖励"}\n', 'utf8');
    const records = await collect(
      readJsonLines(chunks(text.subarray(0, 30), text.subarray(30, 31), text.subarray(31))),
    );
    expect(records).toHaveLength(1);
    expect(validateReward(records[0]!.value, 1)).toMatchObject({
      ok: true,
      reward: { uid: '用户', description: '活动奖励' },
    });
  });

  it('strips a UTF-8 byte-order mark and reads a last line without a newline', async () => {
    const records = await collect(readJsonLines(chunks('\ufeff{"rewardId":"r1","uid":"u1","amount":1}')));
    expect(records).toHaveLength(1);
    expect(records[0]!.error).toBeUndefined();
  });

  it('refuses UTF-16 files as a whole', async () => {
    await expect(collect(readJsonLines(chunks(Buffer.from([0xff, 0xfe, 0x7b, 0x00]))))).rejects.toBeInstanceOf(
      FileEncodingError,
    );
  });

  it('sees a byte-order mark cut across the first pieces of the stream (UTF-16 refused, UTF-8 stripped)', async () => {
    // found by the fuzz test: a UTF-16 BOM whose two bytes came in two pieces was read as a line of bad UTF-8
    await expect(
      collect(readJsonLines(chunks(Buffer.from([0xfe]), Buffer.from([0xff, 0x00, 0x7b])))),
    ).rejects.toBeInstanceOf(FileEncodingError);
    const utf8 = Buffer.from('\ufeff{"rewardId":"r1","uid":"u1","amount":1}\n', 'utf8');
    const records = await collect(
      readJsonLines(chunks(utf8.subarray(0, 1), utf8.subarray(1, 2), utf8.subarray(2, 3), utf8.subarray(3))),
    );
    expect(records).toEqual([{ row: 1, value: { rewardId: 'r1', uid: 'u1', amount: new JsonNumber('1') } }]);
    expect(await collect(readJsonLines(chunks(Buffer.from([0xef]))))).toHaveLength(1);
  });

  it('reports invalid UTF-8, bad JSON, duplicate keys and overlong lines by row, and reads on', async () => {
    const overlong = `{"rewardId":"${'x'.repeat(MAX_LINE_BYTES + 10)}","uid":"u","amount":1}`;
    const records = await collect(
      readJsonLines(
        chunks(
          Buffer.concat([
            Buffer.from('{"rewardId":"r1","uid":"'),
            Buffer.from([0xc3, 0x28]),
            Buffer.from('","amount":1}\n'),
          ]),
          '{"rewardId": "r2", "uid": "u2", amount: 1}\n',
          '{"rewardId":"r3","uid":"u3","amount":1,"amount":1000}\n',
          `${overlong}\n`,
          '{"rewardId":"r5","uid":"u5","amount":5}\n',
        ),
      ),
    );
    expect(records.map((r) => [r.row, r.error?.reason.slice(0, 22) ?? 'ok'])).toEqual([
      [1, 'is not valid UTF-8 (sa'],
      [2, 'is not valid JSON: exp'],
      [3, 'is not valid JSON: key'],
      [4, `line is longer than ${MAX_LINE_BYTES}`.slice(0, 22)],
      [5, 'ok'],
    ]);
  });
});

describe('readCsv', () => {
  it('reads the header and RFC 4180 quoting, with rows numbered by starting line', async () => {
    const csv =
      'rewardId,uid,amount,description\r\nr1,u1,100,"活动奖励"\nr2,u2,200,"says ""hi"", twice"\nr3,u3,300,"two\nlines"\nr4,u4,400,\n';
    const records = await collect(readCsv(chunks(csv)));
    expect(records.map((r) => r.row)).toEqual([2, 3, 4, 6]);
    expect(records.map((r) => (r.value as Record<string, string>)['description'])).toEqual([
      '活动奖励',
      'says "hi", twice',
      'two\nlines',
      undefined,
    ]);
    expect(validateReward(records[0]!.value, 2)).toMatchObject({ ok: true, reward: { amount: 100n } });
  });

  it('accepts a header without the description column', async () => {
    const records = await collect(readCsv(chunks('rewardId,uid,amount\nr1,u1,5\n')));
    expect(records[0]!.value).toEqual({ rewardId: 'r1', uid: 'u1', amount: '5' });
  });

  it('refuses a wrong or missing header', async () => {
    await expect(collect(readCsv(chunks('id,user,amount\nr1,u1,5\n')))).rejects.toBeInstanceOf(CsvHeaderError);
    await expect(collect(readCsv(chunks('')))).rejects.toBeInstanceOf(CsvHeaderError);
  });

  it('reports wrong field counts, stray quotes and unterminated quotes by row', async () => {
    const records = await collect(
      readCsv(
        chunks(
          'rewardId,uid,amount,description\nr1,u1\nr2,u2,5,x,extra\nr3,u"3,5,\nr4,"u4"x,5,\nr5,u5,5,"never closed\n',
        ),
      ),
    );
    expect(records.map((r) => [r.row, r.error?.reason.split(' ').slice(0, 3).join(' ')])).toEqual([
      [2, 'has 2 fields;'],
      [3, 'has 5 fields;'],
      [4, 'has a quote'],
      [5, 'has text after'],
      [6, 'has a quoted'],
    ]);
  });
});

describe('validateReward', () => {
  it('accepts the contract shape and keeps money exact', () => {
    expect(validateReward({ rewardId: 'r', uid: 'u', amount: '9007199254740991' }, 1)).toEqual({
      ok: true,
      reward: { rewardId: 'r', uid: 'u', amount: 9007199254740991n, description: null },
    });
  });

  it.each([
    [{ uid: 'u', amount: 1 }, 'rewardId', /missing/],
    [{ rewardId: '', uid: 'u', amount: 1 }, 'rewardId', /empty/],
    [{ rewardId: 'x'.repeat(129), uid: 'u', amount: 1 }, 'rewardId', /129 characters/],
    [{ rewardId: 'r', uid: 'u'.repeat(129), amount: 1 }, 'uid', /at most 128/],
    [{ rewardId: 'r', uid: 7, amount: 1 }, 'uid', /string/],
    [{ rewardId: 'r', uid: ' u', amount: 1 }, 'uid', /white space/],
    [{ rewardId: 'r\u0000', uid: 'u', amount: 1 }, 'rewardId', /control/],
    [{ rewardId: 'r', uid: '\ud800', amount: 1 }, 'uid', /Unicode/],
    [{ rewardId: 'r', uid: 'u' }, 'amount', /missing/],
    [{ rewardId: 'r', uid: 'u', amount: 1, description: 'd'.repeat(501) }, 'description', /at most 500/],
    [{ rewardId: 'r', uid: 'u', amount: 1, description: 5 }, 'description', /string/],
    [{ rewardId: 'r', uid: 'u', amount: 1, amout: 1 }, 'amout', /not a reward field/],
  ])('refuses %o in field %s', (raw, field, pattern) => {
    const check = validateReward(raw, 7);
    expect(check.ok).toBe(false);
    if (!check.ok) {
      const error = check.errors.find((e) => e.field === field);
      expect(error, JSON.stringify(check.errors)).toBeDefined();
      expect(error!.row).toBe(7);
      expect(error!.reason).toMatch(pattern);
    }
  });

  it('counts characters, not UTF-16 units: 128 emoji are fine', () => {
    expect(validateReward({ rewardId: '🎁'.repeat(128), uid: 'u', amount: 1 }, 1).ok).toBe(true);
  });

  it('reports every problem of a row', () => {
    const check = validateReward({ rewardId: '', uid: '', amount: '1.5' }, 3);
    expect(check.ok ? [] : check.errors.map((e) => e.field)).toEqual(['rewardId', 'uid', 'amount']);
  });

  it('refuses rows that are not objects', () => {
    for (const raw of [null, 5, 'x', [1]]) expect(validateReward(raw, 1).ok).toBe(false);
  });

  it('gives every error a stable code, names three unknown fields and counts the others, and shortens long field names', () => {
    const raw: Record<string, unknown> = { rewardId: 'r', uid: 'u', amount: 1 };
    for (let n = 0; n < 10_000; n += 1) raw[`${'k'.repeat(100)}${n}`] = n;
    const check = validateReward(raw, 4);
    expect(check.ok).toBe(false);
    if (!check.ok) {
      expect(check.errors).toHaveLength(4);
      expect(check.errors.map((e) => e.code)).toEqual([
        'unknown_field',
        'unknown_field',
        'unknown_field',
        'unknown_field',
      ]);
      expect(check.errors[0]!.field).toBe(`${'k'.repeat(64)}…`);
      expect(check.errors[3]).toEqual({
        row: 4,
        field: 'row',
        code: 'unknown_field',
        reason: 'has 9997 more fields that are not reward fields',
      });
    }
    const bad = validateReward({ rewardId: ' r', uid: 'u'.repeat(129), amount: '1e2', description: 'd\u0000' }, 1);
    expect(bad.ok ? [] : bad.errors.map((e) => [e.field, e.code])).toEqual([
      ['rewardId', 'surrounding_space'],
      ['uid', 'id_too_long'],
      ['amount', 'amount_exponent'],
      ['description', 'nul_character'],
    ]);
    if (!bad.ok) for (const error of bad.errors) expect(ROW_PROBLEMS[error.code]).toBeTypeOf('string');
  });
});

describe('RowErrorReport', () => {
  it('keeps the first 1,000 errors by row whatever order they come in, and counts all of them', () => {
    const report = new RowErrorReport();
    for (let row = 100_000; row > 0; row -= 1)
      report.addRow([{ row, field: 'amount', code: 'amount_zero', reason: 'must be greater than zero' }]);
    report.addRow([
      { row: 7, field: 'uid', code: 'empty', reason: 'is empty' },
      { row: 7, field: 'rewardId', code: 'missing', reason: 'is missing' },
    ]);
    report.addCounted('rewardId', 'repeated_reward_id', 5);
    const summary = report.summarize();
    expect(summary.errors).toHaveLength(LISTED_ERRORS);
    expect(summary.errors.slice(6, 10).map((e) => [e.row, e.field])).toEqual([
      [7, 'amount'],
      [7, 'uid'],
      [7, 'rewardId'],
      [8, 'amount'],
    ]);
    expect(summary.errors.at(-1)!.row).toBe(998);
    expect(summary).toMatchObject({ totalErrors: 100_007, badRows: 100_006 });
    expect(summary.summary.map((group) => [group.field, group.code, group.count])).toEqual([
      ['amount', 'amount_zero', 100_000],
      ['rewardId', 'repeated_reward_id', 5],
      ['rewardId', 'missing', 1],
      ['uid', 'empty', 1],
    ]);
  });

  it('keeps 100 groups apart; the fields of later groups are counted under "*"', () => {
    const report = new RowErrorReport();
    for (let n = 1; n <= 250; n += 1)
      report.addRow([{ row: n, field: `stray-${n}`, code: 'unknown_field', reason: 'is not a reward field' }]);
    const { summary } = report.summarize();
    expect(summary).toHaveLength(101);
    expect(summary[0]).toEqual({ field: '*', code: 'unknown_field', reason: 'is not a reward field', count: 150 });
  });
});
