import { InvalidArgumentError } from 'commander';

/**
 * A commander argument parser for a whole number of at least `min` (default 1); anything else is refused with
 * "`name` must be a whole number ≥ `min`" (exit 2).
 */
export function wholeNumber(name: string, min = 1): (value: string) => number {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < min)
      throw new InvalidArgumentError(`${name} must be a whole number ≥ ${min}`);
    return Number(value);
  };
}
