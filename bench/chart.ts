import type { MachineInfo } from './support.js';

/** One batch size of the scale run. */
export interface ChartPoint {
  readonly rewards: number;
  readonly usersPerSecond: number;
  readonly rewardsPerSecond: number;
  /** pgbench's one-statement ceiling measured next to it, transactions (users) per second. */
  readonly ceilingTps: number;
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function sizeLabel(rewards: number): string {
  if (rewards >= 1_000_000) return `${rewards / 1_000_000} M`;
  if (rewards >= 1000) return `${rewards / 1000} k`;
  return String(rewards);
}

/** A plain SVG bar chart: Windfall users/s beside the ceiling for each batch size, with the 0.8 × ceiling target. */
export function renderThroughputChart(points: readonly ChartPoint[], machine: MachineInfo): string {
  const width = 760;
  const height = 440;
  const left = 70;
  const right = 20;
  const top = 56;
  const bottom = 70;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const highest = Math.max(1, ...points.flatMap((p) => [p.usersPerSecond, p.ceilingTps]));
  const step = highest > 4000 ? 1000 : highest > 2000 ? 500 : highest > 800 ? 200 : 100;
  const yMax = Math.ceil((highest * 1.1) / step) * step;
  const y = (value: number): number => top + plotHeight - (value / yMax) * plotHeight;
  const group = plotWidth / Math.max(1, points.length);
  const bar = Math.min(70, group / 3.2);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  parts.push(
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">Windfall end to end vs the PostgreSQL ceiling, by batch size</text>`,
  );
  parts.push(
    `<text x="${width / 2}" y="40" text-anchor="middle" fill="#555">${escape(
      `${machine.cpus} CPUs · PostgreSQL ${machine.postgres} (fsync ${machine.fsync}) · Redis ${machine.redis} · Node ${machine.node} · 4 rewards per user`,
    )}</text>`,
  );
  for (let tick = 0; tick <= yMax; tick += step) {
    parts.push(`<line x1="${left}" x2="${width - right}" y1="${y(tick)}" y2="${y(tick)}" stroke="#e5e5e5"/>`);
    parts.push(
      `<text x="${left - 8}" y="${y(tick) + 4}" text-anchor="end" fill="#555">${tick.toLocaleString('en-US')}</text>`,
    );
  }
  parts.push(
    `<text transform="translate(18 ${top + plotHeight / 2}) rotate(-90)" text-anchor="middle" fill="#333">users (transactions) per second</text>`,
  );
  points.forEach((point, index) => {
    const center = left + group * index + group / 2;
    const ceilingX = center - bar - 2;
    const windfallX = center + 2;
    parts.push(
      `<rect x="${ceilingX}" y="${y(point.ceilingTps)}" width="${bar}" height="${y(0) - y(point.ceilingTps)}" fill="#b0b7c3"/>`,
    );
    parts.push(
      `<text x="${ceilingX + bar / 2}" y="${y(point.ceilingTps) - 5}" text-anchor="middle" fill="#333">${Math.round(point.ceilingTps).toLocaleString('en-US')}</text>`,
    );
    parts.push(
      `<rect x="${windfallX}" y="${y(point.usersPerSecond)}" width="${bar}" height="${y(0) - y(point.usersPerSecond)}" fill="#2f6fdf"/>`,
    );
    parts.push(
      `<text x="${windfallX + bar / 2}" y="${y(point.usersPerSecond) - 5}" text-anchor="middle" fill="#1b3f80">${Math.round(point.usersPerSecond).toLocaleString('en-US')}</text>`,
    );
    const target = y(point.ceilingTps * 0.8);
    parts.push(
      `<line x1="${ceilingX - 6}" x2="${windfallX + bar + 6}" y1="${target}" y2="${target}" stroke="#d9534f" stroke-dasharray="5 3" stroke-width="1.5"/>`,
    );
    const ratio = point.usersPerSecond / point.ceilingTps;
    parts.push(
      `<text x="${center}" y="${y(0) + 18}" text-anchor="middle" font-weight="bold">${sizeLabel(point.rewards)} rewards</text>`,
    );
    parts.push(
      `<text x="${center}" y="${y(0) + 34}" text-anchor="middle" fill="#555">${Math.round(point.rewardsPerSecond).toLocaleString('en-US')} rewards/s · ${ratio.toFixed(2)} × ceiling</text>`,
    );
  });
  const legendY = height - 14;
  parts.push(
    `<rect x="${left}" y="${legendY - 10}" width="12" height="12" fill="#b0b7c3"/><text x="${left + 18}" y="${legendY}">pgbench one-statement ceiling (same server, same clients)</text>`,
  );
  parts.push(
    `<rect x="${left + 340}" y="${legendY - 10}" width="12" height="12" fill="#2f6fdf"/><text x="${left + 358}" y="${legendY}">Windfall users/s</text>`,
  );
  parts.push(
    `<line x1="${left + 470}" x2="${left + 500}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="#d9534f" stroke-dasharray="5 3" stroke-width="1.5"/><text x="${left + 506}" y="${legendY}">0.8 × ceiling</text>`,
  );
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
