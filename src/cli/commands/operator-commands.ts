import { InvalidArgumentError, Option, type Command } from 'commander';
import type { ListedDeadLetter } from '../../dead-letters/dead-letter-store.js';
import { DEFAULT_REWARDS_PER_ENTRY } from '../../dead-letters/dead-letter-store.js';
import {
  AUDIT_ACTIONS,
  DEAD_LETTER_REASONS,
  DEAD_LETTER_STATES,
  type DeadLetterState,
} from '../../db/stored-values.js';
import type { DeadLetterSelection } from '../../dead-letters/dead-letter-selection.js';
import { selectionFilter } from '../../dead-letters/dead-letter-selection.js';
import type { PurgeReport, ReplayReport } from '../../dead-letters/dead-letter-service.js';
import type { LockStatus } from '../../lock/user-locks.js';
import { UserLocks } from '../../lock/user-locks.js';
import type { QueueStats } from '../../queue/queue-stats.js';
import { readQueueStats } from '../../queue/queue-stats.js';
import type { Windfall } from '../../runtime/windfall.js';
import { cliActor, listAudit, type AuditRecord } from '../../audit/audit-trail.js';
import { type CommandRegistry, withWindfall } from '../support/context.js';
import { wholeNumber } from '../support/option-parsers.js';
import { CommandFailedError, EXIT, UsageError } from '../support/exit-codes.js';
import { formatTable, printJson, printLine, printNote } from '../support/output.js';

/** What `windfall lock release` answers. */
export interface LockReleaseReport {
  readonly uid: string;
  /** True when a lock was held and has been deleted. */
  readonly released: boolean;
  /** The lock as it was just before the release. */
  readonly previous: LockStatus;
}

/** Milliseconds for people: `850 ms`, `4.2 s`, `3 m 12 s`, `2 h 5 m`. */
export function formatAge(ms: number | null): string | null {
  if (ms === null) return null;
  if (ms < 1000) return `${ms} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} m ${Math.floor(seconds % 60)} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} m`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

function shorten(text: string, length: number): string {
  const line = text.replace(/\s+/g, ' ');
  return line.length <= length ? line : `${line.slice(0, length - 1)}…`;
}

/** Human form of `windfall queues`. */
export function describeQueues(stats: readonly QueueStats[]): string {
  return formatTable(
    ['queue', 'waiting', 'active', 'delayed', 'failed', 'completed', 'oldest waiting'],
    stats.map((s) => [s.queue, s.waiting, s.active, s.delayed, s.failed, s.completed, formatAge(s.oldestWaitingMs)]),
  );
}

/** Human form of dead-letter entries. */
export function describeDeadLetters(entries: readonly ListedDeadLetter[]): string {
  if (entries.length === 0) return 'no dead-letter entries match';
  return formatTable(
    ['id', 'batchId', 'uid', 'rewards', 'amount', 'reason', 'attempts', 'failedAt', 'state', 'error'],
    entries.map((e) => [
      e.id,
      e.batchId,
      e.uid,
      e.rewardCount,
      e.amount,
      e.reason,
      e.attempts,
      e.failedAt,
      e.state,
      shorten(e.error, 60),
    ]),
  );
}

/** Human form of one entry with its rewards (those listed: `--rewards`). */
export function describeDeadLetter(entry: ListedDeadLetter): string {
  const head = formatTable(
    ['field', 'value'],
    [
      ['id', entry.id],
      ['batchId', entry.batchId],
      ['uid', entry.uid],
      ['shard', String(entry.shard)],
      ['reason', entry.reason],
      ['error', entry.error],
      ['attempts', String(entry.attempts)],
      ['failedAt', entry.failedAt],
      ['state', entry.state],
      ['chunkNo', entry.chunkNo === null ? null : String(entry.chunkNo)],
      ['replayOf', entry.replayOf],
      ['replayedAt', entry.replayedAt],
      ['rewards', `${entry.rewardCount} (amount ${entry.amount})`],
    ],
  );
  const rewards = formatTable(
    ['rewardId', 'uid', 'amount', 'description'],
    entry.rewards.map((r) => [r.rewardId, r.uid, r.amount, r.description ?? null]),
  );
  const more =
    entry.rewards.length < entry.rewardCount
      ? `\n(the first ${entry.rewards.length} of ${entry.rewardCount} rewards: \`--rewards ${entry.rewardCount}\` or \`--rewards all\` lists more)`
      : '';
  return `${head}\n\n${rewards}${more}`;
}

/** Rows a human table of a bulk action shows (`--json` lists up to 1,000; the counts cover everything). */
const HUMAN_ROWS = 20;

/** `, … and 5 more` after the first items of a list of `count`. */
function andMore(shown: number, count: number): string {
  return count > shown ? ` … and ${count - shown} more` : '';
}

/** Human form of a replay: the first entries, and the counts of all. */
export function describeReplay(report: ReplayReport): string {
  const verb = report.dryRun ? 'would replay' : 'replayed';
  const count = report.replayedCount;
  const rewards = report.rewardCount;
  const summary = `${verb} ${count} entr${count === 1 ? 'y' : 'ies'} (${rewards} reward${rewards === 1 ? '' : 's'})`;
  if (count === 0) return `nothing to replay: no open entry matches`;
  const shown = report.replayed.slice(0, HUMAN_ROWS);
  const table = formatTable(
    ['id', 'batchId', 'uid', 'rewards', 'jobId'],
    shown.map((e) => [e.id, e.batchId, e.uid, e.rewards, e.jobId]),
  );
  const more = count > shown.length ? `\n… and ${count - shown.length} more (\`--json\` lists the first 1,000)` : '';
  return `${table}${more}\n${summary}`;
}

/** Human form of a purge: the first ids, and the count of all. */
export function describePurge(report: PurgeReport): string {
  if (report.count === 0) return 'nothing to purge: no open entry matches';
  const shown = report.purged.slice(0, HUMAN_ROWS);
  return `${report.dryRun ? 'would purge' : 'purged'} ${report.count} entr${report.count === 1 ? 'y' : 'ies'}: ${shown.join(', ')}${andMore(shown.length, report.count)}`;
}

/** Human form of a lock status. */
export function describeLock(status: LockStatus): string {
  return formatTable(
    ['uid', 'locked', 'ttlMs', 'owner', 'acquiredAt'],
    [[status.uid, status.locked ? 'yes' : 'no', status.ttlMs, status.owner, status.acquiredAt]],
  );
}

/** The lock tools over this Windfall's Redis connection and prefix. */
export function lockTools(windfall: Windfall): UserLocks {
  return new UserLocks(windfall.redis, { prefix: windfall.config.prefix, logger: windfall.logger });
}

/**
 * `windfall lock release --force` and `DELETE /v1/locks/:uid`: deletes the lock whoever holds it, logging a warning,
 * and records it in the audit trail (`lock.force_release`; Redis has no transaction to share with it).
 */
export async function forceReleaseLock(windfall: Windfall, uid: string, actor: string): Promise<LockReleaseReport> {
  const previous = await windfall.wallet.forceReleaseLock(uid, { actor });
  return { uid, released: previous.locked, previous };
}

function selectionOf(
  ids: readonly string[],
  options: { all?: boolean; reason?: string; batch?: string },
): DeadLetterSelection {
  return {
    ids,
    ...(options.all ? { all: true } : {}),
    ...(options.reason !== undefined ? { reason: options.reason } : {}),
    ...(options.batch !== undefined ? { batchId: options.batch } : {}),
  };
}

function reasonOption(): Option {
  return new Option('--reason <reason>', 'only entries with this reason').choices(DEAD_LETTER_REASONS);
}

/** `--rewards N` (0 or more) or `all`: rewards listed per entry. */
function rewardsOption(all: boolean): Option {
  return new Option(
    '--rewards <n>',
    `at most this many rewards per entry (default ${DEFAULT_REWARDS_PER_ENTRY}; \`rewardCount\` says how many it holds)${all ? '; `all` for every one' : ''}`,
  )
    .default(DEFAULT_REWARDS_PER_ENTRY)
    .argParser((value: string): number => {
      if (all && value === 'all') return Number.MAX_SAFE_INTEGER;
      if (!/^\d{1,9}$/.test(value))
        throw new InvalidArgumentError(`--rewards must be a whole number ≥ 0${all ? ' or `all`' : ''}`);
      return Number(value);
    });
}

/** `queues`: counts of every queue. */
function registerQueuesCommand(program: Command, { globals }: CommandRegistry): void {
  program
    .command('queues')
    .description('jobs per queue (each shard, the dead-letter queue) and state, and the oldest waiting job age')
    .option('--json', 'print a JSON document')
    .action(async (options: { json?: boolean }, command: Command) => {
      await withWindfall(globals(command), async (windfall) => {
        const [stats, open] = await Promise.all([readQueueStats(windfall.queues), windfall.deadLetters.openCounts()]);
        if (options.json) {
          printJson(stats);
          return;
        }
        printLine(describeQueues(stats));
        const entries = Object.values(open).reduce((sum, count) => sum + count.entries, 0);
        const rewards = Object.values(open).reduce((sum, count) => sum + count.rewards, 0);
        printLine(
          `\nopen dead-letter entries (PostgreSQL): ${entries} (${rewards} rewards)${entries > 0 ? ' — see `windfall dlq list`' : ''}`,
        );
      });
    });
}

/** `dlq list|show|replay|purge`. */
function registerDeadLetterCommands(program: Command, registry: CommandRegistry): void {
  const dlq = program.command('dlq').description('the dead-letter queue: list, show, replay, purge entries');
  registerDeadLetterList(dlq, registry);
  registerDeadLetterShow(dlq, registry);
  registerDeadLetterReplay(dlq, registry);
  registerDeadLetterPurge(dlq, registry);
}

/** `dlq list`: entries, open ones by default, oldest first. */
function registerDeadLetterList(dlq: Command, { globals }: CommandRegistry): void {
  dlq
    .command('list')
    .description('dead-lettered entries (open ones by default), oldest first')
    .addOption(reasonOption())
    .option('--batch <batchId>', 'only entries of this batch')
    .addOption(
      new Option('--state <state>', 'entries in this state').choices([...DEAD_LETTER_STATES, 'any']).default('open'),
    )
    .option('--limit <n>', 'at most this many entries', wholeNumber('--limit'), 1000)
    .addOption(rewardsOption(false))
    .option('--json', 'print a JSON document')
    .action(
      async (
        options: {
          reason?: string;
          batch?: string;
          state: DeadLetterState | 'any';
          limit: number;
          rewards: number;
          json?: boolean;
        },
        command: Command,
      ) => {
        await withWindfall(globals(command), async (windfall) => {
          const filter = selectionFilter(selectionOf([], options), { required: false });
          const entries = await windfall.deadLetters.list({
            ...filter,
            state: options.state,
            limit: options.limit,
            rewards: options.rewards,
          });
          if (options.json) printJson(entries);
          else printLine(describeDeadLetters(entries));
        });
      },
    );
}

/** `dlq show <id>`: one entry with its rewards. */
function registerDeadLetterShow(dlq: Command, { globals }: CommandRegistry): void {
  dlq
    .command('show')
    .description('one dead-letter entry with its rewards')
    .argument('<id>')
    .addOption(rewardsOption(true))
    .option('--json', 'print a JSON document')
    .action(async (id: string, options: { rewards: number; json?: boolean }, command: Command) => {
      if (!/^\d{1,18}$/.test(id)) throw new UsageError(`dead-letter ids are whole numbers, got ${JSON.stringify(id)}`);
      await withWindfall(globals(command), async (windfall) => {
        const entry = await windfall.deadLetters.get(id, { rewards: options.rewards });
        if (!entry) throw new CommandFailedError(`no dead-letter entry has id ${id} (see \`windfall dlq list\`)`);
        if (options.json) printJson(entry);
        else printLine(describeDeadLetter(entry));
      });
    });
}

/** `dlq replay`: re-enqueues entries; exit 1 when one could not be replayed. */
function registerDeadLetterReplay(dlq: Command, { globals, setExit }: CommandRegistry): void {
  dlq
    .command('replay')
    .description(
      're-enqueue entries into their shard queue; an entry leaves the queue only once its replay is enqueued',
    )
    .argument('[ids...]', 'entry ids')
    .option('--all', 'every open entry')
    .addOption(reasonOption())
    .option('--batch <batchId>', 'open entries of this batch')
    .option('--dry-run', 'show what would be replayed; change nothing')
    .option('--json', 'print a JSON document')
    .action(
      async (
        ids: string[],
        options: { all?: boolean; reason?: string; batch?: string; dryRun?: boolean; json?: boolean },
        command: Command,
      ) => {
        const filter = selectionFilter(selectionOf(ids, options), { required: true });
        await withWindfall(globals(command), async (windfall) => {
          const report = await windfall.deadLetters.replay(filter, {
            dryRun: options.dryRun ?? false,
            actor: cliActor(globals(command).actor),
          });
          if (options.json) printJson(report);
          else printLine(describeReplay(report));
          for (const skipped of report.skipped) printNote(`windfall: entry ${skipped.id} not replayed: ${skipped.why}`);
          if (report.skippedCount > report.skipped.length)
            printNote(`windfall: … and ${report.skippedCount - report.skipped.length} more entries not replayed`);
          // an entry replayed already is no failure (a replay is idempotent); a missing or purged one is (those not
          // listed too: only an id selection, always listed whole, can name an entry replayed already)
          if (
            report.skipped.some((skipped) => skipped.state !== 'replayed') ||
            report.skippedCount > report.skipped.length
          )
            setExit(EXIT.FAILED);
        });
      },
    );
}

/** `dlq purge`: takes open entries out for good (needs `--yes`). */
function registerDeadLetterPurge(dlq: Command, { globals }: CommandRegistry): void {
  dlq
    .command('purge')
    .description('take open entries out of the queue for good (they stay on record as dead-lettered); needs --yes')
    .argument('[ids...]', 'entry ids (default: every open entry matching the filters)')
    .addOption(reasonOption())
    .option('--batch <batchId>', 'only entries of this batch')
    .option('--dry-run', 'show what would be purged; change nothing')
    .option('--yes', 'really purge')
    .option('--json', 'print a JSON document')
    .action(
      async (
        ids: string[],
        options: { reason?: string; batch?: string; dryRun?: boolean; yes?: boolean; json?: boolean },
        command: Command,
      ) => {
        const filter = selectionFilter(selectionOf(ids, options), { required: false });
        if (!options.yes && !options.dryRun) {
          throw new UsageError(
            'refusing to purge without --yes: purged entries are never replayed (their rewards stay uncredited). Try --dry-run first.',
          );
        }
        await withWindfall(globals(command), async (windfall) => {
          const report = await windfall.deadLetters.purge(filter, {
            dryRun: options.dryRun ?? false,
            actor: cliActor(globals(command).actor),
          });
          if (options.json) printJson(report);
          else printLine(describePurge(report));
        });
      },
    );
}

/** `lock status|release`. */
function registerLockCommands(program: Command, { globals }: CommandRegistry): void {
  const lock = program.command('lock').description("a user's Redis lock: status, emergency release");

  lock
    .command('status')
    .description('whether the lock of <uid> is held, by whom, since when and for how much longer')
    .argument('<uid>')
    .option('--json', 'print a JSON document')
    .action(async (uid: string, options: { json?: boolean }, command: Command) => {
      await withWindfall(globals(command), async (windfall) => {
        const status = await lockTools(windfall).status(uid);
        if (options.json) printJson(status);
        else printLine(describeLock(status));
      });
    });

  lock
    .command('release')
    .description('delete the lock of <uid> whoever holds it (needs --force); logs a warning')
    .argument('<uid>')
    .option('--force', 'really delete a lock that someone may hold')
    .option('--json', 'print a JSON document')
    .action(async (uid: string, options: { force?: boolean; json?: boolean }, command: Command) => {
      if (!options.force) {
        throw new UsageError(
          `refusing to release the lock of ${JSON.stringify(uid)} without --force: its holder may be working. Look first with \`windfall lock status ${uid}\`.`,
        );
      }
      await withWindfall(globals(command), async (windfall) => {
        const report = await forceReleaseLock(windfall, uid, cliActor(globals(command).actor));
        if (options.json) printJson(report);
        else if (report.released) {
          printLine(
            `released the lock of ${uid} (held by ${report.previous.owner} since ${report.previous.acquiredAt ?? 'unknown'}, ${report.previous.ttlMs ?? '?'} ms left)`,
          );
        } else printLine(`${uid} was not locked: nothing to release`);
      });
    });
}

/** `audit`: the audit trail. */
function registerAuditCommand(program: Command, { globals }: CommandRegistry): void {
  program
    .command('audit')
    .description('the audit trail of operator actions, newest first')
    .addOption(new Option('--action <action>', 'only this action').choices(AUDIT_ACTIONS))
    .option('--target <target>', 'only this target (uid:<uid>, batch:<batchId>, dead-letters:<ids or filter>)')
    .option('--limit <n>', 'at most this many records', wholeNumber('--limit'), 100)
    .option('--json', 'print a JSON document')
    .action(async (options: { action?: string; target?: string; limit: number; json?: boolean }, command: Command) => {
      await withWindfall(globals(command), async (windfall) => {
        const records = await listAudit(windfall.database.pool, {
          ...(options.action !== undefined ? { action: options.action } : {}),
          ...(options.target !== undefined ? { target: options.target } : {}),
          limit: options.limit,
        });
        if (options.json) printJson(records);
        else if (records.length === 0) printLine('no audit records match');
        else printLine(describeAudit(records));
      });
    });
}

/** Human form of audit records. */
function describeAudit(records: readonly AuditRecord[]): string {
  return formatTable(
    ['id', 'at', 'actor', 'action', 'target', 'result'],
    records.map((record) => [
      record.id,
      record.at,
      record.actor,
      record.action,
      record.target,
      JSON.stringify(record.result).slice(0, 80),
    ]),
  );
}

/** Registers queues, dlq list|show|replay|purge, lock status|release and audit. */
export function registerOperatorCommands(program: Command, registry: CommandRegistry): void {
  registerQueuesCommand(program, registry);
  registerDeadLetterCommands(program, registry);
  registerLockCommands(program, registry);
  registerAuditCommand(program, registry);
}
