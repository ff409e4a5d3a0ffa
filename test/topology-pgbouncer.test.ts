import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestEnvironment } from './support/environment.js';
import {
  startFaultProxy,
  startPgBouncer,
  trackedProcesses,
  type FaultProxy,
  type PgBouncer,
} from './support/topology.js';

const env = useTestEnvironment();
let bouncer: PgBouncer;
const databaseName = (): string => new URL(env.databaseUrl).pathname.slice(1);
const serverOf = (): { host: string; port: number } => {
  const url = new URL(env.databaseUrl);
  return { host: url.hostname, port: Number(url.port || 5432) };
};

beforeAll(async () => {
  const server = serverOf();
  bouncer = await startPgBouncer({ serverHost: server.host, serverPort: server.port, poolSize: 2 });
});
afterAll(async () => {
  await bouncer?.stop();
});

describe('PgBouncer (Debian 1.18) from the fault kit', () => {
  it('runs as a tracked process and serves queries in transaction pooling: ten clients share two server connections', async () => {
    expect(trackedProcesses()).toContain(`pgbouncer on 127.0.0.1:${bouncer.port}`);
    expect(bouncer.running()).toBe(true);
    const clients = Array.from({ length: 10 }, () => new pg.Client({ connectionString: bouncer.url(databaseName()) }));
    try {
      await Promise.all(clients.map((client) => client.connect()));
      // each client runs several transactions; a server connection serves whoever comes next
      const pids = new Set<number>();
      for (let round = 0; round < 3; round += 1) {
        const rows = await Promise.all(
          clients.map(async (client) => {
            await client.query('begin');
            const { rows } = await client.query<{ pid: number; db: string }>(
              'select pg_backend_pid() as pid, current_database() as db',
            );
            await client.query('commit');
            return rows[0]!;
          }),
        );
        for (const row of rows) {
          expect(row.db).toBe(databaseName());
          pids.add(row.pid);
        }
      }
      expect(pids.size).toBeLessThanOrEqual(2);
      const pools = await bouncer.admin('SHOW POOLS');
      const pool = pools.find((row) => row['database'] === databaseName())!;
      expect(pool).toMatchObject({ pool_mode: 'transaction', cl_active: 10 });
      expect(Number(pool['sv_idle']) + Number(pool['sv_active']) + Number(pool['sv_used'])).toBeLessThanOrEqual(2);
    } finally {
      await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
    }
  });

  it('repoint() sends new transactions to another server, as after a failover (here: the same server through a proxy)', async () => {
    const server = serverOf();
    let proxy: FaultProxy | undefined;
    const client = new pg.Client({ connectionString: bouncer.url(databaseName()) });
    client.on('error', () => undefined);
    try {
      proxy = await startFaultProxy({ target: server });
      await client.connect();
      await client.query('select 1');
      expect(proxy.stats().accepted).toBe(0);
      await bouncer.repoint('127.0.0.1', proxy.port);
      const databases = await bouncer.admin('SHOW DATABASES');
      expect(databases.find((row) => row['name'] === databaseName())).toMatchObject({ port: proxy.port });
      // the same client connection, a new transaction: it runs on a server connection made through the proxy. On a
      // loaded machine the first login through the proxy may miss PgBouncer's server_connect_timeout; PgBouncer then
      // refuses clients until server_login_retry has passed and ends their connection: a new one goes on.
      let probe = client;
      for (let attempt = 1; ; attempt += 1) {
        try {
          await probe.query('select 1');
          break;
        } catch (error) {
          if (attempt >= 5 || !/server login has been failing/.test(String(error))) throw error;
          if (probe !== client) await probe.end().catch(() => undefined);
          probe = new pg.Client({ connectionString: bouncer.url(databaseName()) });
          probe.on('error', () => undefined);
          await probe.connect();
        }
      }
      if (probe !== client) await probe.end().catch(() => undefined);
      expect(proxy.stats().accepted).toBeGreaterThanOrEqual(1);
      expect(proxy.stats().bytesToServer).toBeGreaterThan(0);
      await bouncer.repoint(server.host, server.port);
    } finally {
      await client.end().catch(() => undefined);
      await proxy?.close();
    }
  });

  it('stop() ends the process and forgets it', async () => {
    const spare = await startPgBouncer({ serverHost: serverOf().host, serverPort: serverOf().port });
    const description = `pgbouncer on 127.0.0.1:${spare.port}`;
    await spare.stop();
    expect(spare.running()).toBe(false);
    expect(trackedProcesses()).not.toContain(description);
  });
});
