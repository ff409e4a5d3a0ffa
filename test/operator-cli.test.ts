import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { getBatchReport } from '../src/status/batch-status.js';
import { shardOf } from '../src/queue/shard-routing.js';
import { useTestEnvironment } from './support/environment.js';
import { eventually, runCli, startCli, type CliProcess } from './support/cli.js';
import { balances, ledgerMismatches, waitForBatchDone } from './support/batches.js';

const env = useTestEnvironment();
const dir = mkdtempSync(join(tmpdir(), 'windfall-operator-'));
const workers: CliProcess[] = [];
afterAll(async () => {
  for (const worker of workers) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
});

/** Short lock and attempt settings: a busy user is dead-lettered within about a second. */
const fast = {
  WINDFALL_REWARD_LOCK_RETRIES: '1',
  WINDFALL_REWARD_LOCK_DELAY_MS: '50',
  WINDFALL_JOB_ATTEMPTS: '2',
  WINDFALL_JOB_BACKOFF_MS: '50',
};
/** Each CLI run starts a Node process (about 1 s, 2 s on a busy machine); these tests make 10–30 of them. */
const CLI_HEAVY_TIMEOUT = 240_000;
const cli = (args: string[], extra: Record<string, string> = {}) => runCli(args, env.env({ ...fast, ...extra }));
const json = <T>(text: string): T => JSON.parse(text) as T;

/** One worker process (short lock and attempt settings) for the whole file, started by the first test that needs it. */
function ensureWorker(): void {
  if (workers.length === 0) workers.push(startCli(['worker'], env.env(fast)));
}

function rewardsFile(name: string, rows: { rewardId: string; uid: string; amount: number | string }[]): string {
  const path = join(dir, name);
  writeFileSync(path, rows.map((row) => JSON.stringify(row)).join('\n'));
  return path;
}

interface Entry {
  id: string;
  batchId: string;
  uid: string;
  reason: string;
  state: string;
  attempts: number;
  rewards: { rewardId: string; uid: string; amount: string }[];
}
interface Queue {
  queue: string;
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  completed: number;
  oldestWaitingMs: number | null;
}

describe('operator CLI: dead letters, locks, queues', () => {
  it(
    'dead-letters a busy user with LOCK_BUSY while the rest is applied; lock status/release; replay credits exactly once; the DLQ ends empty',
    async () => {
      const acquiredAt = await env.holdLock('op-busy', 'elsewhere-host:4242', 120_000);
      const rows = [
        { rewardId: 'op-b1', uid: 'op-busy', amount: 100 },
        { rewardId: 'op-b2', uid: 'op-busy', amount: '250' },
        ...Array.from({ length: 20 }, (_, n) => ({ rewardId: `op-f${n}`, uid: `op-free-${n}`, amount: n + 1 })),
      ];
      const enqueued = await cli([
        'enqueue',
        '--file',
        rewardsFile('busy.jsonl', rows),
        '--batch-id',
        'op-batch',
        '--json',
      ]);
      expect(enqueued.code, enqueued.stderr).toBe(0);

      ensureWorker();
      const first = await waitForBatchDone(env.pool, 'op-batch', 30_000);
      expect(first).toMatchObject({
        status: 'completed_with_failures',
        total: 22,
        applied: 20,
        duplicate: 0,
        deadLettered: 2,
        pending: 0,
      });
      expect((await balances(env.pool)).get('op-busy')).toBeUndefined();

      // dlq list / show
      const list = await cli(['dlq', 'list', '--json']);
      expect(list.code, list.stderr).toBe(0);
      const entries = json<Entry[]>(list.stdout);
      expect(entries).toHaveLength(1);
      const entry = entries[0]!;
      expect(entry).toMatchObject({
        batchId: 'op-batch',
        uid: 'op-busy',
        reason: 'LOCK_BUSY',
        state: 'open',
        attempts: 2,
      });
      expect(entry.rewards.map((r) => [r.rewardId, r.amount])).toEqual([
        ['op-b1', '100'],
        ['op-b2', '250'],
      ]);
      expect(entry).toMatchObject({ rewardCount: 2, amount: '350' });
      expect(json<Entry[]>((await cli(['dlq', 'list', '--reason', 'CONFLICT', '--json'])).stdout)).toEqual([]);
      expect(
        json<Entry[]>((await cli(['dlq', 'list', '--batch', 'op-batch', '--reason', 'LOCK_BUSY', '--json'])).stdout),
      ).toHaveLength(1);
      const shown = await cli(['dlq', 'show', entry.id, '--json']);
      expect(shown.code).toBe(0);
      expect(json<Entry>(shown.stdout)).toMatchObject({ id: entry.id, uid: 'op-busy', reason: 'LOCK_BUSY' });
      const human = await cli(['dlq', 'list']);
      expect(human.stdout).toMatch(/^id\s+batchId\s+uid\s+rewards\s+amount\s+reason/m);
      expect(human.stdout).toMatch(new RegExp(`^${entry.id}\\s+op-batch\\s+op-busy\\s+2\\s+350\\s+LOCK_BUSY`, 'm'));

      // queues: every shard queue, the dead-letter queue (whose mirror holds the entry) and the events queue
      const queues = json<Queue[]>((await cli(['queues', '--json'])).stdout);
      expect(queues.map((q) => q.queue)).toEqual([
        ...Array.from({ length: 8 }, (_, n) => `shard-${n}`),
        'dead-letter',
        'events',
      ]);
      for (const queue of queues) {
        expect(Object.keys(queue).sort()).toEqual([
          'active',
          'completed',
          'delayed',
          'failed',
          'oldestWaitingMs',
          'queue',
          'waiting',
        ]);
      }
      const deadLetterQueue = queues.find((q) => q.queue === 'dead-letter')!;
      expect(deadLetterQueue.waiting).toBe(1);
      expect(deadLetterQueue.oldestWaitingMs).toBeGreaterThanOrEqual(0);
      expect((await cli(['queues'])).stdout).toMatch(/^dead-letter\s+1\s+0\s+0\s+0\s+0\s+\S/m);

      // lock status names the holder and the TTL
      const status = await cli(['lock', 'status', 'op-busy', '--json']);
      expect(status.code).toBe(0);
      const lock = json<{ uid: string; locked: boolean; ttlMs: number; owner: string; acquiredAt: string }>(
        status.stdout,
      );
      expect(lock).toMatchObject({ uid: 'op-busy', locked: true, owner: 'elsewhere-host:4242', acquiredAt });
      expect(lock.ttlMs).toBeGreaterThan(0);
      expect(lock.ttlMs).toBeLessThanOrEqual(120_000);
      expect((await cli(['lock', 'status', 'op-busy'])).stdout).toMatch(/op-busy\s+yes\s+\d+\s+elsewhere-host:4242/);

      // release refuses without --force, then frees the lock and logs a warning
      const refused = await cli(['lock', 'release', 'op-busy']);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('--force');
      expect(await env.redis.exists(`${env.prefix}:lock:op-busy`)).toBe(1);
      const released = await cli(['lock', 'release', 'op-busy', '--force', '--json']);
      expect(released.code, released.stderr).toBe(0);
      expect(json(released.stdout)).toMatchObject({
        uid: 'op-busy',
        released: true,
        previous: { locked: true, owner: 'elsewhere-host:4242' },
      });
      expect(released.stderr).toMatch(/"level":"warn".*"previousOwner":"elsewhere-host:4242".*lock force-released/);
      expect(json<{ locked: boolean }>((await cli(['lock', 'status', 'op-busy', '--json'])).stdout).locked).toBe(false);

      // a dry run changes nothing
      const dry = await cli(['dlq', 'replay', '--all', '--dry-run', '--json']);
      expect(dry.code).toBe(0);
      expect(json(dry.stdout)).toMatchObject({
        dryRun: true,
        replayed: [{ id: entry.id, uid: 'op-busy', rewards: 2 }],
        skipped: [],
      });
      expect(json<Entry[]>((await cli(['dlq', 'list', '--json'])).stdout)).toHaveLength(1);

      // replay --all credits exactly once
      const replay = await cli(['dlq', 'replay', '--all', '--json']);
      expect(replay.code, replay.stderr).toBe(0);
      expect(json(replay.stdout)).toMatchObject({
        dryRun: false,
        replayed: [{ id: entry.id, batchId: 'op-batch', uid: 'op-busy', rewards: 2 }],
        skipped: [],
        replayedCount: 1,
        rewardCount: 2,
      });
      await eventually(
        async () => (await getBatchReport(env.pool, 'op-batch'))?.status === 'completed',
        'the replay to be applied',
      );
      expect(await getBatchReport(env.pool, 'op-batch')).toMatchObject({
        applied: 22,
        duplicate: 0,
        deadLettered: 0,
        pending: 0,
      });
      expect((await balances(env.pool)).get('op-busy')).toBe(350n);

      // a second replay changes nothing
      const again = await cli(['dlq', 'replay', '--all', '--json']);
      expect(again.code).toBe(0);
      expect(json(again.stdout)).toEqual({
        dryRun: false,
        replayed: [],
        skipped: [],
        replayedCount: 0,
        rewardCount: 0,
        skippedCount: 0,
        truncated: false,
      });
      // naming the replayed entry again is no failure either (a replay is idempotent); an unknown id is
      const byId = await cli(['dlq', 'replay', entry.id]);
      expect(byId.code, byId.stderr).toBe(0);
      expect(byId.stderr).toMatch(
        new RegExp(`entry ${entry.id} not replayed: already replayed at \\S+; nothing to do`),
      );
      const unknown = await cli(['dlq', 'replay', '987654']);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain('entry 987654 not replayed: no dead-letter entry has this id');
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect((await balances(env.pool)).get('op-busy')).toBe(350n);
      const { rows: ledger } = await env.pool.query(
        `select count(*)::int as n from ledger_entries where uid = 'op-busy'`,
      );
      expect(ledger[0].n).toBe(2);
      expect(await ledgerMismatches(env.pool)).toEqual([]);

      // the dead-letter queue ends empty: no open entry in PostgreSQL, nothing in the BullMQ mirror
      expect(json<Entry[]>((await cli(['dlq', 'list', '--json'])).stdout)).toEqual([]);
      const { rows: open } = await env.pool.query(`select count(*)::int as n from dead_letters where state = 'open'`);
      expect(open[0].n).toBe(0);
      const after = json<Queue[]>((await cli(['queues', '--json'])).stdout).find((q) => q.queue === 'dead-letter')!;
      expect(after).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 0 });
      expect(
        json<Entry[]>((await cli(['dlq', 'list', '--state', 'replayed', '--json'])).stdout).map((e) => e.id),
      ).toEqual([entry.id]);
    },
    CLI_HEAVY_TIMEOUT,
  );

  it(
    'purge refuses without --yes, previews with --dry-run, and takes filtered entries out (still counted as dead-lettered)',
    async () => {
      await env.holdLock('op-purge', 'elsewhere-host:1', 60_000);
      const enqueued = await cli([
        'enqueue',
        '--file',
        rewardsFile('purge.jsonl', [{ rewardId: 'op-p1', uid: 'op-purge', amount: 9 }]),
        '--batch-id',
        'op-purge-batch',
      ]);
      expect(enqueued.code, enqueued.stderr).toBe(0);
      ensureWorker();
      await waitForBatchDone(env.pool, 'op-purge-batch', 30_000);
      const [entry] = json<Entry[]>((await cli(['dlq', 'list', '--batch', 'op-purge-batch', '--json'])).stdout);
      expect(entry).toMatchObject({ reason: 'LOCK_BUSY', uid: 'op-purge' });

      const refused = await cli(['dlq', 'purge']);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('--yes');
      const preview = await cli(['dlq', 'purge', '--batch', 'op-purge-batch', '--dry-run', '--json']);
      expect(preview.code).toBe(0);
      expect(json(preview.stdout)).toEqual({ dryRun: true, purged: [entry!.id], count: 1, truncated: false });
      expect(json<Entry[]>((await cli(['dlq', 'list', '--json'])).stdout)).toHaveLength(1);

      expect(json((await cli(['dlq', 'purge', '--yes', '--batch', 'no-such-batch', '--json'])).stdout)).toEqual({
        dryRun: false,
        purged: [],
        count: 0,
        truncated: false,
      });
      const purged = await cli(['dlq', 'purge', '--yes', '--batch', 'op-purge-batch', '--json']);
      expect(purged.code, purged.stderr).toBe(0);
      expect(json(purged.stdout)).toEqual({ dryRun: false, purged: [entry!.id], count: 1, truncated: false });
      expect(json<Entry[]>((await cli(['dlq', 'list', '--json'])).stdout)).toEqual([]);
      expect(
        json<Queue[]>((await cli(['queues', '--json'])).stdout).find((q) => q.queue === 'dead-letter')!.waiting,
      ).toBe(0);
      expect(await getBatchReport(env.pool, 'op-purge-batch')).toMatchObject({
        status: 'completed_with_failures',
        deadLettered: 1,
      });
      // a purged entry is not replayed
      const replay = await cli(['dlq', 'replay', entry!.id]);
      expect(replay.code).toBe(1);
      expect(replay.stderr).toContain('entry was purged; it cannot be replayed');
      await env.redis.del(`${env.prefix}:lock:op-purge`);
    },
    CLI_HEAVY_TIMEOUT,
  );

  it(
    'keeps an entry in the dead-letter queue when its replay cannot be enqueued',
    async () => {
      await env.holdLock('op-stuck', 'elsewhere-host:2', 60_000);
      expect(
        (
          await cli([
            'enqueue',
            '--file',
            rewardsFile('stuck.jsonl', [{ rewardId: 'op-s1', uid: 'op-stuck', amount: 11 }]),
            '--batch-id',
            'op-stuck-batch',
          ])
        ).code,
      ).toBe(0);
      ensureWorker();
      await waitForBatchDone(env.pool, 'op-stuck-batch', 30_000);
      const [entry] = json<Entry[]>((await cli(['dlq', 'list', '--batch', 'op-stuck-batch', '--json'])).stdout);
      await env.redis.del(`${env.prefix}:lock:op-stuck`);

      // break the shard queue so that adding the replay job fails inside Redis (a key of the wrong type)
      const meta = `${env.prefix}:shard-${shardOf('op-stuck', 8)}:meta`;
      await env.redis.rename(meta, `${meta}-saved`);
      await env.redis.set(meta, 'not a hash');
      try {
        const failed = await cli(['dlq', 'replay', entry!.id]);
        expect(failed.code).toBe(1);
        expect(failed.stderr).toContain(`could not enqueue the replay of dead-letter entry ${entry!.id}`);
        expect(failed.stderr).toContain('it stays in the dead-letter queue');
      } finally {
        await env.redis.del(meta);
        await env.redis.rename(`${meta}-saved`, meta);
      }
      expect(json<Entry>((await cli(['dlq', 'show', entry!.id, '--json'])).stdout).state).toBe('open');
      expect(
        json<Queue[]>((await cli(['queues', '--json'])).stdout).find((q) => q.queue === 'dead-letter')!.waiting,
      ).toBe(1);

      // once the queue takes jobs again, the same replay goes through and credits once
      const replay = await cli(['dlq', 'replay', entry!.id, '--json']);
      expect(replay.code, replay.stderr).toBe(0);
      await eventually(
        async () => (await getBatchReport(env.pool, 'op-stuck-batch'))?.status === 'completed',
        'the replay to be applied',
      );
      expect((await balances(env.pool)).get('op-stuck')).toBe(11n);
      expect(json<Entry[]>((await cli(['dlq', 'list', '--json'])).stdout)).toEqual([]);
    },
    CLI_HEAVY_TIMEOUT,
  );

  it(
    'answers bad usage with exit 2 and an unknown entry with exit 1',
    async () => {
      for (const args of [
        ['dlq', 'replay'],
        ['dlq', 'replay', '1', '--all'],
        ['dlq', 'replay', '--all', '--reason', 'LOCK_BUSY'],
        ['dlq', 'replay', 'abc'],
        ['dlq', 'list', '--reason', 'NOPE'],
        ['dlq', 'show', 'abc'],
        ['dlq', 'list', '--limit', '0'],
        ['lock', 'status'],
        ['lock', 'release', 'someone'],
        ['dlq', 'purge', '--reason', 'LOCK_BUSY'],
      ]) {
        const result = await cli(args);
        expect(result.code, `windfall ${args.join(' ')}: ${result.stderr}`).toBe(2);
      }
      const missing = await cli(['dlq', 'show', '987654']);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('no dead-letter entry has id 987654');
      const empty = await cli(['lock', 'release', 'nobody-holds-this', '--force', '--json']);
      expect(empty.code).toBe(0);
      expect(json(empty.stdout)).toMatchObject({
        uid: 'nobody-holds-this',
        released: false,
        previous: { locked: false, owner: null },
      });
    },
    CLI_HEAVY_TIMEOUT,
  );
});
