/** Name of the dead-letter queue; its Redis keys start with `<prefix>:dead-letter`. */
const DEAD_LETTER_QUEUE = 'dead-letter';

/**
 * Name of shard queue `shard` (its keys start with `<prefix>:shard-<n>`). On Redis Cluster the name is wrapped in a
 * hash tag, `{shard-<n>}`, so each queue's keys share a slot while different shards spread over the cluster.
 */
export function shardQueueName(shard: number, cluster = false): string {
  return cluster ? `{shard-${shard}}` : `shard-${shard}`;
}

/** Name of the dead-letter queue, hash-tagged on Redis Cluster. */
export function deadLetterQueueName(cluster = false): string {
  return cluster ? `{${DEAD_LETTER_QUEUE}}` : DEAD_LETTER_QUEUE;
}

/** Name of the queue of webhook deliveries (`<prefix>:events`), hash-tagged on Redis Cluster. */
export function eventsQueueName(cluster = false): string {
  return cluster ? '{events}' : 'events';
}
