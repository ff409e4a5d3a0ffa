const encoder = new TextEncoder();

/**
 * The shard of a user: FNV-1a (32 bit) of the uid's UTF-8 bytes, modulo `shards`. Stable across processes,
 * hosts and versions: a user always maps to the same shard for a given shard count.
 */
export function shardOf(uid: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (const byte of encoder.encode(uid)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % shards;
}
