/**
 * Production components a test starts for itself on random loopback ports, in temporary folders: a TCP fault
 * proxy, PgBouncer, a Redis Sentinel set, a PostgreSQL primary with a synchronous standby. Every process they start
 * is tracked: a test file that leaves one running fails (test/support/cli.ts `stopStrayProcesses`). The tools live
 * in bench/soak/ so the bench and the soak script can use them too.
 */
export {
  startFaultProxy,
  type FaultProxy,
  type FaultProxyStats,
  type ProxyTarget,
  type SilenceDirection,
} from '../../bench/soak/fault-proxy.js';
export { startPgBouncer, PGBOUNCER_BIN, type PgBouncer, type PgBouncerOptions } from '../../bench/soak/pgbouncer.js';
export {
  startRedisSentinelSet,
  type RedisSentinelSet,
  type RedisSentinelSetOptions,
} from '../../bench/soak/redis-sentinel.js';
export {
  startReplicatedPostgres,
  POSTGRES_BIN_DIR,
  STANDBY_NAME,
  type PostgresNode,
  type ReplicatedPostgres,
  type ReplicatedPostgresOptions,
  type StopMode,
} from '../../bench/soak/postgres-replication.js';
export { trackedProcesses } from '../../bench/soak/tracked-processes.js';
export { waitFor, sleep } from '../../bench/soak/fault-kit.js';
