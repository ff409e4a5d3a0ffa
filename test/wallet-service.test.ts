import { describe, expect, it } from 'vitest';
import { BATCH_POLICY, type LockPolicy } from '../src/lock/lock-policy.js';
import { InsufficientFundsError, InvalidOperationError, OperationConflictError } from '../src/wallet/wallet-errors.js';
import { WalletService } from '../src/wallet/wallet-service.js';
import { connectDatabase } from '../src/db/database.js';
import { useTestEnvironment } from './support/environment.js';
import { ledgerMismatches } from './support/batches.js';

const env = useTestEnvironment();
const quick: LockPolicy = { name: 'default', retries: 40, initialDelayMs: 5, factor: 1.2, ttlMs: 10_000 };

function service(policies: { default?: LockPolicy; batch?: LockPolicy; reward?: LockPolicy } = {}) {
  const database = connectDatabase(env.databaseUrl, { poolSize: 10 });
  const wallet = new WalletService({
    pool: database.pool,
    redis: env.redis,
    prefix: env.prefix,
    policies,
    concurrency: 8,
  });
  return { wallet, close: () => database.close() };
}

describe('WalletService', () => {
  it("credits the seed's own example exactly: user1 100, user2 200, 活动奖励", async () => {
    const { wallet, close } = service();
    const report = await wallet.batchAddBalanceForRewards([
      { rewardId: 'seed-1', uid: 'user1', amount: 100, description: '活动奖励' },
      { rewardId: 'seed-2', uid: 'user2', amount: 200, description: '活动奖励' },
    ]);
    expect(report).toMatchObject({ applied: 2, duplicate: 0, conflict: 0, failed: 0 });
    expect(await wallet.getBalance('user1')).toBe(100n);
    expect(await wallet.getBalance('user2')).toBe(200n);
    const [entry] = await wallet.getLedger('user1');
    expect(entry).toMatchObject({ operationId: 'seed-1', amount: '100', kind: 'reward', description: '活动奖励' });
    await close();
  });

  it('adds and withdraws; a withdrawal beyond the balance is refused and changes nothing', async () => {
    const { wallet, close } = service();
    expect(await wallet.addBalance('w1', 500n, { operationId: 'w1-add' })).toMatchObject({
      outcome: 'applied',
      balance: 500n,
    });
    expect(await wallet.withdrawBalance('w1', 200, { operationId: 'w1-w1' })).toMatchObject({
      outcome: 'applied',
      balance: 300n,
    });
    await expect(wallet.withdrawBalance('w1', 301, { operationId: 'w1-w2' })).rejects.toBeInstanceOf(
      InsufficientFundsError,
    );
    await expect(wallet.withdrawBalance('nobody', 1, { operationId: 'nobody-w' })).rejects.toBeInstanceOf(
      InsufficientFundsError,
    );
    expect(await wallet.getBalance('w1')).toBe(300n);
    expect(await wallet.getBalance('nobody')).toBe(0n);
    const { rows } = await env.pool.query(
      `select count(*)::int as n from ledger_entries where operation_id in ('w1-w2', 'nobody-w')`,
    );
    expect(rows[0].n).toBe(0);
    await close();
  });

  it('treats a repeated operation id as a duplicate and a changed payload as a conflict', async () => {
    const { wallet, close } = service();
    await wallet.addBalance('d1', 70, { operationId: 'd1-op' });
    expect(await wallet.addBalance('d1', 70, { operationId: 'd1-op' })).toMatchObject({
      outcome: 'duplicate',
      balance: 70n,
    });
    await expect(wallet.addBalance('d1', 71, { operationId: 'd1-op' })).rejects.toBeInstanceOf(OperationConflictError);
    await expect(wallet.addBalance('d2', 70, { operationId: 'd1-op' })).rejects.toThrow(/applied to user "d1"/);
    expect(await wallet.getBalance('d1')).toBe(70n);
    expect(await wallet.getBalance('d2')).toBe(0n);
    await close();
  });

  it('refuses invalid input before touching anything', async () => {
    const { wallet, close } = service();
    await expect(wallet.addBalance('v1', 1.5, { operationId: 'v1' })).rejects.toBeInstanceOf(InvalidOperationError);
    await expect(wallet.addBalance('', 1, { operationId: 'v2' })).rejects.toThrow(/uid is empty/);
    await expect(
      wallet.batchAddBalanceForRewards([
        { rewardId: 'ok', uid: 'v3', amount: 1 },
        { rewardId: 'bad', uid: 'v3', amount: -1 },
      ]),
    ).rejects.toThrow(/operation 2/);
    expect(await wallet.getBalance('v3')).toBe(0n);
    await close();
  });

  it('applies a mixed batch per user, all or nothing for each user', async () => {
    const { wallet, close } = service({ batch: BATCH_POLICY });
    await wallet.addBalance('m1', 100, { operationId: 'm1-seed' });
    const report = await wallet.batchBalanceOperation([
      { operationId: 'm-1', uid: 'm1', type: 'withdraw', amount: 50 },
      { operationId: 'm-2', uid: 'm2', type: 'add', amount: 30 },
      { operationId: 'm-3', uid: 'm2', type: 'withdraw', amount: 10 },
      { operationId: 'm-4', uid: 'm3', type: 'add', amount: 5 },
      { operationId: 'm-5', uid: 'm3', type: 'withdraw', amount: 6 },
    ]);
    expect(report.users.map((u) => [u.uid, u.status])).toEqual([
      ['m1', 'settled'],
      ['m2', 'settled'],
      ['m3', 'failed'],
    ]);
    expect(report.users[2]).toMatchObject({ reason: 'INSUFFICIENT_FUNDS', transient: false });
    expect(await wallet.getBalance('m1')).toBe(50n);
    expect(await wallet.getBalance('m2')).toBe(20n);
    expect(await wallet.getBalance('m3')).toBe(0n);
    await close();
  });

  it('reports a busy user as failed while the others are applied', async () => {
    const { wallet, close } = service({
      reward: { name: 'reward', retries: 2, initialDelayMs: 20, factor: 1.5, ttlMs: 5000 },
    });
    await env.redis.set(`${env.prefix}:lock:busy-1`, 'elsewhere', 'PX', 5000);
    const report = await wallet.batchAddBalanceForRewards([
      { rewardId: 'b-1', uid: 'busy-1', amount: 10 },
      { rewardId: 'b-2', uid: 'free-1', amount: 10 },
    ]);
    expect(report.users.find((u) => u.uid === 'busy-1')).toMatchObject({
      status: 'failed',
      reason: 'LOCK_BUSY',
      transient: true,
    });
    expect(report.applied).toBe(1);
    expect(await wallet.getBalance('free-1')).toBe(10n);
    expect(await wallet.getBalance('busy-1')).toBe(0n);
    await env.redis.del(`${env.prefix}:lock:busy-1`);
    await close();
  });

  it('keeps every balance exact when rewards and withdrawals race over the same users', async () => {
    const services = [
      service({ default: quick, batch: quick, reward: quick }),
      service({ default: quick, batch: quick, reward: quick }),
    ];
    const users = Array.from({ length: 20 }, (_, n) => `race-${n}`);
    for (const uid of users) await services[0]!.wallet.addBalance(uid, 100n, { operationId: `race-seed-${uid}` });
    const expected = new Map<string, bigint>(users.map((uid) => [uid, 100n]));
    const calls: Promise<{ applied: number; duplicate: number; failed: number }>[] = [];
    for (let round = 0; round < 5; round += 1) {
      const rewards = users.map((uid, n) => {
        const amount = BigInt(1 + ((round * 7 + n) % 50));
        expected.set(uid, expected.get(uid)! + amount);
        return { rewardId: `race-r${round}-${uid}`, uid, amount };
      });
      // every round is sent twice, through both services: the second copy must count as a duplicate
      calls.push(
        services[0]!.wallet.batchAddBalanceForRewards(rewards),
        services[1]!.wallet.batchAddBalanceForRewards(rewards),
      );
    }
    const withdrawals = Array.from({ length: 100 }, (_, n) => {
      const uid = users[n % users.length]!;
      expected.set(uid, expected.get(uid)! - 3n);
      return services[n % 2]!.wallet.withdrawBalance(uid, 3n, { operationId: `race-w${n}` });
    });
    const reports = await Promise.all(calls);
    const debits = await Promise.all(withdrawals);
    expect(reports.reduce((sum, r) => sum + r.failed, 0)).toBe(0);
    expect(reports.reduce((sum, r) => sum + r.applied, 0)).toBe(100);
    expect(reports.reduce((sum, r) => sum + r.duplicate, 0)).toBe(100);
    expect(debits.every((d) => d.outcome === 'applied')).toBe(true);
    for (const uid of users) expect(await services[0]!.wallet.getBalance(uid)).toBe(expected.get(uid));
    expect(await ledgerMismatches(env.pool)).toEqual([]);
    for (const s of services) await s.close();
  });

  it('exposes lock status and force release', async () => {
    const { wallet, close } = service();
    await env.redis.set(`${env.prefix}:lock:stuck`, 'crashed-worker', 'PX', 60_000);
    expect(await wallet.getLockStatus('stuck')).toMatchObject({ locked: true, owner: 'crashed-worker' });
    await wallet.forceReleaseLock('stuck');
    expect(await wallet.getLockStatus('stuck')).toMatchObject({ locked: false });
    await close();
  });
});
