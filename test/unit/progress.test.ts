import { describe, expect, it } from 'vitest';
import type { BatchReport } from '../../src/status/batch-status.js';
import { describeProgress, watchBatch } from '../../src/cli/support/progress.js';

const report = (settled: number, total = 100): BatchReport => ({
  batchId: 'b',
  status: settled === total ? 'completed' : settled === 0 ? 'pending' : 'processing',
  total,
  applied: settled,
  duplicate: 0,
  deadLettered: 0,
  pending: total - settled,
  cancelled: 0,
  campaignId: null,
  priority: 'normal',
  reverted: 0,
  createdAt: new Date(0).toISOString(),
});

describe('progress', () => {
  it('shows settled/total, rate, ETA and the split by outcome', () => {
    expect(describeProgress(report(40), 2000, false)).toBe(
      'batch b: 40.0% 40/100 rewards · 20/s · ETA 3s · applied 40, duplicate 0, dead-lettered 0',
    );
    expect(describeProgress(report(50), 1000, true)).toMatch(/^\[#{12}\.{12}\] 50\.0% 50\/100/);
  });

  it('prints plain lines off a terminal and returns the final report', async () => {
    const reads = [report(0), report(30), report(100)];
    const lines: string[] = [];
    const final = await watchBatch(async () => reads.shift() ?? report(100), {
      tty: false,
      pollMs: 1,
      lineEveryMs: 0,
      write: (t) => lines.push(t),
    });
    expect(final.pending).toBe(0);
    expect(lines).toHaveLength(3);
    expect(lines.every((line) => line.endsWith('\n') && !line.includes('\r'))).toBe(true);
  });

  it('redraws one line on a terminal', async () => {
    const reads = [report(10), report(100)];
    const out: string[] = [];
    await watchBatch(async () => reads.shift() ?? report(100), { tty: true, pollMs: 1, write: (t) => out.push(t) });
    expect(out.every((chunk) => chunk.startsWith('\r'))).toBe(true);
    expect(out.at(-1)!.endsWith('\n')).toBe(true);
  });

  it('says once when nothing moves, pointing at the worker', async () => {
    let polls = 0;
    const out: string[] = [];
    await watchBatch(async () => (++polls < 6 ? report(10) : report(100)), {
      tty: false,
      pollMs: 5,
      lineEveryMs: 1e9,
      stallNoticeMs: 10,
      write: (t) => out.push(t),
    });
    expect(out.filter((line) => line.includes('no progress'))).toHaveLength(1);
    expect(out.join('')).toContain('windfall worker');
  });
});
