import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/reconcile/reconcile.js';
import { balances, settledRewards } from './support/batches.js';
import { runCli } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { startWindfall, waitFor, waitForStarted, type WindfallProcess } from './support/redis-servers.js';
import { startServe, type ServeProcess } from './support/serve.js';
import {
  startPgBouncer,
  startReplicatedPostgres,
  type PgBouncer,
  type ReplicatedPostgres,
} from './support/topology.js';

/*
 * PostgreSQL failover behind PgBouncer (issue 19), as Patroni or pg_auto_failover do it: a primary with a synchronous
 * streaming standby (synchronous_standby_names names it, synchronous_commit on), PgBouncer in transaction pooling in
 * front of the primary. Mid-batch — once a third of the rewards are seen applied on the standby — the primary is
 * stopped `immediate` (a crash), the standby promoted and PgBouncer pointed at it. The worker (and `windfall serve`)
 * must carry on by themselves: the batch completes within 120 s of the promotion, every balance exact (nothing
 * committed lost, nothing doubled), nothing dead-lettered, `windfall reconcile` exit 0 against the new primary.
 */

const env = useTestEnvironment();
const DATABASE = 'windfall_failover';
const REWARDS = 60_000;
const USERS = 6000;

const dir = mkdtempSync(join(tmpdir(), 'windfall-failover-test-'));
let pair: ReplicatedPostgres;
let bouncer: PgBouncer;
let worker: WindfallProcess | undefined;
let serve: ServeProcess | undefined;
const pools: pg.Pool[] = [];

/** A fresh primary, synchronous standby and PgBouncer for each scenario (a promoted standby has no standby left). */
function useTopology(): void {
  beforeAll(async () => {
    pair = await startReplicatedPostgres({ maxConnections: 60 });
    bouncer = await startPgBouncer({ serverPort: pair.primary.port, poolMode: 'transaction', poolSize: 8 });
  }, 180_000);
  afterAll(async () => {
    await Promise.all(pools.splice(0).map((pool) => pool.end().catch(() => undefined)));
    await bouncer?.stop();
    await pair?.destroy();
  });
}
afterEach(async () => {
  await worker?.kill9();
  worker = undefined;
  await serve?.stop();
  serve = undefined;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Environment of a `windfall` process whose DATABASE_URL names PgBouncer. */
const bouncerEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv =>
  env.env({ DATABASE_URL: bouncer.url(DATABASE), ...extra });

/** A pool straight to one server of the pair, for observing and checking (never through the pooler). */
function poolOn(port: number): pg.Pool {
  const pool = new pg.Pool({ host: '127.0.0.1', port, user: 'postgres', database: DATABASE, max: 2 });
  pool.on('error', () => undefined);
  pools.push(pool);
  return pool;
}

/** The batch as JSON Lines, and each user's expected credit. */
function rewardFile(batchId: string): { file: string; expected: Map<string, bigint> } {
  const expected = new Map<string, bigint>();
  const lines: string[] = [];
  for (let n = 0; n < REWARDS; n += 1) {
    const uid = `fo-u${(n * 17) % USERS}`;
    const amount = 1 + (n % 53);
    expected.set(uid, (expected.get(uid) ?? 0n) + BigInt(amount));
    lines.push(JSON.stringify({ rewardId: `${batchId}-${n}`, uid, amount }));
  }
  const file = join(dir, `${batchId}.jsonl`);
  writeFileSync(file, lines.join('\n') + '\n');
  return { file, expected };
}

/** When the standby is promoted after the primary's crash. */
type Promotion = 'at once' | 'after an outage of seconds';

/** How PgBouncer is pointed at the new primary: its config reloaded (`RELOAD`, `RECONNECT`), or the process restarted. */
type Repoint = 'reload' | 'restart';

async function failover(batchId: string, promotion: Promotion, repoint: Repoint = 'reload'): Promise<void> {
  const { file, expected } = rewardFile(batchId);
  const migrated = await runCli(['migrate'], bouncerEnv());
  expect(migrated.code, migrated.stderr).toBe(0);
  const standby = poolOn(pair.standby.port);

  serve = await startServe(bouncerEnv());
  worker = startWindfall(['worker'], bouncerEnv({ LOG_LEVEL: 'info' }));
  await waitForStarted([worker]);
  const enqueued = await runCli(['enqueue', '--file', file, '--batch-id', batchId], bouncerEnv());
  expect(enqueued.code, enqueued.stderr).toBe(0);
  const enqueuedAt = Date.now();

  // the fault follows progress: a third of the rewards applied, as the standby shows it
  await waitFor(
    async () => (await settledRewards(standby, batchId)) >= REWARDS * 0.3,
    '30 % applied on the standby',
    120_000,
    20,
  );
  const report = async (): Promise<Response> =>
    fetch(`${serve!.baseUrl}/v1/batches/${batchId}`, {
      headers: { authorization: `Bearer ${serve!.apiToken}` },
      signal: AbortSignal.timeout(5000),
    });
  const atCrash = await settledRewards(standby, batchId);
  await pair.stopPrimary('immediate');
  const crashedAt = Date.now();
  let noticedAfterMs: number | undefined;
  let outageMs: number | undefined;
  let duringOutage: string | undefined;
  if (promotion === 'after an outage of seconds') {
    // as Patroni would after its TTL: the worker meets the outage first (the pooler cannot reach a server)
    await waitFor(
      () => /PostgreSQL cannot work now/.test(worker!.output()),
      'the worker to pause for PostgreSQL',
      60_000,
      20,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\nworker: ${worker!.output().slice(-4000)}`);
    });
    noticedAfterMs = Date.now() - crashedAt;
    // and the pooler has tried the dead primary again and again (server_login_retry 1 s): an outage of seconds with
    // the worker's clients waiting in the pooler, its probes and statements timing out
    await waitFor(
      () => (bouncer.log().match(/closing because: connect failed/g) ?? []).length >= 5,
      'the pooler to fail 5 connection attempts to the dead primary',
      60_000,
      50,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\npgbouncer: ${bouncer.log().slice(-3000)}`);
    });
    outageMs = Date.now() - crashedAt;
    // what a client of serve sees meanwhile
    duringOutage = await report().then(
      (response) => String(response.status),
      (error: Error) => `no answer (${error.name})`,
    );
    // 503 with Retry-After (PostgreSQL unavailable: try again), never a 500
    expect(duringOutage).toMatch(/^(503|no answer)/);
  }
  await pair.promoteStandby();
  if (repoint === 'reload') await bouncer.repoint('127.0.0.1', pair.standby.port);
  else await bouncer.restart('127.0.0.1', pair.standby.port);
  const promotedAt = Date.now();
  let serveAnsweredAfterMs: number | undefined;
  const serveAnswered = waitFor(
    async () => (await report().catch(() => null))?.status === 200,
    'GET /v1/batches/:id to answer after the promotion',
    60_000,
    100,
  ).then(
    () => ((serveAnsweredAfterMs = Date.now() - promotedAt), true),
    () => false,
  );
  const atPromotion = await settledRewards(standby, batchId);
  expect(atPromotion).toBeLessThan(REWARDS);

  const primary = standby; // the same server, a primary now
  await waitFor(
    async () => (await settledRewards(primary, batchId)) >= REWARDS,
    'every reward applied on the new primary',
    120_000,
    100,
  ).catch(async (error: Error) => {
    const { rows: activity } = await primary.query<{ state: string; wait_event: string | null; n: number }>(
      `select state, wait_event, count(*)::int as n from pg_stat_activity
         where datname = $1 and pid <> pg_backend_pid() group by 1, 2`,
      [DATABASE],
    );
    throw new Error(
      `${error.message}: ${await settledRewards(primary, batchId)} of ${REWARDS} applied ` +
        `(${atPromotion} at the promotion); sessions on the new primary: ${JSON.stringify(activity)}\n` +
        `pools: ${JSON.stringify(await bouncer.admin('SHOW POOLS').catch(() => []))}\n` +
        `worker: ${worker!.output().slice(-6000)}`,
    );
  });
  const completedAfterMs = Date.now() - promotedAt;
  expect(completedAfterMs).toBeLessThan(120_000);

  // serve answers through the new primary without a restart (its first answer after the promotion came first)
  expect(await serveAnswered, `serve ${serveAnsweredAfterMs ?? 'did not answer'}`).toBe(true);
  expect(await (await report()).json()).toMatchObject({
    batchId,
    status: 'completed',
    total: REWARDS,
    applied: REWARDS,
    deadLettered: 0,
  });

  const stopped = await worker.stop();
  const output = worker.output();
  expect(stopped, output.slice(-4000)).toBe(0);
  const { rows: deadLetters } = await primary.query<{ n: number }>('select count(*)::int as n from dead_letters');
  expect(deadLetters[0]!.n).toBe(0);
  const { rows: ledger } = await primary.query<{ entries: number; ids: number }>(
    'select count(*)::int as entries, count(distinct operation_id)::int as ids from ledger_entries',
  );
  expect(ledger[0]).toEqual({ entries: REWARDS, ids: REWARDS });
  const after = await balances(primary);
  expect(after.size).toBe(USERS);
  for (const [uid, amount] of expected) expect(after.get(uid), uid).toBe(amount);
  expect((await reconcile(primary, { strict: true })).mismatches).toEqual([]);
  const reconciled = await runCli(['reconcile'], bouncerEnv());
  expect(reconciled.code, reconciled.stdout + reconciled.stderr).toBe(0);

  console.info(
    `postgres failover behind pgbouncer (promoted ${promotion}): ${REWARDS} rewards; ${atCrash} applied at the ` +
      `crash (${crashedAt - enqueuedAt} ms after the enqueue)` +
      (noticedAfterMs !== undefined
        ? `, the worker paused ${noticedAfterMs} ms after the crash, promoted after ${outageMs} ms of outage`
        : '') +
      `; ${atPromotion} at the promotion (${promotedAt - crashedAt} ms after the crash, pgbouncer ${repoint === 'reload' ? 'repointed' : 'restarted'}); ` +
      `batch done ${completedAfterMs} ms after the promotion; GET /v1/batches/:id ` +
      (duringOutage !== undefined ? `answered ${duringOutage} during the outage, ` : '') +
      `200 again ${serveAnsweredAfterMs} ms after the promotion`,
  );
}

describe('PostgreSQL failover behind PgBouncer: the standby promoted at once', () => {
  useTopology();
  it('the worker and serve carry on by themselves: the batch completes within 120 s of the promotion, exact, nothing dead-lettered, reconcile exit 0', async () => {
    await failover('fo-fast', 'at once');
  }, 300_000);
});

describe('PostgreSQL failover behind PgBouncer: the standby promoted after seconds of outage (the worker paused, the pooler retrying)', () => {
  useTopology();
  it('the worker and serve carry on by themselves: the batch completes within 120 s of the promotion, exact, nothing dead-lettered, reconcile exit 0', async () => {
    await failover('fo-slow', 'after an outage of seconds');
  }, 300_000);
});

describe('PostgreSQL failover behind PgBouncer: the standby promoted at once, PgBouncer restarted on its port (not reloaded)', () => {
  useTopology();
  it('the worker and serve carry on by themselves: the batch completes within 120 s of the promotion, exact, nothing dead-lettered, reconcile exit 0', async () => {
    await failover('fo-restart', 'at once', 'restart');
  }, 300_000);
});
