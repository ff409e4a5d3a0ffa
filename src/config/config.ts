import type { LockPolicy } from '../lock/lock-policy.js';
import { REWARD_POLICY } from '../lock/lock-policy.js';
import { ConfigError } from './config-error.js';
import type { Setting } from './setting.js';
import { SETTINGS, type SettingName } from './settings.js';

export { MIN_WEBHOOK_SECRET_LENGTH } from './settings.js';

/** The value type of a declared setting. */
type ValueOf<S> = S extends Setting<infer T> ? T : never;

/** One value per declared setting. */
type SettingValues = { readonly [K in SettingName]: ValueOf<(typeof SETTINGS)[K]> };

/** The settings that make up {@link WindfallConfig.rewardLockPolicy}, by the policy's field. */
const LOCK_SETTINGS = {
  retries: 'rewardLockRetries',
  initialDelayMs: 'rewardLockDelayMs',
  factor: 'rewardLockFactor',
  ttlMs: 'rewardLockTtlMs',
} as const satisfies Record<Exclude<keyof LockPolicy, 'name'>, SettingName>;

type LockSettingName = (typeof LOCK_SETTINGS)[keyof typeof LOCK_SETTINGS];

/**
 * Windfall's resolved configuration: read once, validated, frozen. One field per setting of {@link SETTINGS} (its
 * variable, default, range and meaning are declared there, and listed in `docs/configuration.md`), except the four
 * `WINDFALL_REWARD_LOCK_*` settings, which make up `rewardLockPolicy`.
 */
export interface WindfallConfig extends Omit<SettingValues, LockSettingName> {
  /**
   * The reward lock policy. Env `WINDFALL_REWARD_LOCK_RETRIES` / `_DELAY_MS` / `_FACTOR` / `_TTL_MS`; default
   * {@link REWARD_POLICY} (10 / 500 / 1.5 / 60000).
   */
  readonly rewardLockPolicy: LockPolicy;
}

type Env = Readonly<Record<string, string | undefined>>;

const NAMES = Object.keys(SETTINGS) as SettingName[];

/** One value per setting, computed by `value`. */
function eachSetting(value: (name: SettingName) => unknown): SettingValues {
  return Object.fromEntries(NAMES.map((name) => [name, value(name)])) as SettingValues;
}

/** The configuration of these values of the settings. */
function assemble(values: SettingValues): WindfallConfig {
  const config: Record<string, unknown> = { ...values };
  for (const name of Object.values(LOCK_SETTINGS)) delete config[name];
  const rewardLockPolicy: LockPolicy = Object.freeze({
    name: REWARD_POLICY.name,
    retries: values.rewardLockRetries,
    initialDelayMs: values.rewardLockDelayMs,
    factor: values.rewardLockFactor,
    ttlMs: values.rewardLockTtlMs,
  });
  return { ...(config as Omit<SettingValues, LockSettingName>), rewardLockPolicy };
}

/** Defaults of every setting, as the contract fixes them (each declared in {@link SETTINGS}). */
export const DEFAULT_CONFIG: WindfallConfig = Object.freeze(assemble(eachSetting((name) => SETTINGS[name].default)));

/** Every variable Windfall reads; {@link unknownSettings} reports other `WINDFALL_*` ones (likely typos). */
const KNOWN_VARIABLES: ReadonlySet<string> = new Set(NAMES.map((name) => SETTINGS[name].env));

/** Names of `WINDFALL_*` variables in `env` that Windfall does not read: worth a warning, as they are likely typos. */
export function unknownSettings(env: Env = process.env): string[] {
  return Object.keys(env).filter((name) => name.startsWith('WINDFALL_') && !KNOWN_VARIABLES.has(name));
}

/** `overrides` checked as their variables are; throws {@link ConfigError} naming the field at fault. */
function checkedOverrides(overrides: Partial<WindfallConfig>): Partial<WindfallConfig> {
  const checked: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(overrides)) {
    if (field === 'rewardLockPolicy') {
      const policy = value as LockPolicy;
      if (policy === null || typeof policy !== 'object') {
        throw new ConfigError(field, 'expected a lock policy {name, retries, initialDelayMs, factor, ttlMs}');
      }
      for (const [key, name] of Object.entries(LOCK_SETTINGS)) {
        SETTINGS[name].check(`${field}.${key}`, policy[key as keyof typeof LOCK_SETTINGS]);
      }
      checked[field] = Object.freeze({ ...policy });
    } else if (Object.hasOwn(SETTINGS, field) && !Object.hasOwn(LOCK_SETTINGS, field)) {
      checked[field] = SETTINGS[field as SettingName].check(field, value);
    } else {
      throw new ConfigError(field, `is not a setting; the settings are ${NAMES.join(', ')}`);
    }
  }
  return checked;
}

/** Checks what no single setting can: settings that need or exclude each other. */
function checkCombinations(config: WindfallConfig): void {
  if (config.webhookUrl !== undefined && config.webhookSecret === undefined) {
    throw new ConfigError(
      SETTINGS.webhookSecret.env,
      'is required when WINDFALL_WEBHOOK_URL is set: events are signed with it (Windfall-Signature). Set a long random secret shared with the receiver, or unset WINDFALL_WEBHOOK_URL to send no events',
    );
  }
  if (config.redisSentinels.length > 0 && config.redisCluster) {
    throw new ConfigError(
      SETTINGS.redisSentinels.env,
      'cannot be used with WINDFALL_REDIS_CLUSTER=true: a Redis Cluster fails over by itself, Sentinel watches a primary and its replicas. Set one of them',
    );
  }
}

/**
 * Reads the configuration from `env` (default `process.env`); values in `overrides` (CLI flags, code) win, checked as
 * the variables are. An unset or empty variable takes its default. Throws {@link ConfigError} naming the variable (or
 * the overridden field), the value (never a URL or secret) and what is allowed, on a malformed value: a non-number,
 * a count out of range, a bad URL.
 */
export function loadConfig(env: Env = process.env, overrides: Partial<WindfallConfig> = {}): WindfallConfig {
  const read = (name: SettingName): unknown => {
    const setting: Setting<unknown> = SETTINGS[name];
    const raw = env[setting.env];
    return raw === undefined || raw === '' ? setting.default : setting.parse(raw);
  };
  const config: WindfallConfig = Object.freeze({ ...assemble(eachSetting(read)), ...checkedOverrides(overrides) });
  checkCombinations(config);
  return config;
}
