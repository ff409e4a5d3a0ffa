/**
 * Production components a test starts for itself on random loopback ports, in temporary folders: a TCP fault
 * proxy, PgBouncer, a Redis Sentinel set, a PostgreSQL primary with a synchronous standby. The tools live in
 * bench/soak/ so the bench and the soak script can use them too.
 */
export {
  startFaultProxy,
  type FaultProxy,
  type FaultProxyStats,
  type ProxyTarget,
  type SilenceDirection,
} from '../../bench/soak/fault-proxy.js';
export { waitFor, sleep } from '../../bench/soak/fault-kit.js';
