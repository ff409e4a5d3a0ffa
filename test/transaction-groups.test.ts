import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GroupSettlement, type DeliverOutcome } from '../src/settlement/group-settlement.js';
import type { SettlingUser } from '../src/settlement/settling-user.js';
import { TransactionGroups, takeGroup } from '../src/settlement/transaction-groups.js';
import type { UserTask } from '../src/settlement/user-task.js';
import { loadChunkWork } from '../src/worker/job-work.js';
import { useTestEnvironment } from './support/environment.js';
import { groupSettlementOptions, trackedUser, type TrackedUser } from './support/settling-users.js';

const env = useTestEnvironment();
/** The settlement statements' own connections, as the worker opens them. */
let statements: pg.Pool;
beforeAll(() => {
  statements = new pg.Pool({ connectionString: env.databaseUrl, max: 4, application_name: 'windfall' });
});
afterAll(async () => {
  await statements.end();
});

/** The real group settlement, recording the groups it is given and how many run at once. */
class RecordingSettlement extends GroupSettlement {
  readonly groups: string[][] = [];
  running = 0;
  mostRunning = 0;

  override async settle(tasks: readonly UserTask[], deliver: DeliverOutcome): Promise<void> {
    this.groups.push(tasks.map((task) => `${task.source.batchId}:${task.uid}`));
    this.running += 1;
    this.mostRunning = Math.max(this.mostRunning, this.running);
    try {
      await super.settle(tasks, deliver);
    } finally {
      this.running -= 1;
    }
  }
}

function recordingSettlement(): RecordingSettlement {
  return new RecordingSettlement(groupSettlementOptions(statements, env.pool));
}

/** Stages a batch (no worker) and answers its users' tasks by uid. */
async function stage(batchId: string, rows: { uid: string; rewards: number }[]): Promise<Map<string, UserTask>> {
  const windfall = await env.open({ chunkSize: 100_000, shards: 1 });
  const rewards = rows.flatMap(({ uid, rewards }) =>
    Array.from({ length: rewards }, (_, n) => ({ rewardId: `${batchId}-${uid}-${n}`, uid, amount: 1 })),
  );
  await windfall.producer.enqueueRewards(rewards, { batchId });
  const work = await loadChunkWork(env.pool, batchId, 0);
  return new Map(work!.tasks.map((task) => [task.uid, task]));
}

const uid = (user: SettlingUser): string => user.task.uid;
const replay = { kind: 'replay', batchId: 'b', deadLetterId: '1', fence: '0' } as const;

describe('forming a transaction group', () => {
  const limits = { usersPerTransaction: 4, rewardsPerTransaction: 8 };

  it('takes the first user, then others of the same kind and distinct uids, within the user and reward limits', () => {
    const ready = [
      trackedUser('a', { rewards: 3 }),
      trackedUser('b', { rewards: 2 }),
      trackedUser('r', { source: replay }), // another kind
      trackedUser('a', { rewards: 1 }), // the same user, from another job
      trackedUser('c', { rewards: 4 }), // 3 + 2 + 4 > 8
      trackedUser('d'),
      trackedUser('e'),
      trackedUser('f'), // a fifth user
    ];
    const { group, rest } = takeGroup(ready, limits);
    expect(group.map(uid)).toEqual(['a', 'b', 'd', 'e']);
    expect(rest).toEqual([ready[2], ready[3], ready[4], ready[7]]);
    // the next group is the replay's, alone of its kind
    const next = takeGroup(rest, limits);
    expect(next.group.map(uid)).toEqual(['r']);
    expect(next.rest.map(uid)).toEqual(['a', 'c', 'f']);
  });

  it('lets a user with more rewards than the limit go alone, when it comes first', () => {
    const ready = [trackedUser('small'), trackedUser('big', { rewards: 20 }), trackedUser('other')];
    const first = takeGroup(ready, limits);
    expect(first.group.map(uid)).toEqual(['small', 'other']);
    const second = takeGroup([...first.rest, trackedUser('late')], limits);
    expect(second.group.map(uid)).toEqual(['big']);
    expect(second.rest.map(uid)).toEqual(['late']);
  });
});

describe('transaction groups', () => {
  it('puts users whose lock was waited for first, and hands every waiting user back when the worker stops', () => {
    const groups = new TransactionGroups({
      settlement: recordingSettlement(),
      transactions: 1,
      usersPerTransaction: 10,
      rewardsPerTransaction: 100,
      onFinished: () => undefined,
      onTransactionEnd: () => undefined,
    });
    groups.add(trackedUser('a'));
    groups.add(trackedUser('b'));
    groups.add(trackedUser('waited'), true);
    expect(groups.lockedWaiting).toBe(3);
    expect(groups.takeLockedWaiting().map(uid)).toEqual(['waited', 'a', 'b']);
    expect(groups.lockedWaiting).toBe(0);
    groups.start(); // nobody to settle: no transaction
    expect(groups.inFlight).toBe(0);
  });

  it('runs at most `transactions` groups at once, one PostgreSQL transaction each, within the limits', async () => {
    const first = await stage('tg-a', [
      ...['u0', 'u1', 'u2', 'u3', 'u4', 'u5'].map((name) => ({ uid: `tg-${name}`, rewards: 1 })),
      { uid: 'tg-big', rewards: 5 },
    ]);
    const second = await stage('tg-b', [{ uid: 'tg-u0', rewards: 1 }]);
    const user = (tasks: Map<string, UserTask>, name: string): TrackedUser =>
      trackedUser(name, { task: tasks.get(`tg-${name}`)! });
    const ready = [
      user(first, 'u0'),
      user(first, 'u1'),
      user(second, 'u0'),
      user(first, 'big'),
      user(first, 'u2'),
      user(first, 'u3'),
      user(first, 'u4'),
      user(first, 'u5'),
    ];
    const settlement = recordingSettlement();
    const finished: SettlingUser[] = [];
    let allFinished: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (allFinished = resolve));
    const groups: TransactionGroups = new TransactionGroups({
      settlement,
      transactions: 2,
      usersPerTransaction: 3,
      rewardsPerTransaction: 4,
      onFinished: (user) => {
        finished.push(user);
        if (finished.length === ready.length) allFinished();
      },
      onTransactionEnd: () => groups.start(),
    });
    for (const entry of ready) groups.add(entry);
    groups.start();
    expect(groups.inFlight).toBe(2);
    expect(groups.lockedWaiting).toBe(2); // tg-big and tg-u5 wait for a transaction to end
    await done;
    expect(settlement.mostRunning).toBe(2);
    expect(settlement.groups).toEqual([
      ['tg-a:tg-u0', 'tg-a:tg-u1', 'tg-a:tg-u2'],
      // tg-u0 again (another job): not in the same transaction as itself; tg-big's 5 rewards would exceed 4
      ['tg-b:tg-u0', 'tg-a:tg-u3', 'tg-a:tg-u4'],
      ['tg-a:tg-big'], // more rewards than the limit: alone
      ['tg-a:tg-u5'],
    ]);
    // each user's outcome is set on it before it is finished
    for (const entry of finished)
      expect(entry.outcome).toMatchObject({ kind: 'settled', applied: entry.task.uid === 'tg-big' ? 5 : 1 });
    // one PostgreSQL transaction per group: the rows a group wrote carry its transaction id
    const { rows } = await env.pool.query<{ label: string; xid: string }>(
      `select batch_id || ':' || uid as label, xmin::text as xid from ledger_entries where batch_id like 'tg-%'`,
    );
    const transactionOf = (label: string): string[] => [
      ...new Set(rows.filter((row) => row.label === label).map((row) => row.xid)),
    ];
    const byGroup = settlement.groups.map((group) => [...new Set(group.flatMap(transactionOf))]);
    expect(byGroup.every((ids) => ids.length === 1)).toBe(true);
    expect(new Set(byGroup.flat()).size).toBe(4);
    expect(rows).toHaveLength(6 + 5 + 1);
  });
});
