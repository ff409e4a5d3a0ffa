import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  cpuBetween,
  cpuSnapshot,
  postmasterOf,
  redisProcessOf,
  type ServerProcesses,
} from '../bench/cpu-accounting.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

/** The servers' processes as the bench finds them; null PIDs when a server is not a process of this machine. */
async function serverProcesses(): Promise<ServerProcesses> {
  const { rows } = await env.pool.query<{ pid: number }>('select pg_backend_pid() as pid');
  return { postmaster: postmasterOf(rows[0]!.pid), redis: redisProcessOf(await env.redis.info('server')) };
}

/**
 * Runs a process that spins until it has used `ms` of CPU (its own, not the clock's: on a busy machine a clock-timed
 * spin gets less CPU than it lasts) and waits until it is reaped.
 */
function spin(ms: number): Promise<void> {
  const script = `const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; }; while (cpu() < ${ms});`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], {
      stdio: 'ignore',
    });
    child.on('error', reject);
    child.on('close', () => resolve());
  });
}

/**
 * The bench's CPU accounting (bench/cpu-accounting.ts), on which the bench's CPU-per-user figures (docs/performance.md) rest: the CPU of a
 * PostgreSQL backend that has exited is still counted (through the postmaster), and so is a finished child process.
 */
describe('bench CPU accounting', () => {
  it('counts the CPU of a PostgreSQL backend that has exited, of Redis, and of a finished child process', async (context) => {
    const processes = await serverProcesses();
    if (processes.postmaster === null || processes.redis === null) {
      context.skip('PostgreSQL or Redis is not a process of this machine: the bench leaves these figures blank there');
    }
    const before = cpuSnapshot(processes);

    // about half a second of PostgreSQL CPU on a connection that is closed (its backend exits) before the snapshot
    const client = new pg.Client({ connectionString: env.databaseUrl });
    await client.connect();
    await client.query('select count(*) from generate_series(1, 4000000) as n where n % 7 = 0');
    await client.end();
    // Redis CPU: a few thousand commands
    const redis = new Redis(env.redisUrl);
    await Promise.all(Array.from({ length: 20_000 }, (_, i) => redis.set(`${env.prefix}:cpu:${i % 100}`, String(i))));
    redis.disconnect();
    await spin(300);
    // the exited backend is reaped by the postmaster shortly after its connection closes
    await new Promise((resolve) => setTimeout(resolve, 200));

    const usage = cpuBetween(before, cpuSnapshot(processes));
    expect(usage.postgres).toBeGreaterThan(0.15);
    expect(usage.redis).toBeGreaterThan(0);
    expect(usage.children).toBeGreaterThan(0.2);
    expect(usage.children).toBeLessThan(usage.seconds + 0.5);
    expect(usage.machineBusyShare).toBeGreaterThan(0);
    expect(usage.machineBusyShare).toBeLessThanOrEqual(1);
  });

  it('finds no postmaster behind a PID that is not a PostgreSQL process', () => {
    expect(postmasterOf(process.pid)).toBeNull();
    expect(redisProcessOf(`process_id:${process.pid}`)).toBeNull();
  });
});
