import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonNumber, MAX_REWARD_AMOUNT, checkAmount } from '../../src/money/amount.js';
import { parseRawJson } from '../../src/rewards/raw-json.js';

const accepted = (input: unknown): bigint => {
  const check = checkAmount(input);
  if (!check.ok) throw new Error(`refused ${String(input)}: ${check.reason}`);
  return check.value;
};
const reason = (input: unknown): string => {
  const check = checkAmount(input);
  if (check.ok) throw new Error(`accepted ${String(input)}`);
  return check.reason;
};

describe('checkAmount', () => {
  it('accepts JSON integers, digit strings, safe integers and bigints', () => {
    expect(accepted(new JsonNumber('100'))).toBe(100n);
    expect(accepted('250')).toBe(250n);
    expect(accepted('007')).toBe(7n);
    expect(accepted(42)).toBe(42n);
    expect(accepted(9n)).toBe(9n);
    expect(accepted('9007199254740991')).toBe(MAX_REWARD_AMOUNT);
    expect(accepted(new JsonNumber('9007199254740991'))).toBe(MAX_REWARD_AMOUNT);
  });

  it.each([
    [new JsonNumber('1.5'), /fractions/],
    [new JsonNumber('100.0'), /fractions/],
    [new JsonNumber('1e2'), /exponents/],
    [new JsonNumber('1E+2'), /exponents/],
    [new JsonNumber('0'), /greater than zero/],
    [new JsonNumber('-5'), /positive/],
    [new JsonNumber('-0'), /positive|greater than zero/],
    [new JsonNumber('9007199254740992'), /at most 9007199254740991/],
    [new JsonNumber('99999999999999999999999'), /at most/],
    ['1.50', /fractions/],
    ['1e3', /exponents/],
    ['-3', /positive/],
    ['0', /greater than zero/],
    ['000', /greater than zero/],
    ['', /empty/],
    [' 5', /digits/],
    ['5 ', /digits/],
    ['+5', /digits/],
    ['0x10', /digits/],
    ['NaN', /whole number/],
    ['Infinity', /whole number/],
    ['12abc', /digits/],
    ['9007199254740992', /at most/],
    [1.5, /fractions/],
    [0, /greater than zero/],
    [-1, /positive/],
    [Number.NaN, /whole number/],
    [Number.POSITIVE_INFINITY, /whole number/],
    [2 ** 53, /at most/],
    [0n, /greater than zero/],
    [-4n, /positive/],
    [true, /whole number/],
    [null, /missing/],
    [undefined, /missing/],
    [{}, /whole number/],
    [[1], /whole number/],
  ])('refuses %o', (input, pattern) => {
    expect(reason(input)).toMatch(pattern);
  });

  it('never accepts a value other than the digits written (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: MAX_REWARD_AMOUNT }), (value) => {
        expect(accepted(value.toString())).toBe(value);
        expect(accepted(new JsonNumber(value.toString()))).toBe(value);
        const parsed = parseRawJson(`{"amount":${value}}`) as { amount: unknown };
        expect(accepted(parsed.amount)).toBe(value);
      }),
    );
  });

  it('refuses every string that is not plain digits (property)', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        const check = checkAmount(text);
        if (check.ok) {
          expect(text).toMatch(/^\d+$/);
          expect(check.value).toBe(BigInt(text));
          expect(check.value > 0n && check.value <= MAX_REWARD_AMOUNT).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses every float that is not a whole number (property)', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: false }), (value) => {
        const check = checkAmount(value);
        if (check.ok) {
          expect(Number.isSafeInteger(value) && value > 0).toBe(true);
          expect(check.value).toBe(BigInt(value));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
