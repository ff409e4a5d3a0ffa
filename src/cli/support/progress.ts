import type { BatchReport } from '../../status/batch-status.js';
import { formatCount } from './output.js';

/** Options of {@link watchBatch}. */
export interface WatchOptions {
  /** Draw a redrawn bar (a terminal) or print plain lines (logs, pipes). Default: whether stderr is a TTY. */
  readonly tty?: boolean;
  /** Poll interval. Default 500 ms on a terminal, 1000 ms otherwise. */
  readonly pollMs?: number;
  /** Plain-line interval when not a terminal. Default 5000 ms. */
  readonly lineEveryMs?: number;
  /** After this long without progress, say once that no worker may be running. Default 30000 ms. */
  readonly stallNoticeMs?: number;
  /** Where progress goes. Default standard error. */
  readonly write?: (text: string) => void;
  readonly signal?: AbortSignal;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes}m${String(Math.ceil(seconds % 60)).padStart(2, '0')}s`;
}

/** One progress line: bar (terminal only), settled/total, rate, ETA and the split by outcome. */
export function describeProgress(report: BatchReport, elapsedMs: number, bar: boolean): string {
  const settled = report.total - report.pending;
  const ratio = report.total === 0 ? 1 : settled / report.total;
  const rate = elapsedMs > 0 ? (settled / elapsedMs) * 1000 : 0;
  const eta = rate > 0 ? report.pending / rate : Number.POSITIVE_INFINITY;
  const width = 24;
  const filled = Math.round(ratio * width);
  const prefix = bar ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` : `batch ${report.batchId}: `;
  return (
    `${prefix}${(ratio * 100).toFixed(1)}% ${formatCount(settled)}/${formatCount(report.total)} rewards · ` +
    `${formatCount(Math.round(rate))}/s · ETA ${report.pending === 0 ? '0s' : formatDuration(eta)} · ` +
    `applied ${formatCount(report.applied)}, duplicate ${formatCount(report.duplicate)}, dead-lettered ${formatCount(report.deadLettered)}`
  );
}

/**
 * Polls a batch until nothing is pending, showing progress: a bar redrawn in place on a terminal, a plain line
 * every few seconds elsewhere. Resolves with the final report.
 */
export async function watchBatch(read: () => Promise<BatchReport>, options: WatchOptions = {}): Promise<BatchReport> {
  const tty = options.tty ?? Boolean(process.stderr.isTTY);
  const write = options.write ?? ((text: string) => process.stderr.write(text));
  const pollMs = options.pollMs ?? (tty ? 500 : 1000);
  const lineEveryMs = options.lineEveryMs ?? 5000;
  const started = Date.now();
  const stallNoticeMs = options.stallNoticeMs ?? 30_000;
  let lastLine = 0;
  let lastSettled = -1;
  let lastChange = started;
  let noticed = false;
  for (;;) {
    const report = await read();
    const elapsed = Date.now() - started;
    const done = report.pending === 0;
    const settled = report.total - report.pending;
    if (settled !== lastSettled) {
      lastSettled = settled;
      lastChange = Date.now();
    } else if (!noticed && Date.now() - lastChange >= stallNoticeMs) {
      noticed = true;
      write(
        `${tty ? '\n' : ''}no progress for ${Math.round(stallNoticeMs / 1000)} s: is a worker running (\`windfall worker\`)? ` +
          'Check `windfall queues` and `windfall lock status <uid>`.\n',
      );
    }
    if (tty) {
      write(`\r${describeProgress(report, elapsed, true)}\u001b[K${done ? '\n' : ''}`);
    } else if (done || Date.now() - lastLine >= lineEveryMs) {
      lastLine = Date.now();
      write(`${describeProgress(report, elapsed, false)}\n`);
    }
    if (done) return report;
    if (options.signal?.aborted) throw options.signal.reason;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
