/**
 * Debian's PgBouncer (1.18 here) for tests and the bench: transaction pooling in front of a PostgreSQL server, on a
 * random loopback port, configured in a temporary folder, run as user `postgres` (it refuses root). `repoint()` does
 * what Patroni or pg_auto_failover do after a failover: the pooler's databases point at the new primary.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { randomPort, waitFor } from './fault-kit.js';
import { giveToServer, removeServerDir, serverTempDir, spawnServer, type ServerProcess } from './server-process.js';

/** Where PgBouncer is installed on Debian. */
export const PGBOUNCER_BIN = process.env['PGBOUNCER_BIN'] ?? '/usr/sbin/pgbouncer';

/** Options of {@link startPgBouncer}. */
export interface PgBouncerOptions {
  /** The PostgreSQL server every database is forwarded to. Default 127.0.0.1:5432. */
  readonly serverHost?: string;
  readonly serverPort?: number;
  /** `pool_mode`. Default `transaction`. */
  readonly poolMode?: 'session' | 'transaction' | 'statement';
  /** Server connections per database and user (`default_pool_size`). Default 4. */
  readonly poolSize?: number;
  /** Client connections accepted at once (`max_client_conn`). Default 400. */
  readonly maxClientConnections?: number;
  /** Users allowed in (trust auth: no password is checked, as the local server trusts loopback). Default `postgres`. */
  readonly users?: readonly string[];
  /**
   * Startup parameters PgBouncer ignores instead of refusing the client. Default `extra_float_digits` and `options`:
   * 1.18 cannot pass `options` on (Windfall's settlement pool sends `-c work_mem=64MB` there; it is then dropped).
   */
  readonly ignoreStartupParameters?: readonly string[];
  /** More `[pgbouncer]` settings, e.g. `{ server_lifetime: '60' }`. */
  readonly settings?: Readonly<Record<string, string | number>>;
}

/** A running PgBouncer. */
export interface PgBouncer {
  readonly port: number;
  readonly host: string;
  /** The PostgreSQL server it forwards to now. */
  readonly server: { readonly host: string; readonly port: number };
  /** `postgres://user@127.0.0.1:port/database` through the pooler. */
  url(database: string, user?: string): string;
  /** Runs one statement on the admin console (`SHOW POOLS`, `RELOAD`, …) and returns its rows. */
  admin(command: string): Promise<Record<string, unknown>[]>;
  /**
   * Points every database at `host:port` (the config file is rewritten and reloaded) and closes the server
   * connections to the old one as they are released (`RECONNECT`): new transactions go to the new server.
   */
  repoint(host: string, port: number): Promise<void>;
  /**
   * Points every database at `host:port` by stopping PgBouncer (SIGTERM: an immediate shutdown up to 1.22, every
   * client connection closed; from 1.23 a safe shutdown, which the process helper ends with SIGKILL after 10 s) and
   * starting it again on the same port, as a failover tool that restarts the pooler does.
   */
  restart(host: string, port: number): Promise<void>;
  /** The process's output (PgBouncer logs to stderr in the foreground). */
  log(): string;
  running(): boolean;
  /** The running process (a new one after {@link restart}). */
  readonly process: ServerProcess;
  /** SIGTERM (immediate shutdown), then removes its folder. Idempotent. */
  stop(): Promise<void>;
}

function settingsText(
  options: PgBouncerOptions,
  dir: string,
  port: number,
  server: { host: string; port: number },
): string {
  const settings: Record<string, string | number> = {
    listen_addr: '127.0.0.1',
    listen_port: port,
    unix_socket_dir: '',
    auth_type: 'trust',
    auth_file: join(dir, 'users.txt'),
    admin_users: (options.users ?? ['postgres']).join(','),
    pool_mode: options.poolMode ?? 'transaction',
    default_pool_size: options.poolSize ?? 4,
    max_client_conn: options.maxClientConnections ?? 400,
    ignore_startup_parameters: (options.ignoreStartupParameters ?? ['extra_float_digits', 'options']).join(','),
    // after a failed server login (a server down, a failover), try again within a second, not 15
    server_login_retry: 1,
    server_connect_timeout: 5,
    ...options.settings,
  };
  return [
    '[databases]',
    `* = host=${server.host} port=${server.port}`,
    '',
    '[pgbouncer]',
    ...Object.entries(settings).map(([key, value]) => `${key} = ${value}`),
    '',
  ].join('\n');
}

/** Starts `pgbouncer` and waits until its admin console answers. */
export async function startPgBouncer(options: PgBouncerOptions = {}): Promise<PgBouncer> {
  const port = await randomPort();
  const dir = serverTempDir(`windfall-pgbouncer-${port}-`);
  let server = { host: options.serverHost ?? '127.0.0.1', port: options.serverPort ?? 5432 };
  const configFile = join(dir, 'pgbouncer.ini');
  const writeConfig = (): void => {
    writeFileSync(configFile, settingsText(options, dir, port, server));
    giveToServer(configFile);
  };
  const usersFile = join(dir, 'users.txt');
  writeFileSync(usersFile, (options.users ?? ['postgres']).map((user) => `"${user}" ""\n`).join(''));
  giveToServer(usersFile);
  writeConfig();
  const adminUser = (options.users ?? ['postgres'])[0]!;

  const spawn = (): ServerProcess =>
    spawnServer(PGBOUNCER_BIN, [configFile], { what: `pgbouncer on 127.0.0.1:${port}` });
  let child = spawn();
  /** Output of the processes before the running one (restarts). */
  let earlierLogs = '';
  const admin = async (command: string): Promise<Record<string, unknown>[]> => {
    // the console speaks the simple query protocol only: a query without parameters
    const client = new pg.Client({ host: '127.0.0.1', port, user: adminUser, database: 'pgbouncer' });
    client.on('error', () => undefined);
    await client.connect();
    try {
      const result = await client.query(command);
      return result.rows as Record<string, unknown>[];
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  const answering = (): Promise<void> =>
    waitFor(
      async () => {
        if (!child.running()) throw new Error(`pgbouncer exited at start: ${child.log()}`);
        return admin('SHOW VERSION').then(
          () => true,
          () => false,
        );
      },
      'pgbouncer to answer',
      15_000,
      50,
    );
  try {
    await answering();
  } catch (error) {
    await child.stop('SIGKILL');
    removeServerDir(dir);
    throw error;
  }

  let stopped: Promise<void> | undefined;
  return {
    port,
    host: '127.0.0.1',
    get server() {
      return server;
    },
    url: (database, user = adminUser) => `postgres://${user}@127.0.0.1:${port}/${database}`,
    admin,
    async repoint(host, serverPort) {
      server = { host, port: serverPort };
      writeConfig();
      await admin('RELOAD');
      await admin('RECONNECT');
    },
    async restart(host, serverPort) {
      server = { host, port: serverPort };
      writeConfig();
      await child.stop('SIGTERM');
      earlierLogs += child.log();
      child = spawn();
      await answering();
    },
    log: () => earlierLogs + child.log(),
    running: () => child.running(),
    get process() {
      return child;
    },
    stop() {
      stopped ??= child.stop('SIGTERM').then(() => removeServerDir(dir));
      return stopped;
    },
  };
}
