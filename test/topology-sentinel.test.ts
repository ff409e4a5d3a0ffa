import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisSentinelSet, trackedProcesses, type RedisSentinelSet } from './support/topology.js';

let set: RedisSentinelSet;
beforeAll(async () => {
  set = await startRedisSentinelSet({ password: 'node-secret', sentinelPassword: 'sentinel-secret' });
});
afterAll(async () => {
  await set?.destroy();
});

describe('a Redis Sentinel set from the fault kit', () => {
  it('has a primary, a replica and three sentinels that agree on the primary', async () => {
    expect(set.nodes).toHaveLength(2);
    expect(set.sentinelPorts).toHaveLength(3);
    expect(set.sentinelList.split(',')).toHaveLength(3);
    expect((await set.primary()).port).toBe(set.nodes[0]!.port);
    expect(await set.nodeCli(set.nodes[1]!, ['role'])).toMatch(/^slave/);
    expect(trackedProcesses().filter((what) => what.startsWith('redis-server --sentinel'))).toHaveLength(3);
  });

  it('fails over when the primary is killed: a client through the sentinels writes to the new primary; what the old one acknowledged after replication was cut is gone', async () => {
    const client = new Redis({
      sentinels: set.sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
      name: set.masterName,
      sentinelPassword: 'sentinel-secret',
      password: 'node-secret',
      maxRetriesPerRequest: null,
      retryStrategy: () => 100,
    });
    client.on('error', () => undefined);
    try {
      await client.set('replicated', '1');
      // the replica has it before replication is cut
      expect(await client.wait(1, 5000)).toBe(1);
      await set.cutReplication();
      await client.set('acknowledged-only-by-the-old-primary', '1');
      const old = await set.killPrimary();
      expect(old.port).toBe(set.nodes[0]!.port);
      const promoted = await set.waitForNewPrimary(old.port);
      expect(promoted.port).toBe(set.nodes[1]!.port);
      expect(await set.nodeCli(promoted, ['role'])).toMatch(/^master/);

      // the same client finds the new primary through the sentinels and takes writes there
      await client.set('after-failover', '1');
      expect(await client.get('replicated')).toBe('1');
      expect(await client.get('acknowledged-only-by-the-old-primary')).toBeNull();
      expect(await set.nodeCli(promoted, ['get', 'after-failover'])).toContain('1');
    } finally {
      client.disconnect();
    }
  }, 90_000);
});
