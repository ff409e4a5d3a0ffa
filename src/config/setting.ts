import { ConfigError } from './config-error.js';
import {
  checkHostPorts,
  parseBoolean,
  parseHostPortList,
  parseTrustProxy,
  parseUrl,
  type TrustProxy,
} from './env-values.js';

/**
 * One setting as Windfall declares it: its environment variable, default, what it accepts and what it means. The
 * configuration's type and defaults, the known variables, the parser, the checks of overrides and
 * `docs/configuration.md` are all derived from these declarations (`settings.ts`).
 */
export interface Setting<T> {
  /** The environment variable, e.g. `WINDFALL_SHARDS`. */
  readonly env: string;
  /** The value when the variable is unset or empty. */
  readonly default: T;
  /** What it accepts, in words (`a whole number from 1 to 1024`): quoted by its errors and the docs. */
  readonly allowed: string;
  /** Unit of a number (`ms`, `bytes`, `rewards`, …); absent for text, switches and plain counts. */
  readonly unit?: string;
  /** What it does: one paragraph of Markdown, the docs' meaning column. */
  readonly meaning: string;
  /** The CLI flag that sets it instead (it wins), when there is one: `--prefix` (every command), `windfall worker --concurrency`. */
  readonly flag?: string;
  /** The value of the variable's text (not empty); throws {@link ConfigError} naming the variable. */
  readonly parse: (raw: string) => T;
  /**
   * The value given in code for this setting (an override), checked as the variable is; throws
   * {@link ConfigError} naming `name`.
   */
  readonly check: (name: string, value: unknown) => T;
}

/** How values of one kind are read from text and checked. */
export interface SettingKind<T> {
  /** What the kind accepts, in words. */
  readonly allowed: string;
  /** Reads the variable's text; throws {@link ConfigError} naming `variable`. */
  readonly read: (variable: string, raw: string) => T;
  /** Checks a value given in code; throws {@link ConfigError} naming `name`. */
  readonly check: (name: string, value: unknown) => T;
}

/** What a declaration says besides its kind. */
export interface SettingDescription<T> {
  readonly env: string;
  readonly default: T;
  readonly meaning: string;
  readonly unit?: string;
  readonly flag?: string;
}

/** Declares a setting of `kind`. */
export function setting<T>(kind: SettingKind<T>, description: SettingDescription<NoInfer<T>>): Setting<T> {
  return Object.freeze({
    ...description,
    allowed: kind.allowed,
    parse: (raw: string) => kind.read(description.env, raw),
    check: kind.check,
  });
}

/** A value quoted in an error: numbers and booleans as they are, the rest as JSON (or its type). */
function quoted(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined) return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  return Array.isArray(value) ? 'a list' : typeof value;
}

/** A whole number in [min, max] (no maximum: any safe integer from min); no fractions, exponents or signs. */
export function wholeNumber(min: number, max?: number): SettingKind<number> {
  const allowed = max === undefined ? `a whole number of at least ${min}` : `a whole number from ${min} to ${max}`;
  const check = (name: string, value: unknown): number => {
    if (
      typeof value !== 'number' ||
      !Number.isSafeInteger(value) ||
      value < min ||
      (max !== undefined && value > max)
    ) {
      throw new ConfigError(name, `expected ${allowed}, got ${quoted(value)}`);
    }
    return value;
  };
  const read = (variable: string, raw: string): number => {
    const text = raw.trim();
    if (!/^-?\d+$/.test(text)) {
      throw new ConfigError(variable, `expected a whole number, got ${JSON.stringify(raw)}`);
    }
    return check(variable, Number(text));
  };
  return { allowed, read, check };
}

/** A finite decimal number in [min, max], written as digits with an optional fraction (`1.5`). */
export function decimal(min: number, max: number): SettingKind<number> {
  const allowed = `a number from ${min} to ${max}`;
  const check = (name: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
      throw new ConfigError(name, `expected ${allowed}, got ${quoted(value)}`);
    }
    return value;
  };
  const read = (variable: string, raw: string): number => {
    const text = raw.trim();
    if (!/^\d+(\.\d+)?$/.test(text)) {
      throw new ConfigError(variable, `expected a number such as 1.5, got ${JSON.stringify(raw)}`);
    }
    return check(variable, Number(text));
  };
  return { allowed, read, check };
}

/** A URL with one of `schemes` (`redis:`); errors never quote it (it may hold a password). */
export function url(schemes: readonly string[]): SettingKind<string> {
  const allowed = `a URL starting ${schemes.map((scheme) => `${scheme}//`).join(' or ')}`;
  const check = (name: string, value: unknown): string => {
    if (typeof value !== 'string') throw new ConfigError(name, `expected ${allowed}, got ${typeof value}`);
    return parseUrl(name, value, schemes);
  };
  return { allowed, read: check, check };
}

/** A switch: true/false, 1/0, yes/no or on/off. */
export function onOff(): SettingKind<boolean> {
  const allowed = 'true or false (also 1/0, yes/no, on/off)';
  const check = (name: string, value: unknown): boolean => {
    if (typeof value !== 'boolean') throw new ConfigError(name, `expected true or false, got ${quoted(value)}`);
    return value;
  };
  return { allowed, read: parseBoolean, check };
}

/**
 * `host:port` pairs separated by commas (IPv6 hosts in brackets). With `atLeastOne`, a variable that is set must
 * name one; a list given in code may still be empty (none).
 */
export function hostPorts(options: { atLeastOne: boolean }): SettingKind<readonly string[]> {
  const allowed = 'host:port pairs separated by commas (IPv6 hosts in brackets)';
  const read = (variable: string, raw: string): readonly string[] => {
    const nodes = parseHostPortList(variable, raw);
    if (options.atLeastOne && nodes.length === 0) {
      throw new ConfigError(variable, 'expected host:port pairs separated by commas, got none');
    }
    return nodes;
  };
  const check = (name: string, value: unknown): readonly string[] => {
    if (!Array.isArray(value) || !value.every((node) => typeof node === 'string')) {
      throw new ConfigError(name, `expected a list of host:port strings, got ${quoted(value)}`);
    }
    return checkHostPorts(name, value);
  };
  return { allowed, read, check };
}

/** Text matching `pattern`, described by `allowed`. */
export function matching(pattern: RegExp, allowed: string): SettingKind<string> {
  const check = (name: string, value: unknown): string => {
    if (typeof value !== 'string' || !pattern.test(value)) {
      throw new ConfigError(name, `expected ${allowed}, got ${quoted(value)}`);
    }
    return value;
  };
  return { allowed, read: check, check };
}

/** One of `values`. */
export function oneOf<T extends string>(values: readonly T[]): SettingKind<T> {
  const allowed = `one of ${values.join(', ')}`;
  const check = (name: string, value: unknown): T => {
    if (!(values as readonly unknown[]).includes(value)) {
      throw new ConfigError(name, `expected ${allowed}, got ${quoted(value)}`);
    }
    return value as T;
  };
  return { allowed, read: check, check };
}

/**
 * Secret text (a token, a password, a key), never quoted in errors; at least `minLength` characters, `advice`
 * appended to the error of a shorter one.
 */
export function secret(minLength = 1, advice = ''): SettingKind<string> {
  const allowed = minLength > 1 ? `text of at least ${minLength} characters` : 'text';
  const check = (name: string, value: unknown): string => {
    if (typeof value !== 'string') throw new ConfigError(name, `expected text, got ${typeof value}`);
    if (value.length < minLength) {
      throw new ConfigError(name, `is ${value.length} characters long; it needs at least ${minLength}${advice}`);
    }
    return value;
  };
  return { allowed, read: check, check };
}

/** `kind`, or nothing (`undefined`): a variable that may be left unset. */
export function optional<T>(kind: SettingKind<T>): SettingKind<T | undefined> {
  return {
    allowed: kind.allowed,
    read: kind.read,
    check: (name, value) => (value === undefined ? undefined : kind.check(name, value)),
  };
}

/** Which proxies' `X-Forwarded-For` is believed: `false`, `true`, or addresses and CIDR ranges. */
export function trustedProxies(): SettingKind<TrustProxy> {
  const allowed =
    "false, true, or the proxies' addresses and CIDR ranges separated by commas (also loopback, linklocal, uniquelocal)";
  const check = (name: string, value: unknown): TrustProxy => {
    if (typeof value === 'boolean') return value;
    if (!Array.isArray(value) || !value.every((entry) => typeof entry === 'string')) {
      throw new ConfigError(name, `expected ${allowed}, got ${quoted(value)}`);
    }
    return parseTrustProxy(name, value.join(','));
  };
  return { allowed, read: parseTrustProxy, check };
}
