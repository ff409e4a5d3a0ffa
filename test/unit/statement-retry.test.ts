import { describe, expect, it } from 'vitest';
import { applyUserStatement } from '../../src/wallet/locked-user-transaction.js';
import { silentLogger } from '../../src/log/logger.js';

const terminated = (): Error =>
  Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
const operations = [{ operationId: 'retry-r1', amount: 5n, kind: 'reward' as const }];

describe('a user statement that fails transiently', () => {
  it('is not run again once the worker is stopping (the signal aborts during the wait before the retry)', async () => {
    let runs = 0;
    const db = {
      query: async () => {
        runs += 1;
        throw terminated();
      },
    } as never;
    const stopping = new AbortController();
    setTimeout(() => stopping.abort(new Error('stopping')), 20);
    const outcome = applyUserStatement({ db, logger: silentLogger() }, 'retry-u1', operations, {
      batchId: 'retry',
      signal: stopping.signal,
      statementRetryDelaysMs: [500, 500],
    });
    await expect(outcome).rejects.toMatchObject({ code: '57P01' });
    expect(runs).toBe(1);
  });

  it('is run again after the wait while the worker is not stopping', async () => {
    let runs = 0;
    const db = {
      query: async () => {
        runs += 1;
        throw terminated();
      },
    } as never;
    const outcome = applyUserStatement({ db, logger: silentLogger() }, 'retry-u2', operations, {
      batchId: 'retry',
      statementRetryDelaysMs: [5, 5],
    });
    await expect(outcome).rejects.toMatchObject({ code: '57P01' });
    expect(runs).toBe(3);
  });
});
