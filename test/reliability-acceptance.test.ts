import { describe, expect, it, inject } from 'vitest';
import { runFaultScenario } from '../bench/soak/fault-scenario.js';

/**
 * The acceptance scenario, smaller (`npm run soak` runs it with 80,000 rewards): rewards through two
 * consecutive SIGKILLs of the worker processes, four rounds of pg_terminate_backend and one Redis restart (AOF),
 * checked from outside through the contract: every balance exact, no ledger entry twice, none dead-lettered,
 * `windfall reconcile` exit 0; a balance changed behind Windfall's back makes it exit 1 naming that wallet.
 */
describe('acceptance: kill -9 twice, pg_terminate_backend four times, a Redis restart (AOF)', () => {
  it('every balance exact, nothing twice, nothing dead-lettered, reconcile exit 0; a tampered wallet makes it exit 1 naming it', async () => {
    const lines: string[] = [];
    // Large enough, and workers narrow enough (one user statement at a time each), that every fault lands while
    // rewards are still being applied on a fast machine: there 8,000 rewards at concurrency 4 were all settled before
    // the third round of terminations, and 2 workers at concurrency 1 still settle ≈ 10,000 rewards/s
    const rewards = 96_000;
    const result = await runFaultScenario({
      serverUrl: inject('databaseUrl'),
      rewards,
      users: 24_000,
      workers: 2,
      concurrency: 1,
      // one transaction of 8 users at a time per worker: still groups, slow enough that every fault lands mid-batch
      workerEnv: { WINDFALL_USERS_PER_TRANSACTION: '8' },
      chunkSize: 200,
      log: (line) => lines.push(line),
      timeoutMs: 150_000,
    });
    const story = lines.join('\n');
    expect(
      result.faults.map((fault) => fault.kind),
      story,
    ).toEqual(['kill', 'kill', 'pg_terminate', 'pg_terminate', 'pg_terminate', 'pg_terminate', 'redis_restart']);
    expect(result.faultsMidBatch, story).toBe(true);
    expect(
      result.faults.filter((fault) => fault.kind === 'pg_terminate').every((fault) => (fault.count ?? 0) > 0),
      story,
    ).toBe(true);
    expect(result.wrongBalances, story).toEqual([]);
    expect(result).toMatchObject({ ledgerEntries: rewards, distinctOperations: rewards, deadLetters: 0 });
    expect(result.batch).toMatchObject({
      status: 'completed',
      total: rewards,
      applied: rewards,
      duplicate: 0,
      deadLettered: 0,
      pending: 0,
    });
    expect(result.reconcile, story).toMatchObject({ code: 0, mismatchCount: 0 });
    expect(result.tamper.code).toBe(1);
    expect(result.tamper.mismatch).toMatchObject({ kind: 'balance', uid: result.tamper.uid });
    expect(BigInt(result.tamper.mismatch!.actual) - BigInt(result.tamper.mismatch!.expected)).toBe(1n);
    expect(result.tamper.otherMismatches).toBe(0);
    expect(result.tamper.codeAfterRepair).toBe(0);
  }, 200_000);
});
