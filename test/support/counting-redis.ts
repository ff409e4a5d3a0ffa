import { Redis } from 'ioredis';

/** Splits RESP request text into commands (arrays of bulk strings). */
function parseCommands(text: string): string[][] {
  const commands: string[][] = [];
  let at = 0;
  const line = (): string => {
    const end = text.indexOf('\r\n', at);
    const value = text.slice(at, end);
    at = end + 2;
    return value;
  };
  while (at < text.length) {
    const header = line();
    if (!header.startsWith('*')) break;
    const args: string[] = [];
    for (let n = Number(header.slice(1)); n > 0; n -= 1) {
      const length = Number(line().slice(1));
      args.push(text.slice(at, at + length));
      at += length + 2;
    }
    commands.push(args);
  }
  return commands;
}

/** What went over a {@link countingRedis} connection since its last reset. */
export interface RedisTraffic {
  /** Requests written, each one a round trip the client waits for (a command, a pipeline or a script call). */
  roundTrips: number;
  commands: number;
  /** Lock keys set or released, one per key per command. */
  lockKeyOperations: number;
  /** The lock keys each round trip touched, in the order they were written. */
  readonly lockKeysByRoundTrip: string[][];
  /** Commands per name (lower case: `evalsha`, `multi`, `hget`, …). */
  readonly byCommand: Map<string, number>;
  /** How many commands each round trip carried (more than one: a pipeline), in the order they were written. */
  readonly commandsByRoundTrip: number[];
  reset(): void;
}

/**
 * A Redis connection counting what goes over its socket: every write is one request the client then waits for — one
 * round trip. Every lock key (`<prefix>:lock:…`) a command touches is counted too (a script's keys, or a SET's key).
 * Counted after the connection is ready, so handshake commands are left out.
 */
export async function countingRedis(redisUrl: string, prefix: string): Promise<{ redis: Redis; counts: RedisTraffic }> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  await redis.ping();
  const counts: RedisTraffic = {
    roundTrips: 0,
    commands: 0,
    lockKeyOperations: 0,
    lockKeysByRoundTrip: [],
    byCommand: new Map(),
    commandsByRoundTrip: [],
    reset() {
      this.roundTrips = 0;
      this.commands = 0;
      this.lockKeyOperations = 0;
      this.lockKeysByRoundTrip.length = 0;
      this.byCommand.clear();
      this.commandsByRoundTrip.length = 0;
    },
  };
  const stream = (redis as unknown as { stream: { write: (chunk: unknown, ...rest: unknown[]) => boolean } }).stream;
  const write = stream.write.bind(stream);
  stream.write = (chunk: unknown, ...rest: unknown[]) => {
    counts.roundTrips += 1;
    const text = typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('latin1') : '';
    const lockKeys: string[] = [];
    const commands = parseCommands(text);
    counts.commandsByRoundTrip.push(commands.length);
    for (const args of commands) {
      counts.commands += 1;
      const name = args[0]!.toLowerCase();
      counts.byCommand.set(name, (counts.byCommand.get(name) ?? 0) + 1);
      const keys = name === 'evalsha' || name === 'eval' ? args.slice(3, 3 + Number(args[2])) : args.slice(1, 2);
      lockKeys.push(...keys.filter((key) => key.startsWith(`${prefix}:lock:`)));
    }
    counts.lockKeyOperations += lockKeys.length;
    counts.lockKeysByRoundTrip.push(lockKeys);
    return write(chunk, ...rest);
  };
  return { redis, counts };
}
