import { Queue, type JobsOptions } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import type { RewardJobData } from './job-data.js';
import { deadLetterQueueName, eventsQueueName, shardQueueName } from './queue-names.js';
import type { QueueSettings } from './queue-settings.js';

export type { QueueSettings } from './queue-settings.js';

/** Options every shard job gets: attempts with exponential backoff; finished jobs are trimmed (PostgreSQL keeps the record). */
export function shardJobOptions(settings: QueueSettings): JobsOptions {
  return {
    attempts: settings.jobAttempts,
    backoff: { type: 'exponential', delay: settings.jobBackoffMs },
    removeOnComplete: { age: 24 * 3600, count: 10_000 },
    removeOnFail: { age: 7 * 24 * 3600 },
  };
}

/**
 * BullMQ 6 re-emits the shared connection's errors on every queue, and prints them raw (console.error) from a queue
 * without an error listener. The connection's own listener logs them already (src/services/redis-connection.ts), once.
 */
function ignoringRepeatedConnectionErrors<Q extends Queue>(queue: Q): Q {
  queue.on('error', () => undefined);
  return queue;
}

/**
 * The shard queues and the dead-letter queue of one prefix, opened lazily over one shared connection.
 */
export class WindfallQueues {
  private readonly shardQueues = new Map<number, Queue<RewardJobData>>();
  private deadLetterQueue: Queue | undefined;
  private eventsQueue: Queue | undefined;
  private closed = false;

  constructor(
    readonly connection: Redis | Cluster,
    readonly settings: QueueSettings,
  ) {}

  /** The queue of shard `shard`. */
  shard(shard: number): Queue<RewardJobData> {
    if (!Number.isInteger(shard) || shard < 0) throw new RangeError(`no shard ${shard}`);
    let queue = this.shardQueues.get(shard);
    if (!queue) {
      queue = ignoringRepeatedConnectionErrors(
        new Queue<RewardJobData>(shardQueueName(shard, this.settings.cluster), {
          connection: this.connection,
          prefix: this.settings.prefix,
          defaultJobOptions: shardJobOptions(this.settings),
        }),
      );
      this.shardQueues.set(shard, queue);
    }
    return queue;
  }

  /** The dead-letter queue (a mirror of the `dead_letters` table for dashboards; it has no worker). */
  deadLetters(): Queue {
    this.deadLetterQueue ??= ignoringRepeatedConnectionErrors(
      new Queue(deadLetterQueueName(this.settings.cluster), {
        connection: this.connection,
        prefix: this.settings.prefix,
        defaultJobOptions: { removeOnComplete: true, removeOnFail: true },
      }),
    );
    return this.deadLetterQueue;
  }

  /** The queue of webhook deliveries: one job per batch event, its id derived from the event's (see `src/events/`). */
  events(): Queue {
    this.eventsQueue ??= ignoringRepeatedConnectionErrors(
      new Queue(eventsQueueName(this.settings.cluster), { connection: this.connection, prefix: this.settings.prefix }),
    );
    return this.eventsQueue;
  }

  /** Every shard queue, the dead-letter queue, then the events queue, with their display names. */
  all(): { readonly name: string; readonly queue: Queue }[] {
    const queues: { name: string; queue: Queue }[] = [];
    for (let shard = 0; shard < this.settings.shards; shard += 1) {
      queues.push({ name: `shard-${shard}`, queue: this.shard(shard) });
    }
    queues.push({ name: 'dead-letter', queue: this.deadLetters() });
    queues.push({ name: 'events', queue: this.events() });
    return queues;
  }

  /** Closes every opened queue (not the shared connection). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const queues: Queue[] = [...(this.shardQueues.values() as Iterable<Queue>)];
    if (this.deadLetterQueue) queues.push(this.deadLetterQueue);
    if (this.eventsQueue) queues.push(this.eventsQueue);
    await Promise.allSettled(queues.map((queue) => queue.close()));
  }
}
