import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/settlement/admission.js';
import { SettlementLine } from '../../src/settlement/settlement-line.js';
import type { SettlingUser } from '../../src/settlement/settling-user.js';

/** Lets pending promise callbacks run (admission holds no I/O: nothing to connect to). */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function users(count: number): SettlingUser[] {
  return Array.from({ length: count }, (_, n) => ({
    task: { uid: `u${n}`, source: { kind: 'replay', batchId: 'b', deadLetterId: '1', fence: '0' }, rewards: 1 },
    rank: 0,
    done: () => undefined,
  }));
}

/** Enters `admission` and records when the job is admitted. */
function enter(admission: Admission, signal: AbortSignal, rank?: number) {
  const job = { admitted: false, leave: (): void => undefined };
  void admission.enter(signal, rank).then((leave) => {
    job.admitted = true;
    job.leave = leave;
  });
  return job;
}

describe('admission of jobs into the settlement line', () => {
  it('lets one job load at a time, and only while the line is shorter than its limit', async () => {
    const line = new SettlementLine();
    const admission = new Admission(10, () => line.length);
    const signal = new AbortController().signal;
    const first = enter(admission, signal);
    const second = enter(admission, signal);
    await turn();
    expect([first.admitted, second.admitted]).toEqual([true, false]);
    // the first job's users are in line: 12, more than the limit
    line.join(users(12));
    first.leave();
    await turn();
    expect(second.admitted).toBe(false);
    // the line shortens below the limit: the settlement pipeline says so
    line.take(2);
    admission.check();
    await turn();
    expect(second.admitted).toBe(false); // 10 is not below 10
    line.take(1);
    admission.check();
    await turn();
    expect(second.admitted).toBe(true);
  });

  it('admits waiting jobs by rank, then in arrival order; leaving twice admits only one', async () => {
    const admission = new Admission(10, () => 0);
    const signal = new AbortController().signal;
    const loading = enter(admission, signal, 4);
    await turn();
    const waiting = new Map([
      ['late', enter(admission, signal, 9)],
      ['first-of-5', enter(admission, signal, 5)],
      ['urgent', enter(admission, signal, 1)],
      ['second-of-5', enter(admission, signal, 5)],
    ]);
    const order: string[] = [];
    let leave = loading.leave;
    for (let n = 0; n < waiting.size; n += 1) {
      leave();
      leave(); // a second call changes nothing: still one job at a time
      await turn();
      const admitted = [...waiting].filter(([name, job]) => job.admitted && !order.includes(name));
      expect(admitted).toHaveLength(1);
      order.push(admitted[0]![0]);
      leave = admitted[0]![1].leave;
    }
    expect(order).toEqual(['urgent', 'first-of-5', 'second-of-5', 'late']);
  });

  it('lets a waiting job go at once when its signal aborts (the worker stopping)', async () => {
    const admission = new Admission(10, () => 0);
    const loading = enter(admission, new AbortController().signal);
    const stopping = new AbortController();
    const waiting = enter(admission, stopping.signal);
    const other = enter(admission, new AbortController().signal);
    await turn();
    expect([loading.admitted, waiting.admitted, other.admitted]).toEqual([true, false, false]);
    stopping.abort();
    await turn();
    expect([waiting.admitted, other.admitted]).toEqual([true, false]);
    // an aborted signal is admitted at once too, even while others load
    const late = new AbortController();
    late.abort();
    expect((await Promise.race([admission.enter(late.signal).then(() => 'admitted'), turn()])) ?? 'waiting').toBe(
      'admitted',
    );
    loading.leave();
    waiting.leave();
    await turn();
    expect(other.admitted).toBe(false); // the aborted late job still loads
  });
});
