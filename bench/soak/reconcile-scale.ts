/**
 * `node dist/bench/soak/reconcile-scale.js [--entries 1000000] [--keep]`: how long `reconcile` takes on a big ledger.
 * Builds a database of its own with SQL (no worker): one batch of N rewards over N/5 users, all applied; a second
 * batch repeating 5% of them (recorded duplicates); 1% of a third batch dead-lettered; 10% more ledger entries that
 * are plain credits; wallets equal to their ledger. Times `reconcile()` before and after ANALYZE, then with one
 * balance changed (it must be found). DATABASE_URL names the server.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { reconcile } from '../../src/reconcile/reconcile.js';
import { runWindfall } from './fault-kit.js';

function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : Number(process.argv[index + 1]);
}

const entries = flag('entries', 1_000_000);
const users = Math.max(1, Math.floor(entries / 5));
const serverUrl = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const name = `windfall_reconcile_scale_${randomBytes(4).toString('hex')}`;
const url = new URL(serverUrl);
url.pathname = `/${name}`;
const databaseUrl = url.toString();
const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'warn' };
const say = (line: string): void => {
  process.stderr.write(`[reconcile-scale] ${line}\n`);
};

const migrated = await runWindfall(['migrate'], env);
if (migrated.code !== 0) throw new Error(migrated.stderr);
const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
const timed = async (what: string, run: () => Promise<unknown>): Promise<number> => {
  const started = performance.now();
  await run();
  const seconds = (performance.now() - started) / 1000;
  say(`${what}: ${seconds.toFixed(2)} s`);
  return seconds;
};

try {
  await timed(`load ${entries} rewards, ${users} users`, async () => {
    await pool.query(
      `insert into reward_batches (batch_id, total, users, chunks, shards, content_digest, enqueued_at, status)
                      values ('scale-a', $1, $2, 8, 8, 'x', now(), 'completed'), ('scale-dup', $3, $3, 8, 8, 'x', now(), 'completed'),
                             ('scale-dead', $4, $4, 8, 8, 'x', now(), 'completed_with_failures')`,
      [entries, users, Math.floor(entries / 20), Math.floor(entries / 100)],
    );
    await pool.query(
      `insert into reward_batch_items (batch_id, shard, uid, reward_id, row_no, amount)
                      select 'scale-a', (i % $2) % 8, 'u' || (i % $2), 'r' || i, i + 1, 1 + i % 1000 from generate_series(0, $1 - 1) i`,
      [entries, users],
    );
    await pool.query(
      `insert into ledger_entries (uid, operation_id, amount, kind, batch_id)
                      select 'u' || (i % $2), 'r' || i, 1 + i % 1000, 'reward', 'scale-a' from generate_series(0, $1 - 1) i`,
      [entries, users],
    );
    // a second batch repeating 5% of the rewards: recorded duplicates
    await pool.query(
      `insert into reward_batch_items (batch_id, shard, uid, reward_id, row_no, amount)
                      select 'scale-dup', (i % $2) % 8, 'u' || (i % $2), 'r' || i, i + 1, 1 + i % 1000 from generate_series(0, $1 / 20 - 1) i`,
      [entries, users],
    );
    await pool.query(
      `insert into reward_duplicates (batch_id, reward_id, amount) select 'scale-dup', 'r' || i, 1 + i % 1000 from generate_series(0, $1 / 20 - 1) i`,
      [entries],
    );
    // a third batch whose rewards are all dead-lettered (one entry per user)
    await pool.query(
      `insert into reward_batch_items (batch_id, shard, uid, reward_id, row_no, amount)
                      select 'scale-dead', 0, 'dead-u' || i, 'dead-r' || i, i + 1, 5 from generate_series(0, $1 / 100 - 1) i`,
      [entries],
    );
    await pool.query(
      `insert into dead_letters (source, batch_id, chunk_no, uid, shard, rewards, reward_count, amount, reason, error, attempts)
                      select 'scale-' || i, 'scale-dead', 0, 'dead-u' || i, 0,
                             jsonb_build_array(jsonb_build_object('rewardId', 'dead-r' || i, 'uid', 'dead-u' || i, 'amount', '5')), 1, 5, 'LOCK_BUSY', 'busy', 3
                      from generate_series(0, $1 / 100 - 1) i`,
      [entries],
    );
    // plain credits (no batch): 10% more entries
    await pool.query(
      `insert into ledger_entries (uid, operation_id, amount, kind)
                      select 'u' || (i % $2), 'credit-' || i, 7, 'credit' from generate_series(0, $1 / 10 - 1) i`,
      [entries, users],
    );
    await pool.query(`insert into reward_chunks (batch_id, chunk_no, shard, first_uid, last_uid, users, rewards, completed_at)
                      select b, s, s, '', '~', 0, 0, now() from unnest(array['scale-a', 'scale-dup', 'scale-dead']) b, generate_series(0, 7) s`);
    await pool.query(`insert into wallets (uid, balance) select uid, sum(amount) from ledger_entries group by uid`);
  });
  const { rows } = await pool.query<{ n: string }>('select count(*)::text as n from ledger_entries');
  say(`ledger entries: ${rows[0]!.n}`);

  let report = await reconcile(pool);
  say(
    `reconcile before ANALYZE: ${report.seconds} s ${JSON.stringify(report.timings)}, ok=${report.ok}, rewards=${JSON.stringify(report.rewards)}`,
  );
  await timed('vacuum analyze', () => pool.query('vacuum analyze'));
  report = await reconcile(pool);
  say(
    `reconcile after ANALYZE: ${report.seconds} s ${JSON.stringify(report.timings)}, ok=${report.ok}, mismatches=${report.mismatchCount}`,
  );
  report = await reconcile(pool);
  say(`reconcile again (warm cache): ${report.seconds} s, ok=${report.ok}`);
  await pool.query(`update wallets set balance = balance + 1 where uid = 'u42'`);
  report = await reconcile(pool);
  say(
    `reconcile with wallet u42 changed: ${report.seconds} s, ok=${report.ok}, mismatches=${JSON.stringify(report.mismatches)}`,
  );
  const cli = await runWindfall(['reconcile'], env);
  say(`windfall reconcile (CLI): exit ${cli.code}`);
  process.stdout.write(
    `${JSON.stringify({ entries: Number(rows[0]!.n), seconds: report.seconds, found: report.mismatches.map((m) => m.uid) })}\n`,
  );
} finally {
  await pool.end();
  if (!process.argv.includes('--keep')) {
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    await admin.query(`drop database if exists "${name}" with (force)`);
    await admin.end();
  }
}
