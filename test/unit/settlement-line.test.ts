import { describe, expect, it } from 'vitest';
import { SettlementLine } from '../../src/settlement/settlement-line.js';
import type { SettlingUser } from '../../src/settlement/settling-user.js';

/** A job's users `<job>-0`, `<job>-1`, … of one rank (the line holds no I/O: nothing to connect to). */
function job(name: string, users: number, rank: number): SettlingUser[] {
  return Array.from({ length: users }, (_, n) => ({
    task: {
      uid: `${name}-${n}`,
      source: { kind: 'replay', batchId: name, deadLetterId: name, fence: '0' },
      rewards: 1,
    },
    rank,
    done: () => undefined,
  }));
}

const uids = (users: readonly SettlingUser[]): string[] => users.map((user) => user.task.uid);

describe('settlement line', () => {
  it('keeps users in job rank order, then in arrival order', () => {
    const line = new SettlementLine();
    line.join(job('big', 3, 5));
    line.join(job('low', 2, 9));
    line.join(job('small', 2, 5)); // same rank as big: behind it, ahead of low
    line.join(job('urgent', 1, 1)); // ahead of everyone
    line.join(job('late', 1, 9)); // behind low
    expect(line.length).toBe(9);
    expect(uids(line.take(100))).toEqual([
      'urgent-0',
      'big-0',
      'big-1',
      'big-2',
      'small-0',
      'small-1',
      'low-0',
      'low-1',
      'late-0',
    ]);
    expect(line.length).toBe(0);
  });

  it('hands out users from the head, and a job of lower rank joining later goes ahead of the rest only', () => {
    const line = new SettlementLine();
    line.join(job('a', 4, 3));
    expect(uids(line.take(2))).toEqual(['a-0', 'a-1']);
    line.join(job('b', 2, 1));
    expect(line.length).toBe(4);
    expect(uids(line.take(3))).toEqual(['b-0', 'b-1', 'a-2']);
    expect(uids(line.take(3))).toEqual(['a-3']);
    expect(line.take(3)).toEqual([]);
  });

  it('puts users back at the head, in their order, whatever their rank', () => {
    const line = new SettlementLine();
    line.join(job('a', 3, 1));
    line.join(job('b', 2, 7));
    const taken = line.take(4); // a-0 … a-2, b-0
    line.putBack(taken.slice(3)); // b-0 (rank 7) goes back ahead of nobody but the head
    line.putBack(taken.slice(0, 2)); // a-0 and a-1 back in front of it
    line.join(job('c', 1, 3)); // rank 3: behind the put-back users of rank 1, ahead of those of rank 7
    expect(uids(line.take(100))).toEqual(['a-0', 'a-1', 'c-0', 'b-0', 'b-1']);
  });

  it('keeps its order while dropping users already taken (long lines)', () => {
    const line = new SettlementLine();
    line.join(job('big', 5000, 4));
    const first = [...line.take(1500), ...line.take(1500)];
    expect(uids(first.slice(0, 2))).toEqual(['big-0', 'big-1']);
    expect(uids(first.slice(-1))).toEqual(['big-2999']);
    line.join(job('small', 2, 2));
    line.putBack(first.slice(-2));
    expect(line.length).toBe(2004);
    expect(uids(line.take(5))).toEqual(['big-2998', 'big-2999', 'small-0', 'small-1', 'big-3000']);
    expect(uids(line.take(10_000)).slice(-1)).toEqual(['big-4999']);
  });

  it('hands everyone out when emptied (the worker stopping)', () => {
    const line = new SettlementLine();
    line.join(job('a', 3, 1));
    line.take(1);
    line.join([]); // a job without users changes nothing
    expect(uids(line.takeAll())).toEqual(['a-1', 'a-2']);
    expect(line.length).toBe(0);
    line.join(job('b', 1, 9));
    expect(uids(line.take(5))).toEqual(['b-0']);
  });
});
