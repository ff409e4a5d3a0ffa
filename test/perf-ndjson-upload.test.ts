import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestEnvironment } from './support/environment.js';
import { startServe, type ServeProcess } from './support/serve.js';
import { postNdjson, rewardLines } from './support/streamed-batch.js';

const env = useTestEnvironment();
let server: ServeProcess;
const ROWS = 2_000_000;
/** The bound on `windfall serve` while it takes a 2,000,000-reward upload. */
const MAX_RSS_MB = 256;

beforeAll(async () => {
  server = await startServe(env.env());
});
afterAll(async () => {
  await server?.stop();
});

/** The serve process's peak resident set so far, in MB (Linux: VmHWM). */
function peakRssMb(): number {
  const status = readFileSync(`/proc/${server.process.child.pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1]) / 1024;
}

describe('a streamed batch of 2,000,000 rewards (POST /v1/batches as application/x-ndjson)', () => {
  it(`is accepted with serve's peak RSS ≤ ${MAX_RSS_MB} MB; one bad row refuses such a body whole, recording nothing`, async () => {
    const before = peakRssMb();
    const accepted = await postNdjson(
      server.baseUrl,
      server.apiToken,
      { batchId: 'big-ndjson' },
      rewardLines('bn', ROWS),
    );
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(202);
    expect(accepted.body).toEqual({ batchId: 'big-ndjson', total: ROWS, created: true });
    const { rows } = await env.pool.query<{ total: number; staged: number }>(
      `select total, (select count(*)::int from reward_batch_items where batch_id = 'big-ndjson') as staged
       from reward_batches where batch_id = 'big-ndjson'`,
    );
    expect(rows).toEqual([{ total: ROWS, staged: ROWS }]);
    const peak = peakRssMb();
    console.log(
      `serve peak RSS: ${before.toFixed(0)} MB before the upload, ${peak.toFixed(0)} MB after (${accepted.sentBytes} bytes)`,
    );
    expect(peak).toBeLessThanOrEqual(MAX_RSS_MB);

    // the bad row is the second last: every row before it was staged, then rolled back
    const refused = await postNdjson(
      server.baseUrl,
      server.apiToken,
      { batchId: 'big-ndjson-bad' },
      rewardLines('bb', ROWS, { bad: ROWS - 1 }),
    );
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({
      error: 'invalid batch',
      errors: [{ row: ROWS - 1, field: 'amount', code: 'amount_fraction' }],
      totalErrors: 1,
      rowsRead: ROWS,
    });
    const left = await env.pool.query<{ batches: number; items: number }>(
      `select (select count(*)::int from reward_batches where batch_id = 'big-ndjson-bad') as batches,
              (select count(*)::int from reward_batch_items where batch_id = 'big-ndjson-bad') as items`,
    );
    expect(left.rows).toEqual([{ batches: 0, items: 0 }]);
    // a second body of the same size in the same process: V8 keeps part of the heap the first one grew, so the
    // bound is the first's plus a margin (the bound is for one upload)
    expect(peakRssMb()).toBeLessThanOrEqual(MAX_RSS_MB + 32);
  }, 600_000);
});
