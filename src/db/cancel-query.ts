import { connect, type Socket } from 'node:net';
import type pg from 'pg';

/** The protocol's CancelRequest code (1234 in the high 16 bits, 5678 in the low). */
const CANCEL_REQUEST_CODE = 80877102;

/** What node-pg keeps of a connection that a cancel request needs (not in its typings). */
interface ConnectedClient {
  readonly processID: number | null;
  readonly secretKey: number | null;
  readonly host: string;
  readonly port: number;
}

/**
 * Asks the server to cancel whatever statement `client` is running, with the protocol's cancel request: a new
 * connection carrying the backend's key. Unlike `pg_cancel_backend(pid)`, this reaches the right statement through a
 * pooler (PgBouncer maps its own keys to the server connection in use). Best effort: a failure to send is ignored
 * (the statement then ends by itself, bounded by its `lock_timeout`). A late cancel can reach the next statement of
 * the connection: release it with an error afterwards, never back into the pool.
 */
export function cancelQuery(client: pg.PoolClient): void {
  const { processID, secretKey, host, port } = client as unknown as ConnectedClient;
  if (processID === null || secretKey === null) return;
  const request = Buffer.alloc(16);
  request.writeInt32BE(16, 0);
  request.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  request.writeInt32BE(processID, 8);
  request.writeInt32BE(secretKey, 12);
  const socket: Socket = host.startsWith('/') ? connect(`${host}/.s.PGSQL.${port}`) : connect(port, host);
  socket.setTimeout(5000, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.on('connect', () => socket.end(request));
}
