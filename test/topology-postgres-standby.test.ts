import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startReplicatedPostgres,
  STANDBY_NAME,
  trackedProcesses,
  type ReplicatedPostgres,
} from './support/topology.js';

let pair: ReplicatedPostgres;
beforeAll(async () => {
  pair = await startReplicatedPostgres();
}, 180_000);
afterAll(async () => {
  await pair?.destroy();
});

describe('a PostgreSQL 15 primary and a synchronous standby from the fault kit', () => {
  it('streams synchronously: a commit acknowledged by the primary is on the standby already', async () => {
    expect(trackedProcesses()).toEqual(
      expect.arrayContaining([
        `postgres (primary) on 127.0.0.1:${pair.primary.port}`,
        `postgres (standby) on 127.0.0.1:${pair.standby.port}`,
      ]),
    );
    const [replication] = await pair.primary.query(
      `select application_name, state, sync_state from pg_stat_replication`,
    );
    expect(replication).toEqual({ application_name: STANDBY_NAME, state: 'streaming', sync_state: 'sync' });
    expect(await pair.primary.query(`show synchronous_commit`)).toEqual([{ synchronous_commit: 'on' }]);
    expect(await pair.standby.inRecovery()).toBe(true);

    await pair.primary.query('create table acknowledged (n int primary key)');
    await pair.primary.query('insert into acknowledged select generate_series(1, 1000)');
    // synchronous_commit = on: the standby flushed the WAL before the commit returned (it may not have replayed it
    // yet: read until it has, bounded)
    const deadline = Date.now() + 10_000;
    let seen = 0;
    while (Date.now() < deadline) {
      seen = await pair.standby
        .query<{ n: number }>('select count(*)::int as n from acknowledged')
        .then((rows) => rows[0]!.n)
        .catch(() => 0);
      if (seen === 1000) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(seen).toBe(1000);
    await expect(pair.standby.query('insert into acknowledged values (0)')).rejects.toThrow(/read-only/);
  });

  it('survives the primary stopped "immediate" (a crash): the promoted standby has every acknowledged commit and takes writes', async () => {
    // commits right up to the crash, each acknowledged before the next
    let acknowledged = 0;
    for (let n = 2000; n < 2200; n += 1) {
      await pair.primary.query('insert into acknowledged values ($1)', [n]);
      acknowledged += 1;
    }
    await pair.stopPrimary('immediate');
    expect(pair.primary.running()).toBe(false);
    await pair.promoteStandby();
    expect(await pair.standby.inRecovery()).toBe(false);
    const [{ n }] = (await pair.standby.query<{ n: number }>(
      'select count(*)::int as n from acknowledged where n >= 2000',
    )) as [{ n: number }];
    expect(n).toBe(acknowledged);
    // a lone new primary waits for no standby
    await pair.standby.query('insert into acknowledged values (-1)');
    expect(await pair.standby.query('show synchronous_standby_names')).toEqual([{ synchronous_standby_names: '' }]);
  });
});
