import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useTestEnvironment } from './support/environment.js';
import { runCli, startCli, type CliProcess } from './support/cli.js';

const env = useTestEnvironment();
const dir = mkdtempSync(join(tmpdir(), 'windfall-cli-'));
const file = (name: string, content: string): string => {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
};
const workers: CliProcess[] = [];
afterAll(async () => {
  for (const worker of workers) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
});

describe('windfall CLI', () => {
  it('refuses a file with bad rows: exit 2, every bad row named, nothing recorded', async () => {
    const path = file(
      'bad.jsonl',
      [
        '{"rewardId":"c-1","uid":"u1","amount":100}',
        '{"rewardId":"c-2","uid":"u1","amount":1.5}',
        '{"rewardId":"c-3","uid":"","amount":5}',
        'not json',
        '{"rewardId":"c-5","uid":"u5","amount":"-7"}',
        '{"rewardId":"c-6","uid":"u6","amount":7}',
      ].join('\n'),
    );
    const result = await runCli(['enqueue', '--file', path, '--batch-id', 'cli-bad'], env.env());
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('4 invalid rows out of 6');
    for (const line of [
      'row 2, amount: fractions',
      'row 3, uid: is empty',
      'row 4, row: is not valid JSON',
      'row 5, amount: must be positive',
    ]) {
      expect(result.stderr).toContain(line);
    }
    const { rows } = await env.pool.query(`select count(*)::int as n from reward_batches where batch_id = 'cli-bad'`);
    expect(rows[0].n).toBe(0);
  });

  it('prints one JSON document with every row error under --json', async () => {
    const path = file('bad.csv', 'rewardId,uid,amount,description\nj-1,u1,0,\nj-2,u2,1e3,\n');
    const result = await runCli(['enqueue', '--file', path, '--json'], env.env());
    expect(result.code).toBe(2);
    const document = JSON.parse(result.stdout) as { errors: { row: number; field: string }[] };
    expect(document.errors.map((e) => [e.row, e.field])).toEqual([
      [2, 'amount'],
      [3, 'amount'],
    ]);
  });

  it('reports a file of 10,000 errors in bounded output: the first 1,000 by row, then counts per field and reason, and the totals', async () => {
    const lines: string[] = [];
    for (let n = 1; n <= 12_000; n += 1) {
      if (n <= 4000) lines.push(JSON.stringify({ rewardId: `many-${n}`, uid: `u${n % 100}`, amount: 1 }));
      // repeats of rows 1–4000 for other users: found by SQL after the file is read, yet listed first (lower rows)
      else if (n <= 8000) lines.push(JSON.stringify({ rewardId: `many-${n - 4000}`, uid: `v${n % 100}`, amount: 1 }));
      else if (n <= 10_000) lines.push(JSON.stringify({ rewardId: `many-${n}`, uid: `u${n % 100}`, amount: '1.5' }));
      else lines.push(JSON.stringify({ rewardId: `many-${n}`, uid: '', amount: 0 }));
    }
    const path = file('many-bad.jsonl', `${lines.join('\n')}\n`);
    const expectedSummary = [
      { field: 'rewardId', code: 'repeated_reward_id', reason: 'repeats a rewardId of an earlier row', count: 4000 },
      { field: 'amount', code: 'amount_fraction', reason: 'is a fraction', count: 2000 },
      { field: 'amount', code: 'amount_zero', reason: 'is zero', count: 2000 },
      { field: 'uid', code: 'empty', reason: 'is empty', count: 2000 },
    ];

    const plain = await runCli(['enqueue', '--file', path, '--batch-id', 'cli-many-bad'], env.env());
    expect(plain.code).toBe(2);
    const stderr = plain.stderr.trimEnd().split('\n');
    expect(stderr.length).toBeLessThanOrEqual(1010);
    expect(stderr[0]).toBe(
      'windfall: batch refused: 8,000 invalid rows out of 12,000 (10,000 errors); nothing was enqueued. Fix the rows and enqueue again.',
    );
    expect(stderr[1]).toBe('  row 4001, rewardId: repeats row 1 of this batch (a rewardId may appear once per batch)');
    expect(stderr[1000]).toBe(
      '  row 5000, rewardId: repeats row 1000 of this batch (a rewardId may appear once per batch)',
    );
    expect(stderr.slice(1001)).toEqual([
      '  … 9,000 more errors not listed. All 10,000 errors (8,000 bad rows) by field and reason:',
      '    rewardId: repeats a rewardId of an earlier row [repeated_reward_id] × 4,000',
      '    amount: is a fraction [amount_fraction] × 2,000',
      '    amount: is zero [amount_zero] × 2,000',
      '    uid: is empty [empty] × 2,000',
    ]);

    const json = await runCli(['enqueue', '--file', path, '--batch-id', 'cli-many-bad', '--json'], env.env());
    expect(json.code).toBe(2);
    const document = JSON.parse(json.stdout) as {
      error: string;
      errors: { row: number; code: string }[];
      summary: unknown[];
      totalErrors: number;
      badRows: number;
      rowsRead: number;
    };
    expect(document).toMatchObject({
      error: 'invalid batch',
      totalErrors: 10_000,
      badRows: 8000,
      rowsRead: 12_000,
      summary: expectedSummary,
    });
    expect(document.errors).toHaveLength(1000);
    expect(document.errors.map((e) => e.row)).toEqual(Array.from({ length: 1000 }, (_, n) => 4001 + n));
    expect(json.stderr.trimEnd().split('\n').length).toBeLessThanOrEqual(10);
    const { rows } = await env.pool.query(
      `select count(*)::int as n from reward_batch_items where batch_id = 'cli-many-bad'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('enqueues a file, reports the batch, and a worker process credits it', async () => {
    const path = file(
      'good.jsonl',
      '{"rewardId":"g-1","uid":"user1","amount":100,"description":"活动奖励"}\n{"rewardId":"g-2","uid":"user2","amount":"200","description":"活动奖励"}\n',
    );
    const enqueued = await runCli(['enqueue', '--file', path, '--batch-id', 'cli-good', '--json'], env.env());
    expect(enqueued.code, enqueued.stderr).toBe(0);
    expect(JSON.parse(enqueued.stdout)).toEqual({ batchId: 'cli-good', total: 2 });

    const pending = await runCli(['batch', 'cli-good', '--json'], env.env());
    expect(JSON.parse(pending.stdout)).toMatchObject({
      batchId: 'cli-good',
      status: 'pending',
      total: 2,
      applied: 0,
      duplicate: 0,
      deadLettered: 0,
      pending: 2,
    });

    workers.push(startCli(['worker'], env.env()));
    const waited = await runCli(['enqueue', '--file', path, '--batch-id', 'cli-good', '--wait', '--json'], env.env());
    expect(waited.code, waited.stderr).toBe(0);
    expect(JSON.parse(waited.stdout)).toMatchObject({
      batchId: 'cli-good',
      status: 'completed',
      applied: 2,
      pending: 0,
    });

    const wallets = await runCli(['wallet', 'user1', 'user2', 'nobody', '--json'], env.env());
    const document = JSON.parse(wallets.stdout) as {
      uid: string;
      balance: string;
      entries: { amount: string; description: string }[];
    }[];
    expect(document.map((w) => [w.uid, w.balance])).toEqual([
      ['user1', '100'],
      ['user2', '200'],
      ['nobody', '0'],
    ]);
    expect(document[0]!.entries[0]).toMatchObject({ amount: '100', description: '活动奖励' });
    expect(wallets.stderr).toBe('');
  });

  it('reads CSV from standard input and waits with plain progress lines off a terminal', async () => {
    const csv = 'rewardId,uid,amount,description\ns-1,csv-u1,5,"a, quoted description"\ns-2,csv-u2,6,\n';
    workers.push(startCli(['worker'], env.env()));
    const result = await runCli(
      ['enqueue', '--file', '-', '--format', 'csv', '--batch-id', 'cli-stdin', '--wait'],
      env.env(),
      csv,
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe('cli-stdin');
    expect(result.stderr).toMatch(/batch cli-stdin: 100\.0% 2\/2 rewards/);
  });

  it('answers bad usage and bad configuration with exit 2 and a message naming the problem', async () => {
    expect((await runCli(['frobnicate'], env.env())).code).toBe(2);
    expect((await runCli(['enqueue'], env.env())).code).toBe(2);
    const missing = await runCli(['enqueue', '--file', join(dir, 'absent.jsonl')], env.env());
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no such file');
    const config = await runCli(['batch', 'x'], env.env({ WINDFALL_SHARDS: 'lots' }));
    expect(config.code).toBe(2);
    expect(config.stderr).toContain('WINDFALL_SHARDS');
    const unknownFormat = await runCli(['enqueue', '--file', file('rewards.txt', '')], env.env());
    expect(unknownFormat.code).toBe(2);
    expect(unknownFormat.stderr).toContain('--format');
  });

  it('creates a missing database, twice at once, and migrates it idempotently', async () => {
    const url = new URL(env.databaseUrl);
    url.pathname = `/${url.pathname.slice(1)}_fresh`;
    const fresh = url.toString();
    try {
      const [first, second] = await Promise.all([
        runCli(['migrate', '--json'], env.env({ DATABASE_URL: fresh })),
        runCli(['migrate', '--json'], env.env({ DATABASE_URL: fresh })),
      ]);
      expect([first.code, second.code], first.stderr + second.stderr).toEqual([0, 0]);
      const reports = [JSON.parse(first.stdout), JSON.parse(second.stdout)] as {
        created: boolean;
        applied: string[];
      }[];
      expect(reports.filter((r) => r.created)).toHaveLength(1);
      expect(reports.flatMap((r) => r.applied)).toEqual([
        '0001_ledger',
        '0002_replay_lookup',
        '0003_chunk_users',
        '0004_audit_trail',
        '0005_batch_revert',
        '0006_campaign_budgets',
        '0007_batch_events',
        '0008_fences',
        '0009_reward_lookup',
        '0010_batch_cancel',
      ]);
      const again = await runCli(['migrate', '--json'], env.env({ DATABASE_URL: fresh }));
      expect(JSON.parse(again.stdout)).toMatchObject({ created: false, applied: [] });
    } finally {
      await env.pool.query(`drop database if exists "${url.pathname.slice(1)}" with (force)`);
    }
  });

  it('exits 1 for an unknown batch and says which service is down', async () => {
    const unknown = await runCli(['batch', 'no-such-batch'], env.env());
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no batch has id "no-such-batch"');
    const down = await runCli(['batch', 'x'], env.env({ REDIS_URL: 'redis://127.0.0.1:1' }));
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/Redis at 127\.0\.0\.1:1 does not answer.*docker compose up -d redis/);
    // under --json stdout still carries one JSON document, saying what went wrong
    const unknownJson = await runCli(['batch', 'no-such-batch', '--json'], env.env());
    expect(unknownJson.code).toBe(1);
    expect(JSON.parse(unknownJson.stdout)).toEqual({
      error: 'failed',
      message: expect.stringContaining('no batch has id "no-such-batch"'),
    });
    const downJson = await runCli(['batch', 'x', '--json'], env.env({ REDIS_URL: 'redis://127.0.0.1:1' }));
    expect(downJson.code).toBe(1);
    expect(JSON.parse(downJson.stdout)).toMatchObject({ error: 'unavailable' });
    const usageJson = await runCli(['dlq', 'purge', '--json'], env.env());
    expect(usageJson.code).toBe(2);
    expect(JSON.parse(usageJson.stdout)).toMatchObject({ error: 'usage', message: expect.stringContaining('--yes') });
  });
});

describe('a database behind this version', () => {
  it('is refused at start-up by enqueue and worker (exit 1) with "run windfall migrate"; after migrate the batch is accepted', async () => {
    const url = new URL(env.databaseUrl);
    url.pathname = `/${url.pathname.slice(1)}_behind`;
    const behind = url.toString();
    const dir = mkdtempSync(join(tmpdir(), 'windfall-behind-'));
    const file = join(dir, 'rewards.jsonl');
    writeFileSync(file, '{"rewardId":"bh-1","uid":"bh-u","amount":5}\n');
    try {
      expect((await runCli(['migrate'], env.env({ DATABASE_URL: behind }))).code).toBe(0);
      // as a database of the previous version: its last migration undone
      const { default: pg } = await import('pg');
      const client = new pg.Client({ connectionString: behind });
      await client.connect();
      try {
        await client.query(`alter table reward_batches drop constraint reward_batches_status_check`);
        await client.query(
          `alter table reward_batches add constraint reward_batches_status_check check (status in ('pending', 'processing', 'completed', 'completed_with_failures'))`,
        );
        await client.query(`drop table audit_log`);
        await client.query(`drop function audit_log_append_only()`);
        await client.query(`alter table reward_chunks drop column uids, drop column user_rewards, drop column fence`);
        await client.query(`alter table dead_letters drop column fence, drop column amount`);
        await client.query(`alter table reward_duplicates drop column amount`);
        await client.query(`drop table batch_events`);
        await client.query(`drop table campaigns`);
        await client.query(`drop index reward_batch_items_reward_id`);
        await client.query(`drop index dead_letters_uid`);
        await client.query(
          `alter table reward_batches drop column campaign_id, drop column amount_total, drop column priority, drop column cancelled_at`,
        );
        await client.query(
          `delete from kysely_migration where name in ('0003_chunk_users', '0004_audit_trail', '0005_batch_revert', '0006_campaign_budgets', '0007_batch_events', '0008_fences', '0009_reward_lookup', '0010_batch_cancel')`,
        );
      } finally {
        await client.end();
      }
      for (const args of [['enqueue', '--file', file, '--batch-id', 'bh'], ['worker']]) {
        const refused = await runCli(args, env.env({ DATABASE_URL: behind }));
        expect(refused.code, refused.stderr).toBe(1);
        expect(refused.stderr).toContain('lacks migration 0010_batch_cancel');
        expect(refused.stderr).toContain('run `windfall migrate`');
      }
      const migrated = await runCli(['migrate', '--json'], env.env({ DATABASE_URL: behind }));
      expect(JSON.parse(migrated.stdout)).toMatchObject({
        applied: [
          '0003_chunk_users',
          '0004_audit_trail',
          '0005_batch_revert',
          '0006_campaign_budgets',
          '0007_batch_events',
          '0008_fences',
          '0009_reward_lookup',
          '0010_batch_cancel',
        ],
      });
      const enqueued = await runCli(
        ['enqueue', '--file', file, '--batch-id', 'bh', '--json'],
        env.env({ DATABASE_URL: behind }),
      );
      expect(enqueued.code, enqueued.stderr).toBe(0);
    } finally {
      await env.pool.query(`drop database if exists "${url.pathname.slice(1)}" with (force)`);
    }
  });
});
