/**
 * A PostgreSQL 15 primary and a synchronous streaming standby for failover tests, made with the server's own tools
 * (`initdb`, `pg_basebackup -R`, `pg_ctl`) in a temporary folder, on random loopback ports, run as user `postgres`.
 * The primary names the standby in `synchronous_standby_names` with `synchronous_commit = on`: a commit returns once
 * the standby has flushed it, so a promoted standby has every acknowledged commit.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { randomPort, waitFor } from './fault-kit.js';
import {
  giveToServer,
  removeServerDir,
  runServerTool,
  serverTempDir,
  spawnServer,
  type ServerProcess,
} from './server-process.js';

/** Where Debian installs the PostgreSQL 15 server binaries. */
export const POSTGRES_BIN_DIR = process.env['POSTGRES_BIN_DIR'] ?? '/usr/lib/postgresql/15/bin';
/** The standby's `application_name`, as `synchronous_standby_names` names it. */
export const STANDBY_NAME = 'standby1';

/** How `pg_ctl stop` stops a server: `immediate` is a crash (no checkpoint, clients cut at once). */
export type StopMode = 'smart' | 'fast' | 'immediate';

/** One PostgreSQL server of the pair. */
export interface PostgresNode {
  readonly name: 'primary' | 'standby';
  readonly port: number;
  readonly dataDir: string;
  /** `postgres://postgres@127.0.0.1:port/database`. */
  url(database?: string): string;
  /** Runs `sql` on database `postgres` (a connection of its own) and returns the rows. */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<R[]>;
  running(): boolean;
  /** The server's log (stderr), last 16 kB. */
  log(): string;
  /** `pg_ctl stop -m mode` and waits for the exit. */
  stop(mode?: StopMode): Promise<void>;
  /** Starts the server again on its port and folder. */
  start(): Promise<void>;
  /** True while it is in recovery (a standby). */
  inRecovery(): Promise<boolean>;
}

/** Options of {@link startReplicatedPostgres}. */
export interface ReplicatedPostgresOptions {
  /** `max_connections` of both servers. Default 100. */
  readonly maxConnections?: number;
  /**
   * `fsync` of both servers. Default off: a process crash (`stop('immediate')`) keeps what the kernel has; only a
   * machine crash would lose it, which these tests do not cause.
   */
  readonly fsync?: boolean;
  /** More settings for both servers' postgresql.conf. */
  readonly settings?: Readonly<Record<string, string | number>>;
}

/** A primary and its synchronous standby. */
export interface ReplicatedPostgres {
  readonly primary: PostgresNode;
  readonly standby: PostgresNode;
  /** Waits until the primary shows the standby streaming and synchronous (`pg_stat_replication`). */
  waitForSyncStandby(timeoutMs?: number): Promise<void>;
  /** Stops the primary (default `immediate`: a crash). */
  stopPrimary(mode?: StopMode): Promise<void>;
  /**
   * `pg_ctl promote` on the standby and waits until it takes writes. It runs without a synchronous standby then
   * (none is left), as Patroni leaves a lone new primary.
   */
  promoteStandby(timeoutMs?: number): Promise<void>;
  /** Stops both servers (fast) and removes the folder. Idempotent. */
  destroy(): Promise<void>;
}

const bin = (tool: string): string => join(POSTGRES_BIN_DIR, tool);

function settingLines(settings: Record<string, string | number>): string {
  return Object.entries(settings)
    .map(([key, value]) => `${key} = ${typeof value === 'number' ? value : `'${value.replace(/'/g, "''")}'`}`)
    .join('\n');
}

async function queryOn<R extends pg.QueryResultRow>(port: number, sql: string, values?: unknown[]): Promise<R[]> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    database: 'postgres',
    connectionTimeoutMillis: 5000,
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<R>(sql, values)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function makeNode(name: 'primary' | 'standby', port: number, dataDir: string): PostgresNode {
  let server: ServerProcess | undefined;
  const running = (): boolean => server?.running() ?? false;
  const node: PostgresNode = {
    name,
    port,
    dataDir,
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
    query: (sql, values) => queryOn(port, sql, values),
    running,
    log: () => server?.log() ?? '',
    async start() {
      if (running()) return;
      const started = spawnServer(bin('postgres'), ['-D', dataDir], {
        what: `postgres (${name}) on 127.0.0.1:${port}`,
      });
      server = started;
      await waitFor(
        async () => {
          if (!started.running()) throw new Error(`postgres (${name}) exited at start: ${started.log()}`);
          return queryOn(port, 'select 1').then(
            () => true,
            () => false,
          );
        },
        `postgres (${name}) on port ${port} to answer`,
        60_000,
        100,
      );
    },
    async stop(mode: StopMode = 'fast') {
      if (!running()) return;
      const stopping = server!;
      await runServerTool(bin('pg_ctl'), ['stop', '-D', dataDir, '-m', mode, '-w', '-t', '60'], {
        what: `pg_ctl stop -m ${mode} (${name})`,
      }).catch(async (error: unknown) => {
        // a server that does not stop in time is killed: the test must not hang on it
        await stopping.stop('SIGKILL', 1000);
        throw error;
      });
      await stopping.exited;
    },
    async inRecovery() {
      const rows = await queryOn<{ recovering: boolean }>(port, 'select pg_is_in_recovery() as recovering');
      return rows[0]!.recovering;
    },
  };
  return node;
}

/**
 * Makes and starts the pair: `initdb` the primary, start it, `pg_basebackup -R` the standby from it, name the
 * standby in the primary's `synchronous_standby_names`, start the standby, and wait until it is synchronous.
 */
export async function startReplicatedPostgres(options: ReplicatedPostgresOptions = {}): Promise<ReplicatedPostgres> {
  const primaryPort = await randomPort();
  let standbyPort = await randomPort();
  while (standbyPort === primaryPort) standbyPort = await randomPort();
  const dir = serverTempDir(`windfall-pg-${primaryPort}-`);
  const primaryDir = join(dir, 'primary');
  const standbyDir = join(dir, 'standby');
  const primary = makeNode('primary', primaryPort, primaryDir);
  const standby = makeNode('standby', standbyPort, standbyDir);
  const destroy = async (): Promise<void> => {
    await Promise.allSettled([primary.stop('fast'), standby.stop('fast')]);
    removeServerDir(dir);
  };

  try {
    await runServerTool(
      bin('initdb'),
      ['-D', primaryDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
      { what: 'initdb' },
    );
    const conf = join(primaryDir, 'postgresql.conf');
    appendFileSync(
      conf,
      '\n' +
        settingLines({
          listen_addresses: '127.0.0.1',
          port: primaryPort,
          unix_socket_directories: dir,
          max_connections: options.maxConnections ?? 100,
          shared_buffers: '64MB',
          wal_level: 'replica',
          max_wal_senders: 5,
          wal_keep_size: '256MB',
          hot_standby: 'on',
          synchronous_commit: 'on',
          fsync: options.fsync === true ? 'on' : 'off',
          full_page_writes: 'on',
          logging_collector: 'off',
          log_min_messages: 'warning',
          ...options.settings,
        }) +
        '\n',
    );
    await primary.start();
    await runServerTool(
      bin('pg_basebackup'),
      ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', standbyDir, '-R', '-X', 'stream'],
      { what: 'pg_basebackup', timeoutMs: 120_000 },
    );
    // the standby's own port, and a name the primary's synchronous_standby_names can refer to (later lines win)
    const standbyAuto = join(standbyDir, 'postgresql.auto.conf');
    appendFileSync(
      standbyAuto,
      '\n' +
        settingLines({
          port: standbyPort,
          primary_conninfo: `host=127.0.0.1 port=${primaryPort} user=postgres application_name=${STANDBY_NAME}`,
        }) +
        '\n',
    );
    giveToServer(standbyAuto);
    // set after the base backup: the standby does not inherit it, so once promoted it waits for no one
    await primary.query(`alter system set synchronous_standby_names = '${STANDBY_NAME}'`);
    await primary.query('select pg_reload_conf()');
    await standby.start();
  } catch (error) {
    await destroy();
    throw error;
  }

  let destroyed: Promise<void> | undefined;
  const pair: ReplicatedPostgres = {
    primary,
    standby,
    async waitForSyncStandby(timeoutMs = 60_000) {
      await waitFor(
        async () => {
          const rows = await primary
            .query<{
              state: string;
              sync_state: string;
            }>('select state, sync_state from pg_stat_replication where application_name = $1', [STANDBY_NAME])
            .catch(() => []);
          return rows.some((row) => row.state === 'streaming' && row.sync_state === 'sync');
        },
        'the standby to stream synchronously',
        timeoutMs,
        100,
      );
    },
    stopPrimary: (mode: StopMode = 'immediate') => primary.stop(mode),
    async promoteStandby(timeoutMs = 60_000) {
      await runServerTool(
        bin('pg_ctl'),
        ['promote', '-D', standbyDir, '-w', '-t', String(Math.ceil(timeoutMs / 1000))],
        {
          what: 'pg_ctl promote',
        },
      );
      await waitFor(async () => !(await standby.inRecovery()), 'the promoted standby to leave recovery', timeoutMs);
    },
    destroy() {
      destroyed ??= destroy();
      return destroyed;
    },
  };
  try {
    await pair.waitForSyncStandby();
  } catch (error) {
    await destroy();
    throw new Error(`${(error as Error).message}\nprimary: ${primary.log()}\nstandby: ${standby.log()}`);
  }
  return pair;
}
