import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { quoteIdentifier } from '../src/db/create-database.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import { balances, settledRewards } from './support/batches.js';
import { runCli } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { startWindfall, waitFor, waitForStarted, type WindfallProcess } from './support/redis-servers.js';
import { startPgBouncer, type PgBouncer } from './support/topology.js';

/*
 * The acceptance of issue 19 through PgBouncer (Debian's 1.18: no protocol-level prepared statements) in transaction
 * pooling, pool size 4, two worker processes: `windfall migrate` twice, seven overlapping concurrent enqueues of
 * 3,000 rewards over the same 300 users, every balance exact, nothing dead-lettered, `windfall reconcile` exit 0;
 * then `windfall batch revert` of one batch through PgBouncer debits every wallet exactly. With named statements the
 * issue saw 4,382 of 18,000 rewards dead-lettered in this scenario (42P05 "prepared statement … already exists"); with
 * the wallet statements named again, the revert here leaves 31-53 users unreverted (42P05 / 26000).
 */

const env = useTestEnvironment();
const BATCHES = 7;
const REWARDS_PER_BATCH = 3000;
const USERS = 300;

const dir = mkdtempSync(join(tmpdir(), 'windfall-pgbouncer-test-'));
/** A database of its own, created by `windfall migrate` through the pooler. */
const database = `${new URL(env.databaseUrl).pathname.slice(1)}_pgb`;
const direct = (): string => {
  const url = new URL(env.databaseUrl);
  url.pathname = `/${database}`;
  return url.toString();
};
let bouncer: PgBouncer;
let pool: pg.Pool | undefined;
let workers: WindfallProcess[] = [];

beforeAll(async () => {
  const server = new URL(env.databaseUrl);
  bouncer = await startPgBouncer({
    serverHost: server.hostname,
    serverPort: Number(server.port || 5432),
    poolMode: 'transaction',
    poolSize: 4,
  });
});
afterEach(async () => {
  await Promise.all(workers.map((worker) => worker.kill9()));
  workers = [];
});
afterAll(async () => {
  await pool?.end();
  await bouncer?.stop();
  rmSync(dir, { recursive: true, force: true });
  const admin = new pg.Client({ connectionString: env.databaseUrl });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${quoteIdentifier(database)} with (force)`);
  } finally {
    await admin.end();
  }
});

/** Environment of a `windfall` process whose DATABASE_URL names PgBouncer. */
const bouncerEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv =>
  env.env({ DATABASE_URL: bouncer.url(database), ...extra });

/** Batch `n`'s rewards as JSON Lines over the same 300 users; returns the file and each user's credit. */
function rewardFile(batchId: string, n: number): { file: string; credits: Map<string, bigint> } {
  const credits = new Map<string, bigint>();
  const lines: string[] = [];
  for (let i = 0; i < REWARDS_PER_BATCH; i += 1) {
    const uid = `pgb-u${(i * 7 + n) % USERS}`;
    const amount = 1 + ((i + n * 11) % 97);
    credits.set(uid, (credits.get(uid) ?? 0n) + BigInt(amount));
    lines.push(JSON.stringify({ rewardId: `${batchId}-${i}`, uid, amount }));
  }
  const file = join(dir, `${batchId}.jsonl`);
  writeFileSync(file, lines.join('\n') + '\n');
  return { file, credits };
}

async function deadLetters(): Promise<number> {
  const { rows } = await pool!.query<{ n: number }>('select count(*)::int as n from dead_letters');
  return rows[0]!.n;
}

describe('through PgBouncer 1.18 in transaction pooling (pool size 4, two workers)', () => {
  it('migrate twice, seven overlapping enqueues: every balance exact, nothing dead-lettered, reconcile exit 0; a batch revert debits exactly', async () => {
    const startedAt = Date.now();
    // twice at once (serialized by the transaction-level advisory lock), then once more: idempotent
    const migrations = await Promise.all([runCli(['migrate'], bouncerEnv()), runCli(['migrate'], bouncerEnv())]);
    for (const result of migrations) expect(result.code, result.stderr).toBe(0);
    const again = await runCli(['migrate'], bouncerEnv());
    expect(again.code, again.stderr).toBe(0);
    pool = new pg.Pool({ connectionString: direct(), max: 4 });
    pool.on('error', () => undefined);

    const workerEnv = bouncerEnv({ LOG_LEVEL: 'info' });
    workers = [startWindfall(['worker'], workerEnv), startWindfall(['worker'], workerEnv)];
    await waitForStarted(workers);

    const batchIds = Array.from({ length: BATCHES }, (_, n) => `pgb-${n}`);
    const files = batchIds.map((batchId, n) => rewardFile(batchId, n));
    const expected = new Map<string, bigint>();
    for (const { credits } of files)
      for (const [uid, amount] of credits) expected.set(uid, (expected.get(uid) ?? 0n) + amount);
    // seven CLI processes at once: their batches' jobs overlap on the same 300 wallets
    const enqueued = await Promise.all(
      batchIds.map((batchId, n) =>
        runCli(['enqueue', '--file', files[n]!.file, '--batch-id', batchId, '--json'], bouncerEnv()),
      ),
    );
    for (const result of enqueued) expect(result.code, result.stderr).toBe(0);
    expect(enqueued.map((result) => JSON.parse(result.stdout))).toEqual(
      batchIds.map((batchId) => ({ batchId, total: REWARDS_PER_BATCH })),
    );

    const settled = async (): Promise<number> => {
      let total = 0;
      for (const batchId of batchIds) total += await settledRewards(pool!, batchId);
      return total;
    };
    await waitFor(
      async () => (await settled()) >= BATCHES * REWARDS_PER_BATCH,
      'every batch settled',
      45_000,
      100,
    ).catch(async (error: Error) => {
      throw new Error(
        `${error.message}: ${await settled()} of ${BATCHES * REWARDS_PER_BATCH} settled, ${await deadLetters()} dead-lettered\n` +
          workers.map((worker) => worker.output().slice(-3000)).join('\n----\n'),
      );
    });
    const settledAfterMs = Date.now() - startedAt;

    const { rows: deadLetterReasons } = await pool.query<{ reason: string; n: number }>(
      'select reason, sum(reward_count)::int as n from dead_letters group by reason',
    );
    expect(deadLetterReasons).toEqual([]);
    const { rows: ledger } = await pool.query<{ entries: number; ids: number }>(
      'select count(*)::int as entries, count(distinct operation_id)::int as ids from ledger_entries',
    );
    expect(ledger[0]).toEqual({ entries: BATCHES * REWARDS_PER_BATCH, ids: BATCHES * REWARDS_PER_BATCH });
    const after = await balances(pool);
    expect(after.size).toBe(USERS);
    for (const [uid, amount] of expected) expect(after.get(uid), uid).toBe(amount);
    const reconciled = await runCli(['reconcile'], bouncerEnv());
    expect(reconciled.code, reconciled.stdout + reconciled.stderr).toBe(0);

    // a revert through a pooler that hands out its server connections in turn (`server_round_robin = 1`): each of
    // the revert's statements meets another server connection than its last. (With the default, LIFO, a client meets
    // the same server connection again and again — pg-pool and PgBouncer both hand out the last one released — and
    // a named prepared statement failed in only some runs, however much other traffic shared the pooler.)
    const roundRobin = await startPgBouncer({
      serverHost: bouncer.server.host,
      serverPort: bouncer.server.port,
      poolMode: 'transaction',
      poolSize: 4,
      settings: { server_round_robin: 1 },
    });
    const reverted = await runCli(
      ['batch', 'revert', batchIds[3]!, '--yes', '--json'],
      env.env({ DATABASE_URL: roundRobin.url(database) }),
    ).finally(() => roundRobin.stop());
    expect(reverted.code, reverted.stdout + reverted.stderr).toBe(0);
    expect(JSON.parse(reverted.stdout)).toMatchObject({
      batchId: batchIds[3],
      dryRun: false,
      reverted: REWARDS_PER_BATCH,
      alreadyReverted: 0,
      insufficientFunds: [],
    });
    expect(await deadLetters()).toBe(0);
    const afterRevert = await balances(pool);
    for (const [uid, amount] of expected)
      expect(afterRevert.get(uid), uid).toBe(amount - (files[3]!.credits.get(uid) ?? 0n));
    const status = await runCli(['batch', batchIds[3]!, '--json'], bouncerEnv());
    expect(JSON.parse(status.stdout)).toMatchObject({ status: 'reverted' });
    const reconciledAfterRevert = await runCli(['reconcile'], bouncerEnv());
    expect(reconciledAfterRevert.code, reconciledAfterRevert.stdout + reconciledAfterRevert.stderr).toBe(0);
    expect((await reconcile(pool, { strict: true })).mismatches).toEqual([]);

    const codes = await Promise.all(workers.map((worker) => worker.stop()));
    expect(codes, workers.map((worker) => worker.output().slice(-3000)).join('\n----\n')).toEqual([0, 0]);
    console.info(
      `pgbouncer (transaction, pool 4, 2 workers): ${BATCHES} × ${REWARDS_PER_BATCH} rewards over ${USERS} users ` +
        `migrated, enqueued and settled ${settledAfterMs} ms after the start; revert of ${REWARDS_PER_BATCH} rewards ok`,
    );
  }, 90_000);
});
