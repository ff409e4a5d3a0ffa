import type pg from 'pg';
import { from as copyFrom, type CopyStreamQuery } from 'pg-copy-streams';

/**
 * `COPY … FROM STDIN` of ready-made data (pg-copy-streams), in the client's current transaction. Resolves with the
 * number of rows copied; rejects with the PostgreSQL error, after which the client is ready for the next query
 * (the server drops whatever data was still on its way).
 *
 * One buffer is handed to the stream at a time, each after the previous one reached the socket, and none after
 * the error: pg-copy-streams 7 throws an uncaught TypeError when PostgreSQL fails the COPY (a repeated key, say)
 * while more than one buffer is waiting for the socket to drain, or when the stream is ended after the failure
 * (brianc/node-pg-copy-streams#171). With one buffer in flight the library never touches the connection after the
 * error. `test/perf-staging.test.ts` fails a COPY at its second row of several megabytes to keep this honest.
 */
export async function copyIn(client: pg.ClientBase, sql: string, data: readonly Buffer[]): Promise<number> {
  const stream: CopyStreamQuery = client.query(copyFrom(sql));
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  stream.on('error', (error: Error) => {
    failure ??= error;
    wake?.();
  });
  /** Resolves when `start(done)` calls `done`, or at once when the COPY fails. */
  const step = (start: (done: () => void) => void): Promise<void> =>
    new Promise<void>((resolve) => {
      wake = resolve;
      start(() => resolve());
    });
  for (const chunk of data) {
    if (failure !== undefined) break;
    await step((done) => stream.write(chunk, () => done()));
  }
  if (failure === undefined) await step((done) => stream.end(done));
  if (failure !== undefined) throw failure;
  return stream.rowCount;
}
