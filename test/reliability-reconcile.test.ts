import { describe, expect, it } from 'vitest';
import { reconcile, type Mismatch } from '../src/reconcile/reconcile.js';
import { resumeOpenWork } from '../src/reconcile/resume-work.js';
import { useTestEnvironment } from './support/environment.js';
import { runCli } from './support/cli.js';
import { rewardRows, waitForBatchDone } from './support/batches.js';

const env = useTestEnvironment();

const brief = (m: Mismatch) => ({ kind: m.kind, uid: m.uid, expected: m.expected, actual: m.actual });

describe('windfall reconcile', () => {
  it('finds clean books after applied, duplicate, conflicting, dead-lettered and purged rewards: exit 0', async () => {
    const windfall = await env.open({
      jobAttempts: 1,
      rewardLockPolicy: { name: 'reward', retries: 1, initialDelayMs: 10, factor: 1, ttlMs: 5000 },
    });
    await windfall.wallet.addBalance('rc-a', 5, { operationId: 'rc-prior' });
    await windfall.wallet.addBalance('rc-owner', 9, { operationId: 'rc-used' });
    await windfall.wallet.withdrawBalance('rc-owner', 4, { operationId: 'rc-withdrawal' });
    await env.redis.set(`${env.prefix}:lock:rc-stuck`, 'someone-else', 'PX', 60_000);
    await env.redis.set(`${env.prefix}:lock:rc-stuck-2`, 'someone-else', 'PX', 60_000);
    await windfall.createWorker().start();
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'rc-prior', uid: 'rc-a', amount: 5 },
        { rewardId: 'rc-used', uid: 'rc-x', amount: 9 },
        { rewardId: 'rc-s1', uid: 'rc-stuck', amount: 3 },
        { rewardId: 'rc-s2', uid: 'rc-stuck-2', amount: 4 },
        ...rewardRows(200, (n) => ({ rewardId: `rc-${n}`, uid: `rc-u${n % 40}`, amount: 1 + n })),
      ],
      { batchId: 'rc-batch' },
    );
    const report = await waitForBatchDone(env.pool, 'rc-batch', 30_000);
    expect(report).toMatchObject({ applied: 200, duplicate: 1, deadLettered: 3, pending: 0 });
    const stuck2 = await windfall.deadLetters.list({ batchId: 'rc-batch', reason: 'LOCK_BUSY' });
    await windfall.deadLetters.purge({ ids: stuck2.filter((e) => e.uid === 'rc-stuck-2').map((e) => e.id) });
    await env.redis.del(`${env.prefix}:lock:rc-stuck`, `${env.prefix}:lock:rc-stuck-2`);

    const books = await reconcile(env.pool, { strict: true });
    expect(books.mismatches).toEqual([]);
    expect(books).toMatchObject({ ok: true, mismatchCount: 0, pendingBatches: [] });
    expect(books.rewards).toEqual({
      total: 204,
      applied: 200,
      duplicate: 1,
      deadLettered: 3,
      cancelled: 0,
      inFlight: 0,
      unsettled: 0,
    });
    expect(books.ledgerEntries).toBe(203);

    const cli = await runCli(['reconcile', '--json'], env.env());
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ ok: true, mismatchCount: 0, mismatches: [] });
    const human = await runCli(['reconcile'], env.env());
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('reconcile: OK');
  });

  it('exits 1 naming a wallet whose balance was changed behind Windfall’s back, with expected and actual', async () => {
    await env.pool.query(`update wallets set balance = balance + 13 where uid = 'rc-u7'`);
    try {
      const { rows } = await env.pool.query<{ balance: string }>(
        `select balance::text from wallets where uid = 'rc-u7'`,
      );
      const cli = await runCli(['reconcile', '--json'], env.env());
      expect(cli.code).toBe(1);
      const document = JSON.parse(cli.stdout) as { ok: boolean; mismatches: Mismatch[] };
      expect(document.ok).toBe(false);
      expect(document.mismatches.map(brief)).toEqual([
        {
          kind: 'balance',
          uid: 'rc-u7',
          expected: (BigInt(rows[0]!.balance) - 13n).toString(),
          actual: rows[0]!.balance,
        },
      ]);
      const human = await runCli(['reconcile'], env.env());
      expect(human.code).toBe(1);
      expect(human.stdout).toMatch(/reconcile: 1 mismatch\b/);
      expect(human.stdout).toMatch(/balance\s+rc-u7\s+\d+\s+\d+/);
    } finally {
      await env.pool.query(`update wallets set balance = balance - 13 where uid = 'rc-u7'`);
    }
    expect((await reconcile(env.pool)).ok).toBe(true);
  });

  it('names each kind of damage: a ledger user without a wallet, a lost reward, a duplicate without its entry, an entry of the wrong batch', async () => {
    const damage = [
      // a ledger entry for a user with no wallet row
      `insert into ledger_entries (uid, operation_id, amount, kind) values ('rc-ghost', 'rc-ghost-1', 11, 'credit')`,
      // a reward whose ledger entry vanished (the wallet follows, so only the reward is missing)
      `update wallets set balance = balance - 4 where uid = 'rc-u3'`,
      // the entry a recorded duplicate stands for vanished
      `update wallets set balance = balance - 5 where uid = 'rc-a'`,
      // an entry claiming a batch that has no such reward
      `insert into ledger_entries (uid, operation_id, amount, kind, batch_id) values ('rc-u1', 'rc-forged', 2, 'reward', 'rc-batch')`,
      `update wallets set balance = balance + 2 where uid = 'rc-u1'`,
    ];
    const removed = (
      await env.pool.query(`delete from ledger_entries where operation_id in ('rc-3', 'rc-prior') returning *`)
    ).rows;
    for (const statement of damage) await env.pool.query(statement);
    try {
      const books = await reconcile(env.pool);
      expect(books.ok).toBe(false);
      expect(books.mismatches.map(brief)).toEqual([
        { kind: 'wallet_missing', uid: 'rc-ghost', expected: '11', actual: 'no wallet' },
        {
          kind: 'duplicate_without_entry',
          uid: 'rc-a',
          expected: 'ledger entry "rc-prior" of 5 for "rc-a"',
          actual: 'no ledger entry',
        },
        {
          kind: 'reward_unsettled',
          uid: 'rc-u3',
          expected: '4 applied, duplicate or dead-lettered',
          actual: 'unsettled (no ledger entry)',
        },
        { kind: 'ledger_entry_unmatched', uid: 'rc-u1', expected: 'no entry', actual: '2' },
      ]);
      expect(books.mismatches.find((m) => m.kind === 'reward_unsettled')).toMatchObject({
        batchId: 'rc-batch',
        rewardId: 'rc-3',
      });
      expect(books.mismatchCount).toBe(4);
      const cli = await runCli(['reconcile'], env.env());
      expect(cli.code).toBe(1);
      for (const uid of ['rc-ghost', 'rc-a', 'rc-u3', 'rc-u1']) expect(cli.stdout).toContain(uid);
    } finally {
      await env.pool.query(`delete from ledger_entries where operation_id in ('rc-ghost-1', 'rc-forged')`);
      for (const row of removed) {
        await env.pool.query(
          'insert into ledger_entries (id, uid, operation_id, amount, kind, batch_id, description, created_at) overriding system value values ($1, $2, $3, $4, $5, $6, $7, $8)',
          [row.id, row.uid, row.operation_id, row.amount, row.kind, row.batch_id, row.description, row.created_at],
        );
      }
      await env.pool.query(
        `update wallets set balance = balance + case uid when 'rc-u3' then 4 when 'rc-a' then 5 else -2 end where uid in ('rc-u3', 'rc-a', 'rc-u1')`,
      );
    }
    expect((await reconcile(env.pool)).mismatches).toEqual([]);
  });

  it('reports an operation id found twice (possible only once the unique constraint is gone)', async () => {
    await env.pool.query('alter table ledger_entries drop constraint ledger_entries_operation_id_key');
    try {
      await env.pool.query(
        `insert into ledger_entries (uid, operation_id, amount, kind, batch_id) values ('rc-u5', 'rc-5', 6, 'reward', 'rc-batch')`,
      );
      await env.pool.query(`update wallets set balance = balance + 6 where uid = 'rc-u5'`);
      const books = await reconcile(env.pool);
      expect(books.mismatches.map(brief)).toEqual([
        { kind: 'operation_repeated', uid: 'rc-u5', expected: '1', actual: '2' },
      ]);
      await env.pool.query(
        `delete from ledger_entries where id = (select max(id) from ledger_entries where operation_id = 'rc-5')`,
      );
      await env.pool.query(`update wallets set balance = balance - 6 where uid = 'rc-u5'`);
    } finally {
      await env.pool.query(
        'alter table ledger_entries add constraint ledger_entries_operation_id_key unique (operation_id)',
      );
    }
    expect((await reconcile(env.pool)).ok).toBe(true);
  });

  it('reports a batch still processing as in flight (exit 0); --strict counts its rewards as mismatches (exit 1)', async () => {
    const windfall = await env.open();
    await windfall.producer.enqueueRewards(
      rewardRows(30, (n) => ({ rewardId: `rc-open-${n}`, uid: `rc-open-u${n % 3}`, amount: 2 })),
      { batchId: 'rc-open' },
    );
    const books = await reconcile(env.pool);
    expect(books).toMatchObject({ ok: true, mismatchCount: 0 });
    expect(books.rewards.inFlight).toBe(30);
    expect(books.pendingBatches).toEqual([
      expect.objectContaining({ batchId: 'rc-open', pending: 30, openChunks: 3, replaying: 0 }),
    ]);

    const lenient = await runCli(['reconcile'], env.env());
    expect(lenient.code).toBe(0);
    expect(lenient.stdout).toContain('batches still processing');
    expect(lenient.stdout).toMatch(/rc-open\s+30\s+3/);
    const strict = await runCli(['reconcile', '--strict', '--json'], env.env());
    expect(strict.code).toBe(1);
    const document = JSON.parse(strict.stdout) as { mismatchCount: number; mismatches: Mismatch[] };
    expect(document.mismatchCount).toBe(30);
    expect(document.mismatches[0]).toMatchObject({
      kind: 'reward_unsettled',
      batchId: 'rc-open',
      actual: 'pending (no ledger entry)',
    });
  });

  it('--resume re-adds the jobs Redis lost, after which the batch completes', async () => {
    const windfall = await env.open();
    // the jobs of rc-open vanish from Redis, as after a restart without AOF
    for (const { queue } of windfall.queues.all()) await queue.obliterate({ force: true });
    const dry = await runCli(['reconcile', '--resume', '--dry-run'], env.env());
    expect(dry.code).toBe(0);
    expect(dry.stderr).toContain('would re-add 3 chunk jobs');
    expect(dry.stderr).toMatch(/job was missing/);
    const before = await windfall.queues.shard(0).getJobCounts();
    expect(Object.values(before).reduce((a, b) => a + b, 0)).toBe(0);

    const cli = await runCli(['reconcile', '--resume', '--json'], env.env());
    expect(cli.code, cli.stderr).toBe(0);
    const document = JSON.parse(cli.stdout) as {
      resumed: { chunks: { was: string }[] };
      rewards: { inFlight: number };
    };
    expect(document.resumed.chunks.map((job) => job.was)).toEqual(['missing', 'missing', 'missing']);
    expect(document.rewards.inFlight).toBe(30);
    const after = await windfall.queues
      .shard(
        document.resumed.chunks.length > 0 ? (document.resumed.chunks[0] as unknown as { shard: number }).shard : 0,
      )
      .getJobCounts('waiting', 'prioritized');
    // re-added chunk jobs keep their batch's turn: BullMQ holds jobs with a priority as prioritized, not waiting
    expect((after['waiting'] ?? 0) + (after['prioritized'] ?? 0)).toBeGreaterThan(0);
    // resuming again finds every job in place: nothing to do
    const again = await resumeOpenWork(env.pool, windfall.queues, { minAgeMs: 0 });
    expect(again.chunks).toEqual([]);
    expect(again.checkedChunks).toBe(3);

    await windfall.createWorker().start();
    const report = await waitForBatchDone(env.pool, 'rc-open', 30_000);
    expect(report).toMatchObject({ applied: 30, deadLettered: 0 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const books = await reconcile(env.pool, { strict: true });
    expect(books.mismatches).toEqual([]);
    expect(books.ok).toBe(true);
  });
});
