import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listDeadLetters } from '../src/dead-letters/dead-letter-store.js';
import { balances, ledgerMismatches, rewardRows, waitForBatchDone } from './support/batches.js';
import { eventually, runCli, runCliJson, startCli } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { startServe, type ServeProcess } from './support/serve.js';

const env = useTestEnvironment();
let server: ServeProcess;

beforeAll(async () => {
  server = await startServe(env.env({ WINDFALL_RECOVERY_INTERVAL_MS: '0' }));
});
afterAll(async () => {
  await server?.stop();
});

const cli = (args: string[]) => runCliJson(args, env.env());

async function revertOverHttp(batchId: string, body: object): Promise<{ status: number; body: any }> {
  const response = await fetch(`${server.baseUrl}/v1/batches/${batchId}/revert`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${server.adminToken}`,
      'content-type': 'application/json',
      'x-windfall-actor': 'dana',
    },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

describe('batch revert', () => {
  it('takes back every applied reward exactly once: balances as before the batch, re-runs change nothing, reconcile clean', async () => {
    const windfall = await env.open();
    await windfall.createWorker().start();
    await windfall.wallet.addBalance('rv-u0', 100, { operationId: 'rv-opening' });
    await windfall.producer.enqueueRewards(
      rewardRows(80, (n) => ({ rewardId: `rv-r${n}`, uid: `rv-u${n % 40}`, amount: 5 })),
      { batchId: 'rv' },
    );
    expect(await waitForBatchDone(env.pool, 'rv')).toMatchObject({ applied: 80, status: 'completed' });
    const before = await balances(env.pool);
    expect(before.get('rv-u0')).toBe(110n);

    const refused = await runCli(['batch', 'revert', 'rv'], env.env());
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--yes');

    const preview = await cli(['batch', 'revert', 'rv', '--dry-run']);
    expect(preview).toMatchObject({
      code: 0,
      json: {
        batchId: 'rv',
        dryRun: true,
        reverted: 80,
        alreadyReverted: 0,
        insufficientFunds: [],
        failed: [],
        closedDeadLetters: 0,
        status: 'reverted',
      },
    });
    expect(await balances(env.pool)).toEqual(before);

    const first = await cli(['batch', 'revert', 'rv', '--yes', '--reason', 'wrong file', '--actor', 'ops']);
    expect(first).toMatchObject({
      code: 0,
      json: { dryRun: false, reverted: 80, alreadyReverted: 0, insufficientFunds: [], status: 'reverted' },
    });
    const after = await balances(env.pool);
    expect(after.get('rv-u0')).toBe(100n);
    for (let n = 1; n < 40; n += 1) expect(after.get(`rv-u${n}`)).toBe(0n);

    const again = await cli(['batch', 'revert', 'rv', '--yes']);
    expect(again).toMatchObject({ code: 0, json: { reverted: 0, alreadyReverted: 80, status: 'reverted' } });
    expect((await balances(env.pool)).get('rv-u0')).toBe(100n);

    expect((await cli(['batch', 'rv'])).json).toMatchObject({
      status: 'reverted',
      applied: 80,
      reverted: 80,
      pending: 0,
    });
    const { rows } = await env.pool.query(
      `select operation_id, amount::text, kind, batch_id, description from ledger_entries where operation_id = 'revert:rv-r0'`,
    );
    expect(rows).toEqual([
      { operation_id: 'revert:rv-r0', amount: '-5', kind: 'debit', batch_id: 'rv', description: 'revert: wrong file' },
    ]);
    const reconcile = await runCli(['reconcile', '--json'], env.env());
    expect(reconcile.code, reconcile.stdout).toBe(0);
    expect(await ledgerMismatches(env.pool)).toEqual([]);

    const trail = (await cli(['audit', '--action', 'batch.revert'])).json;
    expect(
      trail.map((record: { actor: string; target: string; details: object }) => [
        record.actor,
        record.target,
        record.details,
      ]),
    ).toEqual([
      [expect.stringMatching(/^cli:/), 'batch:rv', {}],
      ['ops', 'batch:rv', { reason: 'wrong file' }],
    ]);
  });

  it('never drives a balance negative: a user who spent the reward is listed (exit 1) and the others are reverted; a later run finishes', async () => {
    const windfall = await env.open();
    await windfall.createWorker().start();
    await windfall.producer.enqueueRewards(
      rewardRows(20, (n) => ({ rewardId: `rs-r${n}`, uid: `rs-u${n % 10}`, amount: 50 })),
      { batchId: 'rs' },
    );
    await waitForBatchDone(env.pool, 'rs');
    await windfall.wallet.withdrawBalance('rs-u3', 70, { operationId: 'rs-spent' });

    const preview = await revertOverHttp('rs', { dryRun: true });
    expect(preview.status).toBe(200);
    expect(preview.body).toMatchObject({
      dryRun: true,
      reverted: 18,
      insufficientFunds: [{ uid: 'rs-u3', amount: '100', balance: '30' }],
      status: 'partially_reverted',
    });

    const partial = await revertOverHttp('rs', { reason: 'doubled amounts' });
    expect(partial.body).toMatchObject({
      reverted: 18,
      alreadyReverted: 0,
      insufficientFunds: [{ uid: 'rs-u3', amount: '100', balance: '30' }],
      failed: [],
      status: 'partially_reverted',
    });
    const wallets = await balances(env.pool);
    expect(wallets.get('rs-u3')).toBe(30n);
    for (const n of [0, 1, 2, 4, 5, 6, 7, 8, 9]) expect(wallets.get(`rs-u${n}`)).toBe(0n);
    expect((await cli(['batch', 'rs'])).json).toMatchObject({
      status: 'partially_reverted',
      applied: 20,
      reverted: 18,
    });
    expect((await runCli(['reconcile'], env.env())).code).toBe(0);
    // the CLI says the same with exit 1
    const listed = await cli(['batch', 'revert', 'rs', '--yes']);
    expect(listed).toMatchObject({
      code: 1,
      json: { reverted: 0, alreadyReverted: 18, insufficientFunds: [{ uid: 'rs-u3' }] },
    });

    // topped up, the next run takes back the rest
    await windfall.wallet.addBalance('rs-u3', 70, { operationId: 'rs-topup' });
    const rest = await cli(['batch', 'revert', 'rs', '--yes']);
    expect(rest).toMatchObject({
      code: 0,
      json: { reverted: 2, alreadyReverted: 18, insufficientFunds: [], status: 'reverted' },
    });
    expect((await balances(env.pool)).get('rs-u3')).toBe(0n);
    expect((await cli(['batch', 'rs'])).json).toMatchObject({ status: 'reverted', reverted: 20 });
    const trail = (await cli(['audit', '--target', 'batch:rs'])).json;
    expect(trail.at(-1)).toMatchObject({
      actor: 'http:admin@127.0.0.1 as dana',
      action: 'batch.revert',
      details: { reason: 'doubled amounts' },
    });
  });

  it('is refused while the batch is processing (exit 2, HTTP 409); closes its open dead-letter entries, which can no longer be replayed', async () => {
    const staged = await env.open();
    await staged.producer.enqueueRewards(
      rewardRows(4, (n) => ({ rewardId: `rp-r${n}`, uid: `rp-u${n}`, amount: 1 })),
      { batchId: 'rp' },
    );
    const processing = await runCli(['batch', 'revert', 'rp', '--yes'], env.env());
    expect(processing.code).toBe(2);
    expect(processing.stderr).toContain('still processing');
    expect((await revertOverHttp('rp', {})).status).toBe(409);
    expect((await revertOverHttp('rp-unknown', {})).status).toBe(404);
    expect((await runCli(['batch', 'revert', 'rp-unknown', '--yes'], env.env())).code).toBe(1);

    const windfall = await env.open({ jobAttempts: 1 });
    await windfall.createWorker().start();
    await windfall.wallet.addBalance('rd-owner', 10, { operationId: 'rd-used' });
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'rd-used', uid: 'rd-user', amount: 10 },
        { rewardId: 'rd-fresh', uid: 'rd-user', amount: 7 },
      ],
      { batchId: 'rd' },
    );
    expect(await waitForBatchDone(env.pool, 'rd')).toMatchObject({ applied: 1, deadLettered: 1 });
    const [entry] = await listDeadLetters(env.pool, { batchId: 'rd' });
    const reverted = await cli(['batch', 'revert', 'rd', '--yes']);
    expect(reverted).toMatchObject({ code: 0, json: { reverted: 1, closedDeadLetters: 1, status: 'reverted' } });
    const replay = await cli(['dlq', 'replay', entry!.id]);
    expect(replay.code).toBe(1);
    expect(replay.json.skipped).toEqual([expect.objectContaining({ id: entry!.id, state: 'purged' })]);
    expect((await balances(env.pool)).get('rd-user')).toBe(0n);
    expect((await runCli(['reconcile'], env.env())).code).toBe(0);
  });

  it('waits for a late replay: refused while the replayed entry is still pending (exit 2), then takes back the replayed reward too', async () => {
    await env.holdLock('rl-busy', 'elsewhere:1');
    const failing = await env.open({
      rewardLockPolicy: { name: 'reward', retries: 0, initialDelayMs: 10, factor: 1, ttlMs: 5000 },
      jobAttempts: 1,
    });
    const worker = failing.createWorker();
    await worker.start();
    await failing.producer.enqueueRewards(
      [
        { rewardId: 'rl-1', uid: 'rl-busy', amount: 30 },
        { rewardId: 'rl-2', uid: 'rl-ok', amount: 4 },
      ],
      { batchId: 'rl' },
    );
    expect(await waitForBatchDone(env.pool, 'rl')).toMatchObject({ applied: 1, deadLettered: 1 });
    await worker.close();
    await env.redis.del(`${env.prefix}:lock:rl-busy`);
    // the replay is enqueued while no worker runs: it is late
    const [entry] = await listDeadLetters(env.pool, { batchId: 'rl' });
    expect((await cli(['dlq', 'replay', entry!.id])).code).toBe(0);
    const refused = await runCli(['batch', 'revert', 'rl', '--yes'], env.env());
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain('cannot be reverted now');
    expect((await balances(env.pool)).get('rl-ok')).toBe(4n);

    const late = await env.open();
    await late.createWorker().start();
    await waitForBatchDone(env.pool, 'rl');
    expect((await balances(env.pool)).get('rl-busy')).toBe(30n);
    const reverted = await cli(['batch', 'revert', 'rl', '--yes']);
    expect(reverted).toMatchObject({ code: 0, json: { reverted: 2, closedDeadLetters: 0, status: 'reverted' } });
    const wallets = await balances(env.pool);
    expect([wallets.get('rl-busy'), wallets.get('rl-ok')]).toEqual([0n, 0n]);
    expect((await runCli(['reconcile'], env.env())).code).toBe(0);
  });

  it('killed mid-way (SIGKILL) and run again: every reward taken back exactly once', async () => {
    const windfall = await env.open({ chunkSize: 5000 });
    await windfall.createWorker().start();
    const users = 3000;
    await windfall.producer.enqueueRewards(
      rewardRows(2 * users, (n) => ({ rewardId: `rk-r${n}`, uid: `rk-u${n % users}`, amount: 3 })),
      { batchId: 'rk' },
    );
    await waitForBatchDone(env.pool, 'rk', 120_000);
    const reverts = async (): Promise<number> =>
      (
        await env.pool.query<{ n: number }>(
          `select count(*)::int as n from ledger_entries where batch_id = 'rk' and kind = 'debit'`,
        )
      ).rows[0]!.n;

    const first = startCli(['batch', 'revert', 'rk', '--yes', '--json'], env.env());
    // killed once some users are reverted and others are not (tied to progress, not to time)
    await eventually(
      async () => (await reverts()) > 0 || first.child.exitCode !== null,
      'the revert to start debiting',
      60_000,
    );
    first.child.kill('SIGKILL');
    await first.exited;
    const done = await reverts();
    expect(done, 'the revert finished before it could be killed: make the batch bigger').toBeLessThan(2 * users);
    // the killed process still holds the locks of the users it was reverting: a run now lists them as busy (exit 1,
    // run again); the operator force-releases a dead holder's locks (or waits for their TTL)
    const busy = await cli(['batch', 'revert', 'rk', '--yes']);
    const stale = await env.redis.keys(`${env.prefix}:lock:rk-u*`);
    if (busy.code === 1)
      expect(busy.json.failed.every((user: { reason: string }) => user.reason === 'LOCK_BUSY')).toBe(true);
    if (stale.length > 0) await env.redis.del(...stale);

    const second = await cli(['batch', 'revert', 'rk', '--yes']);
    expect(second).toMatchObject({ code: 0, json: { status: 'reverted' } });
    expect(second.json.reverted + second.json.alreadyReverted).toBe(2 * users);
    expect(second.json.alreadyReverted).toBeGreaterThanOrEqual(done);
    expect(await reverts()).toBe(2 * users);
    const wallets = await balances(env.pool);
    for (let n = 0; n < users; n += 1) expect(wallets.get(`rk-u${n}`)).toBe(0n);
    expect((await runCli(['reconcile'], env.env())).code).toBe(0);
  });

  it('reverts rewardIds of any accepted length; refuses a bad reason before changing anything; reserves the revert: prefix; audits the closed entries', async () => {
    const windfall = await env.open({ jobAttempts: 1 });
    await windfall.createWorker().start();
    const longId = `rx-${'x'.repeat(125)}`; // 128 characters: its revert id is 135
    await windfall.wallet.addBalance('rx-owner', 10, { operationId: 'rx-used' });
    await windfall.producer.enqueueRewards(
      [
        { rewardId: longId, uid: 'rx-u', amount: 9 },
        { rewardId: 'rx-used', uid: 'rx-u', amount: 10 },
      ],
      { batchId: 'rx' },
    );
    expect(await waitForBatchDone(env.pool, 'rx')).toMatchObject({ applied: 1, deadLettered: 1 });
    const [entry] = await listDeadLetters(env.pool, { batchId: 'rx' });

    const badReason = await runCli(['batch', 'revert', 'rx', '--yes', '--reason', 'r'.repeat(495)], env.env());
    expect(badReason.code).toBe(2);
    expect(badReason.stderr).toContain('reason');
    expect((await revertOverHttp('rx', { reason: 'r'.repeat(495) })).status).toBe(400);
    expect((await listDeadLetters(env.pool, { batchId: 'rx' })).map((e) => e.state)).toEqual(['open']);

    const reverted = await cli(['batch', 'revert', 'rx', '--yes']);
    expect(reverted).toMatchObject({ code: 0, json: { reverted: 1, closedDeadLetters: 1, status: 'reverted' } });
    expect((await balances(env.pool)).get('rx-u')).toBe(0n);
    const [record] = (await cli(['audit', '--target', 'batch:rx'])).json;
    expect(record.result.closedDeadLetters).toEqual([entry!.id]);

    // nobody may take the id of a revert to come: not a producer, not the wallet library
    const file = `${env.env()['TMPDIR'] ?? '/tmp'}/rx-reserved-${process.pid}.jsonl`;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, '{"rewardId":"revert:vc-1","uid":"someone","amount":1}\n');
    const reserved = await runCli(['enqueue', '--file', file, '--batch-id', 'rx-reserved', '--json'], env.env());
    expect(reserved.code).toBe(2);
    expect(JSON.parse(reserved.stdout).errors).toEqual([
      expect.objectContaining({ row: 1, field: 'rewardId', code: 'reserved_id' }),
    ]);
    await expect(windfall.wallet.addBalance('someone', 1, { operationId: 'revert:vc-1' })).rejects.toThrow(/revert:/);
  });
});
