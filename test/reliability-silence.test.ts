import { afterEach, describe, expect, it } from 'vitest';
import { reconcile } from '../src/reconcile/reconcile.js';
import { balances, rewardRows, settledRewards } from './support/batches.js';
import { useTestEnvironment } from './support/environment.js';
import { startWindfall, waitFor, waitForStarted, type WindfallProcess } from './support/redis-servers.js';
import { startFaultProxy, type FaultProxy } from './support/topology.js';
import { startServe } from './support/serve.js';

/*
 * Silent connections (issue 19): a worker's connections stop getting answers — no reset, no FIN — while new
 * connections work, as after a failover to another host or a dropped NAT entry. The worker must notice within its
 * silence budget (default settings here), log it once naming the service, pause without failing a reward or
 * spending an attempt, reconnect and finish: exact balances, nothing dead-lettered.
 */

const env = useTestEnvironment();
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const TOTAL = 40_000;

function proxied(url: string, proxy: FaultProxy): string {
  const parsed = new URL(url);
  parsed.hostname = proxy.host;
  parsed.port = String(proxy.port);
  return parsed.toString();
}

async function stagedBatch(batchId: string): Promise<Map<string, bigint>> {
  const producer = await env.open({ chunkSize: 500, jobAttempts: 1 });
  const rows = rewardRows(TOTAL, (n) => ({
    rewardId: `${batchId}-${n}`,
    uid: `${batchId}-u${(n * 31) % 2000}`,
    amount: 1 + (n % 13),
  }));
  const expected = new Map<string, bigint>();
  for (const row of rows) expected.set(row.uid, (expected.get(row.uid) ?? 0n) + BigInt(row.amount));
  await producer.producer.enqueueRewards(rows, { batchId });
  await producer.close();
  return expected;
}

function worker(extra: Record<string, string>): WindfallProcess {
  const process = startWindfall(['worker'], env.env({ LOG_LEVEL: 'info', WINDFALL_JOB_ATTEMPTS: '1', ...extra }));
  cleanups.push(() => process.kill9());
  return process;
}

/** Lines of `output` logged at warn or above that mention `service`. */
function warningsAbout(output: string, service: string): string[] {
  return output.split('\n').filter((line) => /"level":"(warn|error|fatal)"/.test(line) && line.includes(service));
}

describe('silent connections: detected, logged once, survived', () => {
  it("PostgreSQL: the worker's connections go silent mid-batch (new ones fine); the batch completes exact", async () => {
    const batchId = 'sil-pg';
    const expected = await stagedBatch(batchId);
    const proxy = await startFaultProxy({
      target: { host: '127.0.0.1', port: Number(new URL(env.databaseUrl).port || 5432) },
    });
    cleanups.push(() => proxy.close());
    const process = worker({ DATABASE_URL: proxied(env.databaseUrl, proxy) });
    await waitForStarted([process]);
    await waitFor(async () => (await settledRewards(env.pool, batchId)) >= TOTAL / 10, '10 % settled', 120_000, 50);

    const silenced = proxy.silence();
    const faultAt = Date.now();
    expect(silenced).toBeGreaterThan(0);
    await waitFor(
      async () => (await settledRewards(env.pool, batchId)) >= TOTAL,
      'every reward settled',
      120_000,
      200,
    ).catch(async (error: Error) => {
      throw new Error(
        `${error.message} (settled ${await settledRewards(env.pool, batchId)})\nworker: ${process.output().slice(-6000)}`,
      );
    });
    const tookMs = Date.now() - faultAt;
    const stopped = await Promise.race([
      process.stop(),
      new Promise((resolve) => setTimeout(() => resolve('still running 60 s after SIGTERM'), 60_000)),
    ]);
    const output = process.output();
    expect(stopped, output.slice(-4000)).toBe(0);

    expect(tookMs, output.slice(-3000)).toBeLessThan(120_000);
    const { rows } = await env.pool.query<{ n: number }>(
      'select count(*)::int as n from dead_letters where batch_id = $1',
      [batchId],
    );
    expect(rows[0]!.n).toBe(0);
    const after = await balances(env.pool);
    for (const [uid, amount] of expected) expect(after.get(uid), uid).toBe(amount);
    // named, and logged once for the outage (then one line when it resumes), not once per job
    const warnings = warningsAbout(output, 'PostgreSQL');
    expect(
      warnings.some((line) => line.includes('went silent')),
      output.slice(-3000),
    ).toBe(true);
    expect(warnings.length, warnings.join('\n')).toBeLessThanOrEqual(4);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 300_000);

  it("Redis: the worker's connections go silent mid-batch (new ones fine); the batch completes exact", async () => {
    const batchId = 'sil-redis';
    const expected = await stagedBatch(batchId);
    const proxy = await startFaultProxy({
      target: { host: '127.0.0.1', port: Number(new URL(env.redisUrl).port || 6379) },
    });
    cleanups.push(() => proxy.close());
    const process = worker({ REDIS_URL: proxied(env.redisUrl, proxy) });
    await waitForStarted([process]);
    await waitFor(async () => (await settledRewards(env.pool, batchId)) >= TOTAL / 10, '10 % settled', 120_000, 50);

    expect(proxy.silence()).toBeGreaterThan(0);
    const faultAt = Date.now();
    await waitFor(
      async () => (await settledRewards(env.pool, batchId)) >= TOTAL,
      'every reward settled',
      120_000,
      200,
    ).catch(async (error: Error) => {
      throw new Error(
        `${error.message} (settled ${await settledRewards(env.pool, batchId)})\nworker: ${process.output().slice(-6000)}`,
      );
    });
    const tookMs = Date.now() - faultAt;
    const stopped = await Promise.race([
      process.stop(),
      new Promise((resolve) => setTimeout(() => resolve('still running 60 s after SIGTERM'), 60_000)),
    ]);
    const output = process.output();
    expect(stopped, output.slice(-4000)).toBe(0);
    expect(tookMs, output.slice(-3000)).toBeLessThan(120_000);
    const { rows } = await env.pool.query<{ n: number }>(
      'select count(*)::int as n from dead_letters where batch_id = $1',
      [batchId],
    );
    expect(rows[0]!.n).toBe(0);
    const after = await balances(env.pool);
    for (const [uid, amount] of expected) expect(after.get(uid), uid).toBe(amount);
    const warnings = warningsAbout(output, 'Redis');
    expect(
      warnings.some((line) => line.includes('Socket timeout')),
      output.slice(-3000),
    ).toBe(true);
    expect(warnings.length, warnings.join('\n')).toBeLessThanOrEqual(4);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  }, 300_000);
});

describe('silent connections: windfall serve', () => {
  it("PostgreSQL: serve's connections go silent (new ones fine): the request caught is answered 503 after the deadline, the next ones at once", async () => {
    const proxy = await startFaultProxy({
      target: { host: '127.0.0.1', port: Number(new URL(env.databaseUrl).port || 5432) },
    });
    cleanups.push(() => proxy.close());
    // the smallest silence budget: serve's deadline is its allowance (60 s) + 1 s
    const server = await startServe(
      env.env({ DATABASE_URL: proxied(env.databaseUrl, proxy), WINDFALL_PG_SILENCE_MS: '1000' }),
    );
    cleanups.push(() => server.stop());
    const lookUp = (signal?: AbortSignal): Promise<Response> =>
      fetch(`${server.baseUrl}/v1/batches/no-such-batch`, {
        headers: { authorization: `Bearer ${server.apiToken}` },
        ...(signal ? { signal } : {}),
      });
    // a few connections in the pool, idle, all through the proxy
    const warm = await Promise.all(Array.from({ length: 4 }, () => lookUp()));
    expect(warm.map((response) => response.status)).toEqual([404, 404, 404, 404]);

    expect(proxy.silence()).toBeGreaterThan(0);
    const faultAt = Date.now();
    // the request lands on a silent connection: without a deadline it would wait for TCP (a quarter of an hour)
    const caught = await lookUp(AbortSignal.timeout(120_000));
    const answeredAfterMs = Date.now() - faultAt;
    expect(caught.status, server.process.output().slice(-3000)).toBe(503);
    expect(caught.headers.get('retry-after')).toBe('5');
    expect(answeredAfterMs).toBeGreaterThanOrEqual(60_000);
    expect(answeredAfterMs).toBeLessThan(90_000);
    // the pool started afresh: the next request is answered at once, through a new connection
    const nextAt = Date.now();
    const next = await lookUp(AbortSignal.timeout(10_000));
    expect(next.status).toBe(404);
    expect(Date.now() - nextAt).toBeLessThan(5000);
    console.log(`serve: 503 ${answeredAfterMs} ms after the silence, then 404 in ${Date.now() - nextAt} ms`);
  }, 180_000);
});
