import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/config-error.js';
import { DEFAULT_CONFIG, loadConfig, unknownSettings, type WindfallConfig } from '../../src/config/config.js';
import { parseShardList } from '../../src/config/env-values.js';
import { SETTINGS } from '../../src/config/settings.js';
import { REWARD_POLICY } from '../../src/lock/lock-policy.js';

describe('loadConfig', () => {
  it('uses the contract defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      redisUrl: 'redis://127.0.0.1:6379',
      databaseUrl: 'postgres://postgres@127.0.0.1:5432/windfall',
      prefix: 'windfall',
      shards: 8,
      concurrency: 4,
      usersPerTransaction: 128,
      jobAttempts: 3,
      logLevel: 'info',
      apiToken: undefined,
      adminToken: undefined,
    });
    expect(config.rewardLockPolicy).toEqual(REWARD_POLICY);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('reads every variable', () => {
    const config = loadConfig({
      REDIS_URL: 'redis://redis.internal:6380',
      DATABASE_URL: 'postgresql://app:secret@db:5432/ledger',
      WINDFALL_PREFIX: 'campaign-a',
      WINDFALL_SHARDS: '16',
      WINDFALL_CONCURRENCY: '6',
      WINDFALL_USERS_PER_TRANSACTION: '16',
      WINDFALL_JOB_ATTEMPTS: '5',
      WINDFALL_REWARD_LOCK_RETRIES: '2',
      WINDFALL_REWARD_LOCK_DELAY_MS: '50',
      WINDFALL_REWARD_LOCK_FACTOR: '2',
      WINDFALL_REWARD_LOCK_TTL_MS: '1000',
      WINDFALL_API_TOKEN: 'api',
      WINDFALL_ADMIN_TOKEN: 'admin',
      LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      prefix: 'campaign-a',
      shards: 16,
      concurrency: 6,
      usersPerTransaction: 16,
      jobAttempts: 5,
      apiToken: 'api',
      adminToken: 'admin',
      logLevel: 'debug',
    });
    expect(config.rewardLockPolicy).toEqual({ name: 'reward', retries: 2, initialDelayMs: 50, factor: 2, ttlMs: 1000 });
  });

  it('lets overrides (CLI flags) win over the environment', () => {
    expect(loadConfig({ WINDFALL_CONCURRENCY: '4' }, { concurrency: 2 }).concurrency).toBe(2);
  });

  it.each([
    [{ concurrency: 5000 }, /^concurrency: expected a whole number from 1 to 1024, got 5000$/],
    [{ shards: 0 }, /^shards: expected a whole number from 1 to 1024, got 0$/],
    [{ chunkSize: 2.5 }, /^chunkSize: expected a whole number from 1 to 100000, got 2.5$/],
    [{ redisSilenceMs: 1000 }, /^redisSilenceMs: expected a whole number from 12000 to 3600000, got 1000$/],
    [{ prefix: 'has:colon' }, /^prefix: expected 1-64 characters .*, got "has:colon"$/],
    [{ logLevel: 'verbose' }, /^logLevel: expected one of fatal, .*, got "verbose"$/],
    [{ redisClusterNodes: ['node-2'] }, /^redisClusterNodes: expected host:port pairs/],
    [
      { rewardLockPolicy: { ...REWARD_POLICY, factor: 0.5 } },
      /^rewardLockPolicy\.factor: expected a number from 1 to 10/,
    ],
    [
      { rewardLockPolicy: { ...REWARD_POLICY, ttlMs: 10 } },
      /^rewardLockPolicy\.ttlMs: expected a whole number from 100/,
    ],
    [{ webhookSecret: 'short' }, /^webhookSecret: is 5 characters long; it needs at least 32/],
    [
      { webhookUrl: 'https://hooks.example/w' },
      /^WINDFALL_WEBHOOK_SECRET: is required when WINDFALL_WEBHOOK_URL is set/,
    ],
    [
      { redisSentinels: ['s:26379'], redisCluster: true },
      /^REDIS_SENTINELS: cannot be used with WINDFALL_REDIS_CLUSTER=true/,
    ],
    [{ shard: 3 }, /^shard: is not a setting; the settings are redisUrl, /],
  ])('checks the override %j as its variable is', (overrides, message) => {
    expect(() => loadConfig({}, overrides as Partial<WindfallConfig>)).toThrow(ConfigError);
    expect(() => loadConfig({}, overrides as Partial<WindfallConfig>)).toThrow(message);
  });

  it('never echoes an overridden URL or secret in its errors', () => {
    for (const overrides of [{ databaseUrl: 'mysql://u:hunter2@db/x' }, { webhookSecret: 'hunter2' }]) {
      expect(() => loadConfig({}, overrides)).toThrow(ConfigError);
      expect(() => loadConfig({}, overrides)).not.toThrow(/hunter2/);
    }
  });

  it('accepts overrides within range and keeps their values', () => {
    const policy = { name: 'reward', retries: 0, initialDelayMs: 10, factor: 1, ttlMs: 5000 };
    const config = loadConfig(
      {},
      { concurrency: 1024, recoveryIntervalMs: 0, rewardLockPolicy: policy, trustProxy: ['10.0.0.0/8'] },
    );
    expect(config).toMatchObject({ concurrency: 1024, recoveryIntervalMs: 0, trustProxy: ['10.0.0.0/8'] });
    expect(config.rewardLockPolicy).toEqual(policy);
  });

  it.each([
    ['WINDFALL_SHARDS', 'eight'],
    ['WINDFALL_SHARDS', '0'],
    ['WINDFALL_SHARDS', '-1'],
    ['WINDFALL_SHARDS', '2.5'],
    ['WINDFALL_CONCURRENCY', '-3'],
    ['WINDFALL_CONCURRENCY', ''],
    ['WINDFALL_USERS_PER_TRANSACTION', '0'],
    ['WINDFALL_USERS_PER_TRANSACTION', '1001'],
    ['WINDFALL_USERS_PER_TRANSACTION', 'many'],
    ['WINDFALL_JOB_ATTEMPTS', '1e3'],
    ['WINDFALL_REWARD_LOCK_RETRIES', '-1'],
    ['WINDFALL_REWARD_LOCK_DELAY_MS', 'NaN'],
    ['WINDFALL_REWARD_LOCK_FACTOR', 'fast'],
    ['WINDFALL_REWARD_LOCK_FACTOR', '0.5'],
    ['WINDFALL_REWARD_LOCK_TTL_MS', '10'],
    ['REDIS_URL', 'localhost:6379'],
    ['REDIS_SENTINELS', 'sentinel-1'],
    ['REDIS_SENTINELS', 'sentinel-1:26379,sentinel-2'],
    ['REDIS_SENTINELS', 'redis://sentinel-1:26379'],
    ['REDIS_SENTINELS', 'sentinel-1:0'],
    ['REDIS_SENTINELS', ' , '],
    ['REDIS_SENTINEL_NAME', 'my master'],
    ['DATABASE_URL', 'mysql://db/x'],
    ['WINDFALL_PREFIX', 'has:colon'],
    ['LOG_LEVEL', 'verbose'],
    ['WINDFALL_WEBHOOK_SECRET', 'shorter-than-32-characters'],
    ['WINDFALL_TRUST_PROXY', 'sometimes'],
    ['WINDFALL_TRUST_PROXY', '2'],
    ['WINDFALL_TRUST_PROXY', '10.0.0.0/33'],
    ['WINDFALL_TRUST_PROXY', '127.0.0.1,proxy.example'],
  ])('refuses %s=%j naming the variable', (variable, value) => {
    const env = { [variable]: value };
    if (value === '') {
      // an empty value means "unset": the default applies
      expect(() => loadConfig(env)).not.toThrow();
      return;
    }
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(new RegExp(`^${variable}: `));
  });

  it('never echoes a connection URL (it may hold a password) in its errors', () => {
    expect(() => loadConfig({ DATABASE_URL: 'mysql://u:hunter2@db/x' })).toThrow(/^DATABASE_URL: /);
    try {
      loadConfig({ DATABASE_URL: 'mysql://u:hunter2@db/x' });
    } catch (error) {
      expect((error as Error).message).not.toContain('hunter2');
    }
  });

  it('needs a webhook secret of at least 32 characters, and never echoes it', () => {
    const secret = 'x'.repeat(31);
    expect(() => loadConfig({ WINDFALL_WEBHOOK_SECRET: secret })).toThrow(
      /^WINDFALL_WEBHOOK_SECRET: is 31 characters long; it needs at least 32/,
    );
    try {
      loadConfig({ WINDFALL_WEBHOOK_SECRET: secret });
    } catch (error) {
      expect((error as Error).message).not.toContain(secret);
    }
    expect(loadConfig({ WINDFALL_WEBHOOK_SECRET: 'y'.repeat(32) }).webhookSecret).toBe('y'.repeat(32));
  });

  it('trusts no proxy by default; WINDFALL_TRUST_PROXY names them, or trusts every one', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ WINDFALL_TRUST_PROXY: 'false' }).trustProxy).toBe(false);
    expect(loadConfig({ WINDFALL_TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(loadConfig({ WINDFALL_TRUST_PROXY: '127.0.0.1, 10.0.0.0/8,::1,fd00::/8,Loopback' }).trustProxy).toEqual([
      '127.0.0.1',
      '10.0.0.0/8',
      '::1',
      'fd00::/8',
      'loopback',
    ]);
  });

  it('reads the Sentinel settings; REDIS_URL then keeps its credentials and db for the data nodes', () => {
    expect(loadConfig({})).toMatchObject({
      redisSentinels: [],
      redisSentinelName: 'mymaster',
      redisSentinelPassword: undefined,
    });
    const config = loadConfig({
      REDIS_URL: 'rediss://app:node-secret@ignored-host:1/3',
      REDIS_SENTINELS: ' sentinel-1:26379, 10.0.0.7:26380 ,[::1]:26381,redis_sentinel_2:5000',
      REDIS_SENTINEL_NAME: 'rewards-primary',
      REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
    });
    expect(config).toMatchObject({
      redisUrl: 'rediss://app:node-secret@ignored-host:1/3',
      redisSentinels: ['sentinel-1:26379', '10.0.0.7:26380', '[::1]:26381', 'redis_sentinel_2:5000'],
      redisSentinelName: 'rewards-primary',
      redisSentinelPassword: 'sentinel-secret',
    });
  });

  it('refuses REDIS_SENTINELS with WINDFALL_REDIS_CLUSTER=true, and never echoes the sentinel password', () => {
    expect(() => loadConfig({ REDIS_SENTINELS: 's:26379', WINDFALL_REDIS_CLUSTER: 'true' })).toThrow(
      /^REDIS_SENTINELS: cannot be used with WINDFALL_REDIS_CLUSTER=true/,
    );
    try {
      loadConfig({ REDIS_SENTINELS: 'hunter2', REDIS_SENTINEL_PASSWORD: 'hunter2-secret' });
      expect.unreachable();
    } catch (error) {
      expect((error as Error).message).toMatch(/^REDIS_SENTINELS: expected host:port pairs/);
      expect((error as Error).message).not.toContain('hunter2-secret');
    }
  });

  it('reports unknown WINDFALL_ variables (likely typos)', () => {
    expect(unknownSettings({ WINDFALL_SHARD: '3', WINDFALL_SHARDS: '3', HOME: '/root' })).toEqual(['WINDFALL_SHARD']);
  });

  it('has defaults that satisfy its own type', () => {
    expect(DEFAULT_CONFIG.shards).toBe(8);
  });

  it('declares each variable once, with a default its own check accepts', () => {
    const names = Object.values(SETTINGS).map((setting) => setting.env);
    expect(new Set(names).size).toBe(names.length);
    for (const [name, setting] of Object.entries(SETTINGS)) {
      expect(setting.check(name, setting.default), name).toEqual(setting.default);
    }
    expect(unknownSettings(Object.fromEntries(names.map((name) => [name, '1'])))).toEqual([]);
  });

  it('reads the declared defaults when nothing is set', () => {
    expect(loadConfig({})).toEqual(DEFAULT_CONFIG);
  });
});

describe('parseShardList', () => {
  it('reads ranges and single shards, sorted and unique', () => {
    expect(parseShardList('--shards', '0-3,6', 8)).toEqual([0, 1, 2, 3, 6]);
    expect(parseShardList('--shards', '5,1,1-2', 8)).toEqual([1, 2, 5]);
  });

  it.each(['8', '0-8', 'a', '3-1', '', '1,,2'])('refuses %j with 8 shards', (list) => {
    expect(() => parseShardList('--shards', list, 8)).toThrow(/^--shards: /);
  });
});
