import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { DESCRIPTION } from './dataset.js';
import type { ServerProcesses } from './cpu-accounting.js';
import { cpuBetween, cpuSnapshot } from './cpu-accounting.js';
import type { Servers } from './support.js';
import { childEnv, note, round, runProcess, withDatabase } from './support.js';

/**
 * The ceiling: one user's transaction sent straight to PostgreSQL by `clients` connections in a loop, with no
 * queue, lock or Node in between. pgbench (shipped with PostgreSQL) runs it when it is installed.
 *
 * - `statement`: the ceiling — `rewardsPerUser` idempotent ledger inserts and one balance upsert as ONE
 *   statement (one implicit transaction);
 * - `transaction`: the same as BEGIN; insert …; upsert; COMMIT (three round trips and a commit);
 * - `grouped`: `usersPerStatement` users in ONE statement, users and rewards as sets (generated in SQL), the same
 *   idempotent ledger insert ("C" rewardId order) and wallet upsert ("C" uid order): what PostgreSQL settles when
 *   users share a transaction.
 */
export type CeilingVariant = 'statement' | 'transaction' | 'grouped';
export const CEILING_VARIANTS: readonly CeilingVariant[] = ['statement', 'transaction', 'grouped'];

export interface CeilingOptions {
  readonly servers: Servers;
  /** A migrated database of its own (the same schema as Windfall's). */
  readonly database: string;
  readonly dir: string;
  readonly clients: number;
  readonly rewardsPerUser: number;
  readonly seconds: number;
  readonly variants?: readonly CeilingVariant[];
  /** Users per statement of the `grouped` variant. Default 32. */
  readonly usersPerStatement?: number;
  /** The servers' processes, for CPU accounting (pgbench runs only). */
  readonly processes?: ServerProcesses;
}

/** CPU per transaction while pgbench ran (Linux, servers on this machine; null parts where unknown). */
export interface CeilingCpu {
  /** PostgreSQL CPU µs per transaction. */
  readonly postgresMicros: number | null;
  /** pgbench's own CPU µs per transaction (the client). */
  readonly clientMicros: number | null;
  /** Share of the machine's CPU that was busy (0..1): near 1, the ceiling is the CPU's. */
  readonly machineBusyShare: number | null;
  /** Share stolen by the hypervisor (0..1). */
  readonly machineStealShare: number | null;
}

export interface CeilingResult {
  readonly variant: CeilingVariant;
  readonly tool: 'pgbench' | 'node-pg';
  readonly clients: number;
  readonly rewardsPerUser: number;
  readonly seconds: number;
  /** Transactions (statements) per second. */
  readonly tps: number;
  /** Users in each transaction (1 but for `grouped`). */
  readonly usersPerTransaction: number;
  /** Users settled per second: `tps` × `usersPerTransaction`. */
  readonly usersPerSecond: number;
  readonly latencyMs: number | null;
  readonly cpu?: CeilingCpu | null;
}

const BATCH_ID = 'bench-ceiling';

function valuesRows(rewardsPerUser: number): string {
  return Array.from(
    { length: rewardsPerUser },
    (_, i) => `('c-u' || :u, 'c-r' || :r || '-${i}', :a${i}, 'reward', '${BATCH_ID}', '${DESCRIPTION}')`,
  ).join(',\n    ');
}

function header(rewardsPerUser: number): string {
  const amounts = Array.from({ length: rewardsPerUser }, (_, i) => `\\set a${i} random(1, 1000)`).join('\n');
  // r is unique per transaction (its ledger ids are new, as a fresh batch's are); u is a fresh wallet nearly always
  return `\\set u random(1, 2000000000)\n\\set r random(1, 9000000000000000000)\n${amounts}\n`;
}

/** pgbench scripts of each variant. */
export function pgbenchScript(variant: CeilingVariant, rewardsPerUser: number, usersPerStatement = 32): string {
  if (variant === 'statement') {
    return `${header(rewardsPerUser)}with inserted as (
  insert into ledger_entries (uid, operation_id, amount, kind, batch_id, description) values
    ${valuesRows(rewardsPerUser)}
  on conflict (operation_id) do nothing
  returning amount
), delta as (select sum(amount) as change from inserted having count(*) > 0)
insert into wallets as w (uid, balance) select 'c-u' || :u, change from delta
on conflict (uid) do update set balance = w.balance + excluded.balance, updated_at = now();
`;
  }
  if (variant === 'transaction') {
    const insert = `with inserted as (insert into ledger_entries (uid, operation_id, amount, kind, batch_id, description) values ${valuesRows(rewardsPerUser)} on conflict (operation_id) do nothing returning amount) select coalesce(sum(amount), 0) as change from inserted`;
    return `${header(rewardsPerUser)}begin;
${insert.replace(/\s+/g, ' ')} \\gset
insert into wallets as w (uid, balance) values ('c-u' || :u, :change) on conflict (uid) do update set balance = w.balance + excluded.balance, updated_at = now();
commit;
`;
  }
  // users k of the statement are 'c-u<u>-<k>', their rewards 'c-r<r>-<k>-<i>'
  const grouped = `with input as (
  select 'c-u' || :u || '-' || k as uid, 'c-r' || :r || '-' || k || '-' || i as operation_id, ((k * 7 + i) % 1000 + 1)::int8 as amount
  from generate_series(0, ${usersPerStatement - 1}) as k, generate_series(0, ${rewardsPerUser - 1}) as i
), inserted as (
  insert into ledger_entries (uid, operation_id, amount, kind, batch_id, description)
  select uid, operation_id, amount, 'reward', '${BATCH_ID}', '${DESCRIPTION}' from input order by operation_id collate "C"
  on conflict (operation_id) do nothing
  returning uid, amount
), delta as (select uid, sum(amount) as change from inserted group by uid)
insert into wallets as w (uid, balance) select uid, change from delta order by uid collate "C"
on conflict (uid) do update set balance = w.balance + excluded.balance, updated_at = now()`;
  return `\\set u random(1, 2000000000)\n\\set r random(1, 9000000000000000000)\n${grouped.replace(/\s+/g, ' ')};\n`;
}

let pgbenchFound: boolean | undefined;
export function hasPgbench(): boolean {
  pgbenchFound ??= spawnSync('pgbench', ['--version'], { stdio: 'ignore' }).status === 0;
  return pgbenchFound;
}

async function resetTables(servers: Servers, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: withDatabase(servers.databaseUrl, database) });
  await client.connect();
  try {
    await client.query('truncate ledger_entries, wallets');
    await client.query('vacuum analyze ledger_entries, wallets');
  } finally {
    await client.end();
  }
}

async function runPgbench(options: CeilingOptions, variant: CeilingVariant): Promise<CeilingResult> {
  const script = join(options.dir, `ceiling-${variant}.sql`);
  const usersPerTransaction = variant === 'grouped' ? (options.usersPerStatement ?? 32) : 1;
  writeFileSync(script, pgbenchScript(variant, options.rewardsPerUser, usersPerTransaction));
  const url = new URL(options.servers.databaseUrl);
  const args = [
    '-n',
    '-M',
    'prepared',
    '-c',
    String(options.clients),
    '-j',
    String(Math.max(1, Math.min(options.clients, cpus().length))),
    '-T',
    String(options.seconds),
    '-f',
    script,
    '-h',
    url.hostname,
    '-p',
    url.port || '5432',
    '-U',
    decodeURIComponent(url.username || 'postgres'),
    options.database,
  ];
  const env = childEnv(url.password ? { PGPASSWORD: decodeURIComponent(url.password) } : {});
  const before = cpuSnapshot(options.processes);
  const { stdout } = await runProcess('pgbench', args, env);
  const usage = cpuBetween(before, cpuSnapshot(options.processes));
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? Number.NaN);
  const perTx = (seconds: number | null): number | null =>
    seconds === null || !(processed > 0) ? null : round((seconds * 1e6) / processed, 1);
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout);
  const latency = /latency average = ([\d.]+) ms/.exec(stdout);
  const failed = /number of failed transactions: (\d+)/.exec(stdout);
  if (!tps) throw new Error(`could not read pgbench's tps:\n${stdout}`);
  if (failed && Number(failed[1]) > 0) throw new Error(`pgbench transactions failed:\n${stdout}`);
  return {
    variant,
    tool: 'pgbench',
    clients: options.clients,
    rewardsPerUser: options.rewardsPerUser,
    seconds: options.seconds,
    tps: round(Number(tps[1])),
    usersPerTransaction,
    usersPerSecond: round(Number(tps[1]) * usersPerTransaction),
    latencyMs: latency ? Number(latency[1]) : null,
    cpu: {
      postgresMicros: perTx(usage.postgres),
      clientMicros: perTx(usage.children),
      machineBusyShare: usage.machineBusyShare === null ? null : round(usage.machineBusyShare, 3),
      machineStealShare: usage.machineStealShare === null ? null : round(usage.machineStealShare, 3),
    },
  };
}

/** Without pgbench: the one-statement ceiling as a minimal pg client loop. */
async function runNodeLoop(options: CeilingOptions, variant: CeilingVariant): Promise<CeilingResult> {
  const url = withDatabase(options.servers.databaseUrl, options.database);
  const rows = Array.from(
    { length: options.rewardsPerUser },
    (_, i) => `($1, $2 || '-${i}', $${i + 3}::int8, 'reward', '${BATCH_ID}', '${DESCRIPTION}')`,
  ).join(', ');
  const statement = `with inserted as (insert into ledger_entries (uid, operation_id, amount, kind, batch_id, description) values ${rows}
     on conflict (operation_id) do nothing returning amount), delta as (select sum(amount) as change from inserted having count(*) > 0)
     insert into wallets as w (uid, balance) select $1, change from delta on conflict (uid) do update set balance = w.balance + excluded.balance, updated_at = now()`;
  const deadline = Date.now() + options.seconds * 1000;
  let done = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: options.clients }, async (_, client) => {
      const connection = new pg.Client({ connectionString: url });
      await connection.connect();
      try {
        for (let n = 0; Date.now() < deadline; n += 1) {
          const amounts = Array.from({ length: options.rewardsPerUser }, (_, i) => String(1 + ((n + i) % 1000)));
          if (variant === 'transaction') await connection.query('begin');
          await connection.query({
            name: 'ceiling',
            text: statement,
            values: [`c-u${client}-${n}`, `c-r${client}-${n}`, ...amounts],
          });
          if (variant === 'transaction') await connection.query('commit');
          done += 1;
        }
      } finally {
        await connection.end();
      }
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  const tps = round(done / seconds);
  return {
    variant,
    tool: 'node-pg',
    clients: options.clients,
    rewardsPerUser: options.rewardsPerUser,
    seconds,
    tps,
    usersPerTransaction: 1,
    usersPerSecond: tps,
    latencyMs: null,
  };
}

/** Measures each variant in turn on freshly emptied tables. */
export async function measureCeiling(options: CeilingOptions): Promise<CeilingResult[]> {
  const results: CeilingResult[] = [];
  for (const variant of options.variants ?? CEILING_VARIANTS) {
    await resetTables(options.servers, options.database);
    const tool = hasPgbench() ? 'pgbench' : 'node-pg';
    if (tool === 'node-pg' && variant === 'grouped') continue;
    note(`ceiling (${tool}, ${variant}): ${options.clients} clients × ${options.seconds} s`);
    results.push(tool === 'pgbench' ? await runPgbench(options, variant) : await runNodeLoop(options, variant));
  }
  await resetTables(options.servers, options.database);
  return results;
}
