import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listDeadLetters } from '../src/dead-letters/dead-letter-store.js';
import { WindfallMetrics } from '../src/metrics/metrics.js';
import { reconcile } from '../src/reconcile/reconcile.js';
import { GroupSettlement } from '../src/settlement/group-settlement.js';
import { SETTLE_CHUNK_USERS_SQL, SETTLE_REPLAYS_SQL, SETTLEMENT_MARKER } from '../src/settlement/settlement-sql.js';
import { loadChunkWork } from '../src/worker/job-work.js';
import type { UserOutcome, UserTask } from '../src/settlement/user-task.js';
import { balances, ledgerMismatches, rewardRows, waitForBatchDone } from './support/batches.js';
import { eventually } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { groupSettlementOptions } from './support/settling-users.js';

const env = useTestEnvironment();
/** The settlement statements' own connections (as the worker opens them), counting the statements sent. */
let statements: pg.Pool;
let sent = 0;
const INT8_MAX = 9223372036854775807n;

beforeAll(() => {
  statements = new pg.Pool({ connectionString: env.databaseUrl, max: 4, application_name: 'windfall' });
  statements.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const first = args[0] as { text?: string } | string;
      if (typeof first === 'object' && first.text?.startsWith(`/* ${SETTLEMENT_MARKER}`)) sent += 1;
      return query(...args);
    };
  });
});
afterAll(async () => {
  await statements.end();
});

function settlement(
  options: { lockWaitMs?: number; heldRowWaitMs?: number; metrics?: WindfallMetrics } = {},
): GroupSettlement {
  return new GroupSettlement(groupSettlementOptions(statements, env.pool, options));
}

/** Stages a batch (no worker) and answers its chunk's tasks. */
async function stage(
  batchId: string,
  rows: { rewardId: string; uid: string; amount: number | string }[],
): Promise<UserTask[]> {
  const windfall = await env.open({ chunkSize: 100_000, shards: 1 });
  await windfall.producer.enqueueRewards(rows, { batchId });
  const work = await loadChunkWork(env.pool, batchId, 0);
  return work!.tasks;
}

/** A wallet with `balance`, and the ledger entry that explains it. */
async function openWallet(uid: string, balance: bigint): Promise<void> {
  await env.pool.query(
    `insert into ledger_entries (uid, operation_id, amount, kind) values ($1, $1 || '-opening', $2, 'credit')`,
    [uid, balance.toString()],
  );
  await env.pool.query(`insert into wallets (uid, balance) values ($1, $2)`, [uid, balance.toString()]);
}

const settledCount = (outcomes: readonly UserOutcome[]): number =>
  outcomes.filter((outcome) => outcome.kind === 'settled').length;

describe('group settlement: many users per transaction, each user all or nothing', () => {
  it("isolates a user whose balance would overflow: only that user fails (INVALID), by halving the group; the others' rewards are applied", async () => {
    // the poisoned user's wallet is one unit below the largest bigint
    await openWallet('gp-poison', INT8_MAX - 1n);
    const rows = rewardRows(64, (n) => ({ rewardId: `gp-r${n}`, uid: n === 37 ? 'gp-poison' : `gp-u${n}`, amount: 5 }));
    const tasks = await stage('gp', rows);
    expect(tasks).toHaveLength(64);
    const metrics = new WindfallMetrics();
    sent = 0;
    const outcomes = await settlement({ metrics }).settleAll(tasks.slice(0, 32));
    const rest = await settlement({ metrics }).settleAll(tasks.slice(32));
    const all = [...outcomes, ...rest];
    const poisoned = all[tasks.findIndex((task) => task.uid === 'gp-poison')]!;
    expect(poisoned).toMatchObject({ kind: 'failed', failure: { reason: 'INVALID', transient: false } });
    expect(poisoned.kind === 'failed' && poisoned.failure.message).toMatch(/gp-poison.*bigint/);
    expect(settledCount(all)).toBe(63);
    // 1 for the healthy group; 1 + 2 per halving level (32 → 16 → 8 → 4 → 2 → 1) for the poisoned one
    expect(sent).toBeLessThanOrEqual(1 + 1 + 2 * 5);
    const wallets = await balances(env.pool);
    expect(wallets.get('gp-poison')).toBe(INT8_MAX - 1n);
    for (let n = 0; n < 64; n += 1) if (n !== 37) expect(wallets.get(`gp-u${n}`)).toBe(5n);
    const { rows: poisonEntries } = await env.pool.query(
      `select 1 from ledger_entries where uid = 'gp-poison' and batch_id = 'gp'`,
    );
    expect(poisonEntries).toHaveLength(0);
  });

  it('settles duplicates, conflicts and already-applied rewards in the same statement, and judges again a reward a concurrent transaction wrote', async () => {
    const windfall = await env.open();
    await windfall.wallet.addBalance('gc-u', 7, { operationId: 'gc-dup' }); // same user and amount: a duplicate
    await windfall.wallet.addBalance('gc-other', 9, { operationId: 'gc-conf' }); // another user: a conflict
    const tasks = await stage('gc', [
      { rewardId: 'gc-dup', uid: 'gc-u', amount: 7 },
      { rewardId: 'gc-conf', uid: 'gc-u', amount: 9 },
      { rewardId: 'gc-new', uid: 'gc-u', amount: 11 },
      { rewardId: 'gc-late', uid: 'gc-u', amount: 13 },
      { rewardId: 'gc-v1', uid: 'gc-v', amount: 1 },
    ]);
    // another transaction writes gc-late (same user and amount) and commits while our statement waits for it
    const other = await env.pool.connect();
    try {
      await other.query('begin');
      await other.query(
        `insert into ledger_entries (uid, operation_id, amount, kind) values ('gc-u', 'gc-late', 13, 'credit')`,
      );
      await other.query(
        `insert into wallets (uid, balance) values ('gc-u', 13) on conflict (uid) do update set balance = wallets.balance + 13`,
      );
      const settling = settlement().settleAll(tasks);
      await eventually(async () => {
        const { rows } = await env.pool.query(
          `select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
        );
        return rows.length > 0;
      }, 'the settlement statement to wait for the other transaction');
      await other.query('commit');
      const outcomes = await settling;
      const u = outcomes[tasks.findIndex((task) => task.uid === 'gc-u')]!;
      expect(u).toMatchObject({ kind: 'settled', applied: 1, alreadyApplied: 0, duplicates: 2 });
      expect(u.kind === 'settled' && u.conflicts.map((conflict) => [conflict.rewardId, conflict.existing.uid])).toEqual(
        [['gc-conf', 'gc-other']],
      );
    } finally {
      other.release();
    }
    const { rows: duplicates } = await env.pool.query(
      `select reward_id from reward_duplicates where batch_id = 'gc' order by reward_id`,
    );
    expect(duplicates.map((row) => row.reward_id)).toEqual(['gc-dup', 'gc-late']);
    expect((await balances(env.pool)).get('gc-u')).toBe(7n + 13n + 11n);

    // run again (a job re-run): nothing is credited twice, and the applied reward counts as already applied
    const again = await settlement().settleAll(tasks);
    expect(again[tasks.findIndex((task) => task.uid === 'gc-u')]).toMatchObject({
      kind: 'settled',
      applied: 0,
      alreadyApplied: 1,
      duplicates: 2,
    });
    expect(again[tasks.findIndex((task) => task.uid === 'gc-v')]).toMatchObject({
      kind: 'settled',
      applied: 0,
      alreadyApplied: 1,
    });
    expect(await ledgerMismatches(env.pool)).toEqual([]);
  });

  it('two users of one group with the same rewardId, and a rewardId another transaction commits for another user mid-statement: each inserted once, the rest judged conflicts', async () => {
    // two batches that disagree about who gets gd-same, settled in the same group
    const first = await stage('gd1', [
      { rewardId: 'gd-same', uid: 'gd-a', amount: 5 },
      { rewardId: 'gd-a2', uid: 'gd-a', amount: 1 },
    ]);
    const second = await stage('gd2', [
      { rewardId: 'gd-same', uid: 'gd-b', amount: 5 },
      { rewardId: 'gd-late', uid: 'gd-b', amount: 2 },
      { rewardId: 'gd-b2', uid: 'gd-b', amount: 3 },
    ]);
    const tasks = [...first, ...second];
    const other = await env.pool.connect();
    try {
      // another transaction writes gd-late for another user and commits while the group's statement waits for it
      await other.query('begin');
      await other.query(
        `insert into ledger_entries (uid, operation_id, amount, kind) values ('gd-c', 'gd-late', 2, 'credit')`,
      );
      await other.query(`insert into wallets (uid, balance) values ('gd-c', 2)`);
      sent = 0;
      const settling = settlement().settleAll(tasks);
      await eventually(async () => {
        const { rows } = await env.pool.query(
          `select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
        );
        return rows.length > 0;
      }, 'the settlement statement to wait for the other transaction');
      await other.query('commit');
      const [a, b] = await settling;
      expect(a).toMatchObject({ kind: 'settled', applied: 2, duplicates: 0, conflicts: [] });
      expect(b).toMatchObject({ kind: 'settled', applied: 1, duplicates: 0 });
      expect(
        b!.kind === 'settled' && b!.conflicts.map((conflict) => [conflict.rewardId, conflict.existing.uid]).sort(),
      ).toEqual([
        ['gd-late', 'gd-c'],
        ['gd-same', 'gd-a'],
      ]);
      // the group ran again once after the unique violation, then judged the two conflicts
      expect(sent).toBe(2);
    } finally {
      other.release();
    }
    const wallets = await balances(env.pool);
    expect([wallets.get('gd-a'), wallets.get('gd-b'), wallets.get('gd-c')]).toEqual([6n, 3n, 2n]);
    expect(await ledgerMismatches(env.pool)).toEqual([]);
  });

  it('a wallet row held by another transaction holds up only its own user: the group is split after the wait limit', async () => {
    const tasks = await stage(
      'gh',
      rewardRows(16, (n) => ({ rewardId: `gh-r${n}`, uid: `gh-u${n % 8}`, amount: 3 })),
    );
    await openWallet('gh-u5', 100n);
    const holder = await env.pool.connect();
    let held = true;
    try {
      await holder.query('begin');
      await holder.query(`select 1 from wallets where uid = 'gh-u5' for update`);
      const settling = settlement({ lockWaitMs: 200 }).settleAll(tasks);
      // the seven other users are applied while gh-u5's row is still held
      await eventually(async () => {
        const { rows } = await env.pool.query(
          `select count(distinct uid)::int as n from ledger_entries where batch_id = 'gh'`,
        );
        return rows[0].n === 7;
      }, 'the other users applied while one wallet row is held');
      await holder.query('commit');
      held = false;
      const outcomes = await settling;
      expect(settledCount(outcomes)).toBe(8);
    } finally {
      if (held) await holder.query('rollback');
      holder.release();
    }
    const wallets = await balances(env.pool);
    for (let n = 0; n < 8; n += 1) expect(wallets.get(`gh-u${n}`)).toBe(n === 5 ? 106n : 6n);
  });
});

describe('group settlement: outcomes per user, as soon as each is known', () => {
  it("delivers the other users' outcomes while one wallet row is still held, and gives the held user back after the limit", async () => {
    const tasks = await stage(
      'gd',
      rewardRows(6, (n) => ({ rewardId: `gd-r${n}`, uid: `gd-u${n}`, amount: 4 })),
    );
    await openWallet('gd-u2', 50n);
    const holder = await env.pool.connect();
    try {
      await holder.query('begin');
      await holder.query(`select 1 from wallets where uid = 'gd-u2' for update`);
      const delivered: string[] = [];
      let heldOutcome: UserOutcome | undefined;
      const settling = settlement({ lockWaitMs: 150, heldRowWaitMs: 3000 }).settle(tasks, (task, outcome) => {
        delivered.push(task.uid);
        if (task.uid === 'gd-u2') heldOutcome = outcome;
      });
      await settling;
      // the row was held throughout: the five others were delivered first, the held user last, after the limit
      expect(delivered.slice(0, 5).sort()).toEqual(['gd-u0', 'gd-u1', 'gd-u3', 'gd-u4', 'gd-u5']);
      expect(delivered.slice(5)).toEqual(['gd-u2']);
      expect(heldOutcome).toMatchObject({ kind: 'failed', failure: { reason: 'DB_ERROR', transient: true } });
      expect(heldOutcome?.kind === 'failed' && heldOutcome.failure.message).toMatch(
        /gd-u2.*locked by another transaction/,
      );
    } finally {
      await holder.query('rollback');
      holder.release();
    }
    expect((await balances(env.pool)).get('gd-u2')).toBe(50n);
  });

  it("a trigger's exception for one user (no data error) fails only that user, for now: its job retries it", async () => {
    const tasks = await stage(
      'gt',
      rewardRows(40, (n) => ({ rewardId: `gt-r${n}`, uid: `gt-u${n % 20}`, amount: 1 })),
    );
    await env.pool.query(`create function gt_refuse() returns trigger language plpgsql as $$
      begin if new.uid = 'gt-u13' then raise exception 'refused by a trigger for %', new.uid; end if; return new; end $$`);
    await env.pool.query(
      `create trigger gt_refuse before insert on ledger_entries for each row execute function gt_refuse()`,
    );
    try {
      const outcomes = await settlement().settleAll(tasks);
      const failedOnes = outcomes.flatMap((outcome, i) =>
        outcome.kind === 'failed' ? [[tasks[i]!.uid, outcome.failure.reason, outcome.failure.transient]] : [],
      );
      expect(failedOnes).toEqual([['gt-u13', 'DB_ERROR', true]]);
      expect(settledCount(outcomes)).toBe(19);
    } finally {
      await env.pool.query('drop trigger gt_refuse on ledger_entries');
      await env.pool.query('drop function gt_refuse()');
    }
  });
});

describe('the worker: every user of a batch in exactly one transaction', () => {
  it('one poisoned user among 300: only that user is dead-lettered; each user’s rewards share one transaction', async () => {
    await openWallet('wp-poison', INT8_MAX - 5n);
    const windfall = await env.open({ jobAttempts: 1 });
    await windfall.createWorker().start();
    const rows = rewardRows(1204, (n) => ({
      rewardId: `wp-r${n}`,
      uid: n < 4 ? 'wp-poison' : `wp-u${n % 300}`,
      amount: 1 + (n % 5),
    }));
    await windfall.producer.enqueueRewards(rows, { batchId: 'wp' });
    const report = await waitForBatchDone(env.pool, 'wp');
    expect(report).toMatchObject({ total: 1204, applied: 1200, deadLettered: 4, status: 'completed_with_failures' });
    const entries = await listDeadLetters(env.pool, { batchId: 'wp' });
    expect(entries.map((entry) => [entry.uid, entry.reason, entry.rewards.length])).toEqual([
      ['wp-poison', 'INVALID', 4],
    ]);
    // never split: all of a user's ledger entries were written by one transaction
    const { rows: split } = await env.pool.query(
      `select uid from ledger_entries where batch_id = 'wp' group by uid having count(distinct xmin::text) > 1`,
    );
    expect(split).toEqual([]);
    // and users did share transactions (group commit)
    const { rows: shared } = await env.pool.query(
      `select count(distinct xmin::text)::int as n from ledger_entries where batch_id = 'wp'`,
    );
    expect(shared[0].n).toBeLessThan(300);
    expect((await reconcile(env.pool, { strict: true })).mismatches).toEqual([]);
  });
});

interface PlanNode {
  readonly 'Node Type': string;
  readonly 'Relation Name'?: string;
  readonly Plans?: readonly PlanNode[];
}

function planNodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}

describe('the settlement statement never reads the whole ledger', () => {
  it('probes the ledger per reward even when PostgreSQL over-estimates the input (400 replayed entries)', async () => {
    const client = await env.pool.connect();
    try {
      await client.query('begin');
      // a ledger big enough that a scan of it looks cheap to the planner next to 400 × 100 guessed rewards
      await client.query(
        `insert into ledger_entries (uid, operation_id, amount, kind) select 'pl-u' || n % 5000, 'pl-' || n, 1, 'credit' from generate_series(1, 60000) n`,
      );
      await client.query('analyze ledger_entries');
      const ids = Array.from({ length: 400 }, (_, n) => String(n + 1));
      for (const [name, sql, values] of [
        ['replays', SETTLE_REPLAYS_SQL, [ids, ids.map(() => '1'), '5000', '30000']],
        [
          'chunk users',
          SETTLE_CHUNK_USERS_SQL,
          [
            ids.map(() => 'pl-b'),
            ids.map(() => 0),
            ids.map(() => 0),
            ids.map((id) => `pl-u${id}`),
            ids.map(() => '1'),
            [],
            [],
            '5000',
            '30000',
          ],
        ],
      ] as const) {
        const { rows } = await client.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(`explain (format json) ${sql}`, [
          ...values,
        ]);
        // (the insert itself is a ModifyTable node on the ledger)
        const ledgerReads = planNodes(rows[0]!['QUERY PLAN'][0]!.Plan).filter(
          (node) => node['Relation Name'] === 'ledger_entries' && node['Node Type'] !== 'ModifyTable',
        );
        const plan = JSON.stringify(rows[0]!['QUERY PLAN']);
        expect(ledgerReads.length, `${name}: ${plan}`).toBeGreaterThan(0);
        // every read of the ledger is an index probe, never a scan of the whole table
        expect(
          ledgerReads.map((node) => node['Node Type']).filter((type) => !type.startsWith('Index')),
          `${name}: ${plan}`,
        ).toEqual([]);
      }
    } finally {
      await client.query('rollback');
      client.release();
    }
  });
});
