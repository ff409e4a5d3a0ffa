import type { WindfallConfig } from '../config/config.js';

/** Where the queues live. */
export interface QueueSettings {
  /** Key prefix (BullMQ's `prefix`). */
  readonly prefix: string;
  readonly shards: number;
  /** Hash-tag queue names for Redis Cluster. */
  readonly cluster: boolean;
  /** Attempts of a shard job. */
  readonly jobAttempts: number;
  /** First retry delay of a shard job (exponential). */
  readonly jobBackoffMs: number;
}

/** The queue settings of a configuration. */
export function queueSettingsOf(config: WindfallConfig): QueueSettings {
  return {
    prefix: config.prefix,
    shards: config.shards,
    cluster: config.redisCluster,
    jobAttempts: config.jobAttempts,
    jobBackoffMs: config.jobBackoffMs,
  };
}
