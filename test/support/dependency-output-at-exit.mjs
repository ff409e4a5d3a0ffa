// Loaded with `node --import` before a Windfall entry point (test/worker-entry-points.test.ts). It stands for a
// dependency that reports a Redis failure with console.error, as BullMQ does ('Unexpected Error in AsyncFifoQueue'),
// naming the URL it was given (REDIS_URL, password included) next to the real error ioredis emits for it. It prints
// when the process exits, after the entry point has done all it does: only the entry point's process guards
// (console output scrubbed) keep the password out of stderr.
import { once } from 'node:events';
import { Redis } from 'ioredis';

const url = process.env.REDIS_URL ?? '';
const client = new Redis(url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
const [refused] = await once(client, 'error');
client.disconnect();
process.on('exit', () => console.error(`Unexpected Error in AsyncFifoQueue (${url})`, refused));
