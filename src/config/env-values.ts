import { ConfigError } from './config-error.js';

/** Parses a whole number in [min, max]; refuses fractions, signs where min ≥ 0, exponents and empty strings. */
export function parseInteger(variable: string, raw: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const text = raw.trim();
  if (!/^-?\d+$/.test(text)) {
    throw new ConfigError(variable, `expected a whole number, got ${JSON.stringify(raw)}`);
  }
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(variable, `expected a whole number from ${min} to ${max}, got ${text}`);
  }
  return value;
}

/** Parses a finite decimal number in [min, max]. */
export function parseDecimal(variable: string, raw: string, min: number, max: number): number {
  const text = raw.trim();
  if (!/^\d+(\.\d+)?$/.test(text)) {
    throw new ConfigError(variable, `expected a number such as 1.5, got ${JSON.stringify(raw)}`);
  }
  const value = Number(text);
  if (value < min || value > max) {
    throw new ConfigError(variable, `expected a number from ${min} to ${max}, got ${text}`);
  }
  return value;
}

/** Parses a URL with one of the given schemes; the error never echoes the URL (it may hold a password). */
export function parseUrl(variable: string, raw: string, schemes: readonly string[]): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new ConfigError(variable, `is not a valid URL (expected ${schemes.map((s) => `${s}//…`).join(' or ')})`);
  }
  if (!schemes.includes(url.protocol)) {
    throw new ConfigError(variable, `has scheme ${url.protocol}; expected ${schemes.join(' or ')}`);
  }
  return raw.trim();
}

/** Parses a boolean written as true/false, 1/0, yes/no or on/off. */
export function parseBoolean(variable: string, raw: string): boolean {
  const text = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(text)) return true;
  if (['0', 'false', 'no', 'off'].includes(text)) return false;
  throw new ConfigError(variable, `expected true or false, got ${JSON.stringify(raw)}`);
}

/**
 * Parses a shard list such as `0-3,6` into sorted unique shard numbers, each below `shards`.
 */
export function parseShardList(variable: string, raw: string, shards: number): number[] {
  const result = new Set<number>();
  for (const part of raw.split(',')) {
    const piece = part.trim();
    const range = /^(\d+)(?:-(\d+))?$/.exec(piece);
    if (!range) {
      throw new ConfigError(variable, `expected shard numbers and ranges such as 0-3,6; got ${JSON.stringify(raw)}`);
    }
    const from = Number(range[1]);
    const to = range[2] === undefined ? from : Number(range[2]);
    if (to < from) throw new ConfigError(variable, `range ${piece} runs backwards`);
    if (to >= shards) {
      throw new ConfigError(variable, `shard ${to} does not exist: there are ${shards} shards (0-${shards - 1})`);
    }
    for (let shard = from; shard <= to; shard += 1) result.add(shard);
  }
  return [...result].sort((a, b) => a - b);
}
