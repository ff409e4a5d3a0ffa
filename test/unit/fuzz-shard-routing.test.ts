import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deadLetterQueueName, shardQueueName } from '../../src/queue/queue-names.js';
import { shardOf } from '../../src/queue/shard-routing.js';

/** FNV-1a, 32 bit, over UTF-8 bytes: an independent reference (Buffer, BigInt) for the routing function. */
function referenceShard(uid: string, shards: number): number {
  let hash = 0x811c9dc5n;
  for (const byte of Buffer.from(uid, 'utf8')) {
    hash ^= BigInt(byte);
    hash = (hash * 0x01000193n) & 0xffffffffn;
  }
  return Number(hash % BigInt(shards));
}

/** Redis Cluster's key slot: CRC16 (XMODEM) of the key, or of its first non-empty {hash tag}, mod 16384. */
function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of Buffer.from(key, 'utf8')) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

const uids = fc.string({ minLength: 1, maxLength: 128, unit: 'grapheme' });
const shardCounts = fc.integer({ min: 1, max: 1024 });

describe('shard routing (fuzz)', () => {
  it('is FNV-1a of the UTF-8 bytes mod shards, always in range', () => {
    fc.assert(
      fc.property(uids, shardCounts, (uid, shards) => {
        const shard = shardOf(uid, shards);
        expect(Number.isInteger(shard) && shard >= 0 && shard < shards).toBe(true);
        expect(shard).toBe(referenceShard(uid, shards));
      }),
      { numRuns: 5000 },
    );
    expect(shardOf('anything', 1)).toBe(0);
  });

  it('is stable: the same uid maps to the same shard on every call and in another process', () => {
    const sample = fc.sample(uids, { numRuns: 500, seed: 42 });
    const here = sample.map((uid) => shardOf(uid, 8));
    expect(sample.map((uid) => shardOf(uid, 8))).toEqual(here);
    const module = fileURLToPath(new URL('../../dist/src/queue/shard-routing.js', import.meta.url));
    const script = `import(${JSON.stringify(module)}).then((m) => { const uids = JSON.parse(require('fs').readFileSync(0, 'utf8')); process.stdout.write(JSON.stringify(uids.map((u) => m.shardOf(u, 8)))); })`;
    const there = JSON.parse(
      execFileSync(process.execPath, ['-e', script], { input: JSON.stringify(sample) }).toString(),
    ) as number[];
    expect(there).toEqual(here);
  });

  it('routes by bytes: case and Unicode-normalization variants are routed as the distinct uids they are', () => {
    // the routing works on bytes: "é" precomposed and decomposed are different users and may be on different shards,
    // but each always lands on its own shard; validation refuses leading/trailing white space before routing
    fc.assert(
      fc.property(uids, (uid) => {
        expect(shardOf(uid.normalize('NFD'), 1024)).toBe(referenceShard(uid.normalize('NFD'), 1024));
        expect(shardOf(uid.toUpperCase(), 64)).toBe(referenceShard(uid.toUpperCase(), 64));
      }),
    );
  });

  it('spreads users evenly enough over the shards', () => {
    const counts = new Array<number>(8).fill(0);
    for (let n = 0; n < 80_000; n += 1) counts[shardOf(`user-${n}`, 8)]! += 1;
    for (const count of counts) expect(Math.abs(count - 10_000)).toBeLessThan(600);
  });

  it('keeps every key of one shard queue in one Redis Cluster slot (hash tags), while shards spread over slots', () => {
    const suffixes = fc.string({ maxLength: 40 }).filter((text) => !text.includes('{'));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1023 }),
        fc.stringMatching(/^[A-Za-z0-9_.-]{1,30}$/),
        suffixes,
        (shard, prefix, suffix) => {
          const queue = shardQueueName(shard, true);
          expect(queue).toBe(`{shard-${shard}}`);
          // BullMQ keys are <prefix>:<queue>:<suffix>
          expect(keySlot(`${prefix}:${queue}:${suffix}`)).toBe(keySlot(`${prefix}:${queue}:wait`));
        },
      ),
      { numRuns: 2000 },
    );
    expect(keySlot('123456789')).toBe(0x31c3 % 16384);
    expect(
      new Set(Array.from({ length: 8 }, (_, shard) => keySlot(`windfall:${shardQueueName(shard, true)}:wait`))).size,
    ).toBe(8);
    expect(deadLetterQueueName(true)).toBe('{dead-letter}');
    expect(shardQueueName(3, false)).toBe('shard-3');
  });
});
