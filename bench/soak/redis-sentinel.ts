/**
 * A Redis Sentinel set for failover tests: a primary and a replica (`redis-server`) and three sentinels
 * (`redis-server --sentinel`, quorum 2, a short `down-after-milliseconds`), all on random loopback ports in a
 * temporary folder. Helpers kill the primary, wait until the sentinels name the new one, and cut replication
 * (writes the primary acknowledges then never reach the replica: what an asynchronous replica loses in a failover).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomPort, redisCli, startRedisServer, waitFor, type RedisServer } from './fault-kit.js';
import { spawnServer, type ServerProcess } from './server-process.js';

/** Options of {@link startRedisSentinelSet}. */
export interface RedisSentinelSetOptions {
  /** The master's name for the sentinels. Default `mymaster`. */
  readonly masterName?: string;
  /** AOF (`appendfsync always`) on the data nodes. Default false. */
  readonly aof?: boolean;
  /** Password of the data nodes' default user (`requirepass`; the sentinels get it as `auth-pass`). Default none. */
  readonly password?: string;
  /** Password of the sentinels themselves (`requirepass`, and `sentinel-pass` between them). Default none. */
  readonly sentinelPassword?: string;
  /** How long a node must not answer before a sentinel thinks it down. Default 1000 ms. */
  readonly downAfterMs?: number;
  /** `sentinel failover-timeout`. Default 10000 ms (a failed election is tried again after twice that). */
  readonly failoverTimeoutMs?: number;
}

/** A running sentinel set. */
export interface RedisSentinelSet {
  readonly masterName: string;
  /** The sentinels' ports. */
  readonly sentinelPorts: readonly number[];
  /** `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`, as `REDIS_SENTINELS` takes it. */
  readonly sentinelList: string;
  /** The data nodes, the first primary at the start. */
  readonly nodes: readonly RedisServer[];
  /** Asks the sentinels which data node is the primary now (the one most of them name). */
  primary(): Promise<RedisServer>;
  /**
   * SIGKILLs the primary the sentinels name now (a crash: what it did not replicate is lost) and returns it; it
   * stays down until restarted.
   */
  killPrimary(): Promise<RedisServer>;
  /** Waits until every sentinel names a primary other than `oldPort` and that node says it is a master. */
  waitForNewPrimary(oldPort: number, timeoutMs?: number): Promise<RedisServer>;
  /**
   * Stops replication from the primary: the replica's user is disabled and its link closed, so the primary
   * acknowledges writes the replica never gets (the link stays down until {@link healReplication}). A replica
   * whose link has been down longer than 10 × `down-after-milliseconds` is no longer promoted.
   */
  cutReplication(): Promise<void>;
  healReplication(): Promise<void>;
  /** `redis-cli` against sentinel `index` (with its password). */
  sentinelCli(index: number, args: readonly string[]): Promise<string>;
  /** `redis-cli` against data node `node` (with the password). */
  nodeCli(node: RedisServer, args: readonly string[]): Promise<string>;
  /** Sentinel logs, for failures. */
  sentinelLogs(): string;
  /** Stops every process and removes the folders. Idempotent. */
  destroy(): Promise<void>;
}

/** The user the replica authenticates as; {@link RedisSentinelSet.cutReplication} disables it. */
const REPLICATION_USER = 'windfall-replica';

/** Starts the data nodes, then the sentinels, and waits until each sentinel sees the replica and the other two. */
export async function startRedisSentinelSet(options: RedisSentinelSetOptions = {}): Promise<RedisSentinelSet> {
  const masterName = options.masterName ?? 'mymaster';
  const replicationPassword = randomBytes(12).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'windfall-sentinel-'));
  const nodes: RedisServer[] = [];
  const sentinels: ServerProcess[] = [];
  const sentinelPorts: number[] = [];
  const auth = options.password !== undefined ? ['-a', options.password, '--no-auth-warning'] : [];
  const sentinelAuth =
    options.sentinelPassword !== undefined ? ['-a', options.sentinelPassword, '--no-auth-warning'] : [];
  const nodeArgs = [
    // every node knows the replication user: after a failover the old primary replicates as it too
    '--user',
    REPLICATION_USER,
    'on',
    `>${replicationPassword}`,
    '~*',
    '&*',
    '+@all',
    '--masteruser',
    REPLICATION_USER,
    '--masterauth',
    replicationPassword,
    '--repl-ping-replica-period',
    '1',
  ];

  const destroy = async (): Promise<void> => {
    await Promise.allSettled(sentinels.map((sentinel) => sentinel.stop('SIGTERM', 5000)));
    await Promise.allSettled(nodes.map((node) => node.destroy()));
    rmSync(dir, { recursive: true, force: true });
  };
  const nodeCli = async (node: RedisServer, args: readonly string[]): Promise<string> =>
    (await redisCli(node.port, [...auth, ...args], 10_000)).output;
  const sentinelCli = async (index: number, args: readonly string[]): Promise<string> =>
    (await redisCli(sentinelPorts[index]!, [...sentinelAuth, ...args], 10_000)).output;

  try {
    const aof = options.aof ?? false;
    const primary = await startRedisServer({
      aof,
      dir: mkdtempSync(join(dir, 'node-a-')),
      extraArgs: nodeArgs,
      ...(options.password !== undefined ? { password: options.password } : {}),
    });
    nodes.push(primary);
    const replica = await startRedisServer({
      aof,
      dir: mkdtempSync(join(dir, 'node-b-')),
      extraArgs: [...nodeArgs, '--replicaof', '127.0.0.1', String(primary.port)],
      ...(options.password !== undefined ? { password: options.password } : {}),
    });
    nodes.push(replica);
    await waitFor(
      async () => (await nodeCli(replica, ['info', 'replication'])).includes('master_link_status:up'),
      'the replica to sync with the primary',
      30_000,
      50,
    );

    for (let index = 0; index < 3; index += 1) {
      let port = await randomPort();
      while (sentinelPorts.includes(port) || nodes.some((node) => node.port === port)) port = await randomPort();
      const config = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        config,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          'daemonize no',
          `dir ${dir}`,
          'logfile ""',
          ...(options.sentinelPassword !== undefined
            ? [`requirepass ${options.sentinelPassword}`, `sentinel sentinel-pass ${options.sentinelPassword}`]
            : []),
          `sentinel monitor ${masterName} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${masterName} ${options.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${masterName} ${options.failoverTimeoutMs ?? 10_000}`,
          `sentinel parallel-syncs ${masterName} 1`,
          ...(options.password !== undefined ? [`sentinel auth-pass ${masterName} ${options.password}`] : []),
          '',
        ].join('\n'),
      );
      sentinelPorts.push(port);
      sentinels.push(
        spawnServer('redis-server', [config, '--sentinel'], {
          what: `redis-server --sentinel on 127.0.0.1:${port}`,
          asServerUser: false,
        }),
      );
    }
    await waitFor(
      async () => {
        for (const sentinel of sentinels) {
          if (!sentinel.running()) throw new Error(`a sentinel exited at start: ${sentinel.log()}`);
        }
        const views = await Promise.all(
          sentinelPorts.map((_, index) => sentinelCli(index, ['sentinel', 'master', masterName])),
        );
        return views.every(
          (view) =>
            /num-slaves\s+1\b/.test(view) && /num-other-sentinels\s+2\b/.test(view) && /flags\s+master\s/.test(view),
        );
      },
      'each sentinel to see the replica and the other two sentinels',
      60_000,
      200,
    );
  } catch (error) {
    const logs = sentinels.map((sentinel) => sentinel.log()).join('\n---\n');
    await destroy();
    throw new Error(`${(error as Error).message}\n${logs}`);
  }

  const namedPorts = async (): Promise<(number | null)[]> =>
    Promise.all(
      sentinelPorts.map(async (_, index) => {
        const reply = await sentinelCli(index, ['sentinel', 'get-master-addr-by-name', masterName]).catch(() => '');
        const port = Number(reply.trim().split('\n')[1]);
        return Number.isInteger(port) && port > 0 ? port : null;
      }),
    );
  const nodeOn = (port: number): RedisServer => {
    const node = nodes.find((candidate) => candidate.port === port);
    if (!node) throw new Error(`the sentinels name 127.0.0.1:${port}, which is not a node of this set`);
    return node;
  };
  const primary = async (): Promise<RedisServer> => {
    const named = (await namedPorts()).filter((port): port is number => port !== null);
    const counts = new Map<number, number>();
    for (const port of named) counts.set(port, (counts.get(port) ?? 0) + 1);
    const [port] = [...counts.entries()].sort((a, b) => b[1] - a[1])[0] ?? [];
    if (port === undefined) throw new Error(`no sentinel names a primary for ${masterName}`);
    return nodeOn(port);
  };

  let destroyed: Promise<void> | undefined;
  return {
    masterName,
    sentinelPorts,
    sentinelList: sentinelPorts.map((port) => `127.0.0.1:${port}`).join(','),
    nodes,
    primary,
    async killPrimary() {
      const victim = await primary();
      await victim.kill('SIGKILL');
      return victim;
    },
    async waitForNewPrimary(oldPort: number, timeoutMs = 60_000) {
      let chosen: number | undefined;
      await waitFor(
        async () => {
          const named = await namedPorts();
          const first = named[0];
          if (first === null || first === undefined || first === oldPort) return false;
          if (!named.every((port) => port === first)) return false;
          if (!(await nodeCli(nodeOn(first), ['role'])).startsWith('master')) return false;
          chosen = first;
          return true;
        },
        `the sentinels to name a new primary for ${masterName} (not 127.0.0.1:${oldPort})`,
        timeoutMs,
        100,
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n${sentinels.map((sentinel) => sentinel.log()).join('\n---\n')}`);
      });
      return nodeOn(chosen!);
    },
    async cutReplication() {
      const current = await primary();
      await nodeCli(current, ['acl', 'setuser', REPLICATION_USER, 'off']);
      await nodeCli(current, ['client', 'kill', 'user', REPLICATION_USER]);
    },
    async healReplication() {
      for (const node of nodes) {
        if (node.running()) await nodeCli(node, ['acl', 'setuser', REPLICATION_USER, 'on']);
      }
    },
    sentinelCli,
    nodeCli,
    sentinelLogs: () =>
      sentinels.map((sentinel, index) => `sentinel ${sentinelPorts[index]}:\n${sentinel.log()}`).join('\n'),
    destroy() {
      destroyed ??= destroy();
      return destroyed;
    },
  };
}
