/**
 * `npm run soak`: the reliability acceptance scenario at full size (80,000 rewards by default) — two consecutive
 * SIGKILLs of the worker processes, four rounds of pg_terminate_backend, one Redis restart with AOF — then the
 * checks: every balance exact, no ledger entry twice, nothing dead-lettered, `windfall reconcile` exit 0, and exit 1
 * naming a wallet changed behind Windfall's back. Prints the figures and a JSON summary; exits 1 when a check fails.
 *
 *   npm run soak -- [--rewards 80000] [--users 20000] [--workers 2] [--concurrency 2] [--users-per-transaction 8] [--chunk-size 500] [--keep]
 *
 * DATABASE_URL names the PostgreSQL server (a database of its own is created there and dropped afterwards);
 * Redis is a redis-server the script starts with AOF on a random port above 20000.
 */
import { runFaultScenario } from './fault-scenario.js';

function flag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  if (index === -1) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isSafeInteger(value) || value < 1) {
    process.stderr.write(`--${name} needs a whole number ≥ 1\n`);
    process.exit(2);
  }
  return value;
}

const serverUrl = process.env['DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const result = await runFaultScenario({
  serverUrl,
  rewards: flag('rewards', 80_000),
  users: flag('users', 20_000),
  workers: flag('workers', 2),
  // narrow workers (two transactions of 8 users at a time): every fault lands while rewards are still being applied
  concurrency: flag('concurrency', 2),
  workerEnv: { WINDFALL_USERS_PER_TRANSACTION: String(flag('users-per-transaction', 8)) },
  chunkSize: flag('chunk-size', 500),
  kills: flag('kills', 2),
  pgRounds: flag('pg-rounds', 4),
  redisRestarts: flag('redis-restarts', 1),
  keepDatabase: process.argv.includes('--keep'),
  log: (line) => process.stderr.write(`[soak] ${line}\n`),
});

const checks: [string, boolean][] = [
  ['every fault happened mid-batch', result.faultsMidBatch],
  ['every balance exact', result.wrongBalances.length === 0],
  [
    'no ledger entry twice',
    result.ledgerEntries === result.distinctOperations && result.ledgerEntries === result.rewards,
  ],
  ['nothing dead-lettered', result.deadLetters === 0 && result.batch['deadLettered'] === 0],
  ['batch completed', result.batch['status'] === 'completed' && result.batch['applied'] === result.rewards],
  ['reconcile exit 0', result.reconcile.code === 0],
  [
    'tampered balance: reconcile exit 1 naming the wallet',
    result.tamper.code === 1 && result.tamper.mismatch?.uid === result.tamper.uid,
  ],
  ['reconcile exit 0 again once repaired', result.tamper.codeAfterRepair === 0],
];
process.stderr.write('\n');
for (const [name, ok] of checks) process.stderr.write(`[soak] ${ok ? 'PASS' : 'FAIL'} ${name}\n`);
const kills = result.faults.filter((f) => f.kind === 'kill');
const terminations = result.faults.filter((f) => f.kind === 'pg_terminate');
process.stderr.write(
  `[soak] ${result.rewards} rewards, ${result.users} users, ${result.workers} worker processes: ${kills.length} SIGKILL rounds ` +
    `(${kills.reduce((sum, f) => sum + (f.count ?? 0), 0)} processes), ${terminations.length} pg_terminate_backend rounds ` +
    `(${terminations.reduce((sum, f) => sum + (f.count ?? 0), 0)} backends), ${result.faults.filter((f) => f.kind === 'redis_restart').length} Redis restart(s); ` +
    `${result.seconds.toFixed(1)} s (${result.rewardsPerSecond} rewards/s); reconcile ${result.reconcile.seconds} s\n`,
);
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
process.exitCode = checks.every(([, ok]) => ok) ? 0 : 1;
