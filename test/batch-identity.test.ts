import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BatchConflictError, BatchValidationError } from '../src/rewards/batch-errors.js';
import { SequenceDigest, SetDigest } from '../src/staging/content-digest.js';
import { validateReward, type Reward } from '../src/rewards/reward.js';
import { seededRandom } from '../src/runtime/seeded-random.js';
import { useTestEnvironment } from './support/environment.js';
import { eventually, runCli } from './support/cli.js';
import type { SourceRecord } from '../src/rewards/reward-sources.js';

const env = useTestEnvironment();
const dir = mkdtempSync(join(tmpdir(), 'windfall-identity-'));
const file = (name: string, content: string): string => {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
};

type Row = { rewardId: string; uid: string; amount: number | string; description?: string };
const rows = (tag: string, count: number): Row[] =>
  Array.from({ length: count }, (_, n) => ({
    rewardId: `${tag}-${n}`,
    uid: `${tag}-u${n % 7}`,
    amount: 1 + n,
    description: n % 2 === 0 ? '活动奖励' : undefined,
  }));

/** Everything recorded under a batchId, to show that a refused input changed none of it. */
async function recorded(batchId: string): Promise<unknown> {
  const { rows: batch } = await env.pool.query(
    'select total, users, chunks, content_digest from reward_batches where batch_id = $1',
    [batchId],
  );
  const { rows: items } = await env.pool.query(
    'select reward_id, uid, amount::text, description, row_no from reward_batch_items where batch_id = $1 order by row_no',
    [batchId],
  );
  return { batch, items };
}

const reward = fc.record({
  rewardId: fc.string({ minLength: 1, maxLength: 12 }),
  uid: fc.string({ minLength: 1, maxLength: 12 }),
  amount: fc.bigInt({ min: 1n, max: 9007199254740991n }),
  description: fc.option(fc.string({ maxLength: 20 }), { nil: null }),
});
const digestOf = (make: () => SetDigest | SequenceDigest, rewards: readonly Reward[]): string => {
  const digest = make();
  for (const one of rewards) digest.add(one);
  return digest.value();
};

describe('content digests', () => {
  it('the set digest ignores the order of rows and sees any change of a value, a row more or a row less', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(reward, { minLength: 1, maxLength: 40, selector: (r) => r.rewardId }),
        fc.nat(),
        fc.nat(),
        fc.nat({ max: 3 }),
        (rewards, seed, pick, field) => {
          const random = seededRandom(seed);
          const shuffled = [...rewards];
          for (let i = shuffled.length - 1; i > 0; i -= 1) {
            const j = Math.floor(random() * (i + 1));
            [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
          }
          const digest = digestOf(() => new SetDigest(), rewards);
          expect(digest).toMatch(/^v2:[0-9a-f]{64}$/);
          expect(digestOf(() => new SetDigest(), shuffled)).toBe(digest);
          const at = pick % rewards.length;
          const changed = rewards.map((one, index) => {
            if (index !== at) return one;
            if (field === 0) return { ...one, rewardId: `${one.rewardId}x` };
            if (field === 1) return { ...one, uid: `${one.uid}x` };
            if (field === 2) return { ...one, amount: one.amount + 1n };
            return { ...one, description: one.description === 'x' ? 'y' : 'x' };
          });
          expect(digestOf(() => new SetDigest(), changed)).not.toBe(digest);
          expect(digestOf(() => new SetDigest(), rewards.slice(1))).not.toBe(digest);
          expect(digestOf(() => new SetDigest(), [...rewards, rewards[at]!])).not.toBe(digest);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('the sequence digest is the one earlier versions stored: SHA-256 of the rows in order', () => {
    fc.assert(
      fc.property(fc.array(reward, { maxLength: 3000 }), (rewards) => {
        const earlier = createHash('sha256');
        for (const one of rewards)
          earlier.update(`${one.rewardId}\u0000${one.uid}\u0000${one.amount}\u0000${one.description ?? ''}\n`);
        expect(digestOf(() => new SequenceDigest(), rewards)).toBe(earlier.digest('hex'));
      }),
      { numRuns: 50 },
    );
  });
});

describe('a batchId names one set of rewards', () => {
  it('a second enqueue of an id still being staged waits for it in short lock waits, then answers the recorded batch', async () => {
    const windfall = await env.open();
    const all = rows('held', 20);
    let reading!: () => void;
    const claimed = new Promise<void>((resolve) => (reading = resolve));
    let finish!: () => void;
    const held = new Promise<void>((resolve) => (finish = resolve));
    // the first enqueue claims the id, reads 10 rows, then waits: its transaction stays open
    async function* slowly(): AsyncGenerator<SourceRecord> {
      for (const [index, row] of all.entries()) {
        if (index === 0) reading();
        if (index === 10) await held;
        yield { row: index + 1, value: row };
      }
    }
    const first = windfall.producer.enqueue(slowly(), { batchId: 'held' });
    await claimed;
    const second = windfall.producer.enqueueRewards(all, { batchId: 'held' });
    // the second waits for the first's transaction; each wait is a statement of its own, at most 5 s: seen as a new
    // insert started while the first still holds the id (one statement waiting for minutes would be taken for a
    // silent connection by a pool with statement deadlines)
    const waiting = async (): Promise<string | undefined> => {
      const { rows: found } = await env.pool.query<{ started: string }>(
        `select query_start::text as started from pg_stat_activity
         where datname = current_database() and wait_event_type = 'Lock' and query like 'insert into reward_batches%'`,
      );
      return found[0]?.started;
    };
    let firstWait: string | undefined;
    await eventually(async () => (firstWait = await waiting()) !== undefined, 'the second enqueue to wait');
    await eventually(
      async () => ![undefined, firstWait].includes(await waiting()),
      'the second enqueue to wait again in a new statement',
      30_000,
    );
    finish();
    expect(await first).toMatchObject({ batchId: 'held', total: 20, created: true });
    expect(await second).toMatchObject({ batchId: 'held', total: 20, created: false });
  }, 60_000);

  it('takes the same rewards again, in any order and with an empty description for an absent one, as a no-op', async () => {
    const windfall = await env.open();
    const first = rows('same', 50);
    expect(await windfall.producer.enqueueRewards(first, { batchId: 'same' })).toMatchObject({
      created: true,
      total: 50,
    });
    const before = await recorded('same');
    const reordered = [...first]
      .reverse()
      .map((row) => ({ ...row, description: row.description ?? '', amount: String(row.amount) }));
    expect(await windfall.producer.enqueueRewards(reordered, { batchId: 'same' })).toEqual({
      batchId: 'same',
      total: 50,
      users: 7,
      chunks: expect.any(Number),
      created: false,
    });
    expect(await recorded('same')).toEqual(before);
  });

  it('refuses other rewards under a known batchId — another amount, uid, rewardId or description, a row more or less — and records nothing of them', async () => {
    const windfall = await env.open();
    const first = rows('diff', 20);
    await windfall.producer.enqueueRewards(first, { batchId: 'diff' });
    const before = await recorded('diff');
    const variants: [string, Row[]][] = [
      ['another amount', first.map((row, n) => (n === 13 ? { ...row, amount: 999 } : row))],
      ['another uid', first.map((row, n) => (n === 0 ? { ...row, uid: 'someone-else' } : row))],
      ['another rewardId', first.map((row, n) => (n === 19 ? { ...row, rewardId: 'diff-new' } : row))],
      ['another description', first.map((row, n) => (n === 4 ? { ...row, description: '活动奖励!' } : row))],
      ['a description added', first.map((row, n) => (n === 5 ? { ...row, description: 'new' } : row))],
      ['a row more', [...first, { rewardId: 'diff-20', uid: 'diff-u0', amount: 1 }]],
      ['a row less', first.slice(1)],
      [
        'two rows swapping amounts',
        first.map((row, n) =>
          n === 2 ? { ...row, amount: first[3]!.amount } : n === 3 ? { ...row, amount: first[2]!.amount } : row,
        ),
      ],
    ];
    for (const [what, input] of variants) {
      const error = await windfall.producer.enqueueRewards(input, { batchId: 'diff' }).catch((e: unknown) => e);
      expect(error, what).toBeInstanceOf(BatchConflictError);
      expect((error as Error).message, what).toMatch(
        /^batch "diff" already exists with different rewards \(20 rewards recorded; this input has \d+ rows\): nothing of this input was recorded/,
      );
    }
    expect(await recorded('diff')).toEqual(before);
    // invalid rows under a known batchId are reported as for a new batch
    const invalid = await windfall.producer
      .enqueueRewards([...first.slice(1), { rewardId: 'x', uid: '', amount: 0 }], { batchId: 'diff' })
      .catch((e: unknown) => e);
    expect(invalid).toBeInstanceOf(BatchValidationError);
    expect((invalid as BatchValidationError).errors.map((e) => [e.row, e.field])).toEqual([
      [20, 'uid'],
      [20, 'amount'],
    ]);
  });

  it('two calls racing with one batchId and different rewards: one records its batch, the other is refused', async () => {
    const windfall = await env.open();
    const other = await env.open();
    const outcomes = await Promise.allSettled([
      windfall.producer.enqueueRewards(rows('race-a', 3000), { batchId: 'race' }),
      other.producer.enqueueRewards(rows('race-b', 3000), { batchId: 'race' }),
    ]);
    expect(
      outcomes
        .filter((o) => o.status === 'fulfilled')
        .map((o) => (o as PromiseFulfilledResult<{ created: boolean }>).value.created),
    ).toEqual([true]);
    expect(outcomes.filter((o) => o.status === 'rejected').map((o) => o.reason)).toEqual([
      expect.any(BatchConflictError),
    ]);
    const { rows: items } = await env.pool.query<{ n: number }>(
      `select count(*)::int as n from reward_batch_items where batch_id = 'race'`,
    );
    expect(items[0]!.n).toBe(3000);
  });

  it('compares a batch recorded with the order-dependent digest of earlier versions row by row, in order', async () => {
    const windfall = await env.open();
    const first = rows('legacy', 30);
    await windfall.producer.enqueueRewards(first, { batchId: 'legacy' });
    // as an earlier version recorded it: the SHA-256 of the rows in file order, no prefix
    const legacy = new SequenceDigest();
    for (const [index, row] of first.entries())
      legacy.add((validateReward(row, index + 1) as { reward: Reward }).reward);
    expect(legacy.value()).toMatch(/^[0-9a-f]{64}$/);
    await env.pool.query(`update reward_batches set content_digest = $1 where batch_id = 'legacy'`, [legacy.value()]);

    expect(await windfall.producer.enqueueRewards(first, { batchId: 'legacy' })).toMatchObject({
      created: false,
      total: 30,
    });
    const reordered = await windfall.producer
      .enqueueRewards([...first].reverse(), { batchId: 'legacy' })
      .catch((e: unknown) => e);
    expect(reordered).toBeInstanceOf(BatchConflictError);
    const changed = await windfall.producer
      .enqueueRewards(
        first.map((row, n) => (n === 7 ? { ...row, amount: 1 } : row)),
        { batchId: 'legacy' },
      )
      .catch((e: unknown) => e);
    expect(changed).toBeInstanceOf(BatchConflictError);
  });

  it('CLI: the same rewards from another file format and order exit 0; other rewards exit 2 naming the batch, with a JSON document under --json', async () => {
    const first = rows('cli-id', 6);
    const jsonl = file('first.jsonl', `${first.map((row) => JSON.stringify(row)).join('\n')}\n`);
    const csv = file(
      'same.csv',
      `rewardId,uid,amount,description\n${[...first]
        .reverse()
        .map((row) => `${row.rewardId},${row.uid},${row.amount},${row.description ?? ''}`)
        .join('\n')}\n`,
    );
    const changed = file(
      'changed.jsonl',
      `${first.map((row, n) => JSON.stringify(n === 2 ? { ...row, amount: 7777 } : row)).join('\n')}\n`,
    );

    const created = await runCli(['enqueue', '--file', jsonl, '--batch-id', 'cli-id', '--json'], env.env());
    expect(created.code, created.stderr).toBe(0);
    const before = await recorded('cli-id');
    const again = await runCli(['enqueue', '--file', csv, '--batch-id', 'cli-id', '--json'], env.env());
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual({ batchId: 'cli-id', total: 6 });
    expect(again.stderr).toContain('batch cli-id was already enqueued: nothing new was enqueued');

    const refused = await runCli(['enqueue', '--file', changed, '--batch-id', 'cli-id'], env.env());
    expect(refused.code).toBe(2);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toContain(
      'windfall: batch "cli-id" already exists with different rewards (6 rewards recorded; this input has 6 rows)',
    );
    const refusedJson = await runCli(['enqueue', '--file', changed, '--batch-id', 'cli-id', '--json'], env.env());
    expect(refusedJson.code).toBe(2);
    expect(JSON.parse(refusedJson.stdout)).toEqual({
      error: 'batch conflict',
      message: expect.stringContaining('already exists with different rewards'),
    });
    expect(await recorded('cli-id')).toEqual(before);
  });
});
