import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { preciseNow } from '../bench/soak/precise-clock.js';
import { startFaultProxy, waitFor, type FaultProxy } from './support/topology.js';

/** An echo server that remembers its sockets and how each ended. */
interface EchoServer {
  readonly port: number;
  readonly sockets: Socket[];
  readonly endings: string[];
  close(): Promise<void>;
}

async function startEcho(): Promise<EchoServer> {
  const sockets: Socket[] = [];
  const endings: string[] = [];
  const server: Server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', (error: NodeJS.ErrnoException) => endings.push(error.code ?? error.message));
    socket.on('end', () => endings.push('end'));
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    sockets,
    endings,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A client socket that collects what it receives and how it ended. */
interface Client {
  readonly socket: Socket;
  received(): Buffer;
  readonly events: string[];
}

async function open(port: number): Promise<Client> {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  const chunks: Buffer[] = [];
  const events: string[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('end', () => events.push('end'));
  socket.on('error', (error: NodeJS.ErrnoException) => events.push(error.code ?? error.message));
  socket.on('close', () => events.push('close'));
  await new Promise((resolve) => socket.once('connect', resolve));
  return { socket, events, received: () => Buffer.concat(chunks) };
}

/** Writes `text` and resolves with the round trip (ms) once the echo of all of it is back. */
async function roundTrip(client: Client, text: string): Promise<number> {
  const before = client.received().length;
  const started = preciseNow();
  const back = new Promise<void>((resolve) => {
    const check = (): void => {
      if (client.received().length < before + text.length) return;
      client.socket.off('data', check);
      resolve();
    };
    client.socket.on('data', check);
  });
  client.socket.write(text);
  await back;
  return preciseNow() - started;
}

let echo: EchoServer;
let proxy: FaultProxy;
const clients: Client[] = [];
beforeEach(async () => {
  echo = await startEcho();
  proxy = await startFaultProxy({ target: echo.port });
});
afterEach(async () => {
  for (const client of clients.splice(0)) client.socket.destroy();
  await proxy.close();
  await echo.close();
});

const connectClient = async (): Promise<Client> => {
  const client = await open(proxy.port);
  clients.push(client);
  return client;
};

describe('the fault proxy', () => {
  it('passes bytes both ways and counts connections and bytes', async () => {
    const client = await connectClient();
    await roundTrip(client, 'hello through the proxy');
    expect(client.received().toString()).toBe('hello through the proxy');
    expect(proxy.stats()).toMatchObject({ accepted: 1, open: 1, bytesToServer: 23, bytesToClient: 23, heldBytes: 0 });
    client.socket.end();
    await waitFor(() => proxy.stats().open === 0, 'the connection to close on both sides', 5000, 10);
    expect(echo.endings).toEqual(['end']);
  });

  it('delays each direction by the given time, never less, and keeps the order of every byte', async () => {
    const client = await connectClient();
    const direct = await open(echo.port);
    clients.push(direct);
    proxy.delay(2.5);
    const trips: number[] = [];
    for (let i = 0; i < 40; i += 1) trips.push(await roundTrip(client, `ping-${i};`));
    // a round trip crosses the proxy twice: 5 ms at least, whatever the machine
    expect(Math.min(...trips)).toBeGreaterThanOrEqual(5);
    const median = trips.sort((a, b) => a - b)[20]!;
    // generous: a proxy that ignored the delay would be under 1 ms, one that doubled it over 10 ms
    expect(median).toBeLessThan(10);
    expect(await roundTrip(direct, 'x')).toBeLessThan(median);

    // a burst of 20,000 numbered messages in many writes comes back complete and in order
    const burst = Array.from({ length: 20_000 }, (_, n) => `${n},`).join('');
    const before = client.received().length;
    for (let offset = 0; offset < burst.length; offset += 997) client.socket.write(burst.slice(offset, offset + 997));
    await waitFor(() => client.received().length >= before + burst.length, 'the burst to come back', 20_000, 5);
    expect(client.received().subarray(before).toString()).toBe(burst);
    const stats = proxy.stats();
    expect(stats.meanDelayMs).toBeGreaterThanOrEqual(2.5);
    expect(stats.delayedChunks).toBeGreaterThan(80);

    // back to no delay: in order still, and fast again
    proxy.pass();
    expect(await roundTrip(client, 'after')).toBeLessThan(median);
  });

  it('silences existing connections (no data, no FIN, no RST either way) while new connections pass; pass() delivers what was held', async () => {
    const silenced = await connectClient();
    await roundTrip(silenced, 'before;');
    expect(proxy.silence()).toBe(1);
    silenced.socket.write('held;');
    // the server talks on the silenced connection too: nothing of it reaches the client
    echo.sockets[0]!.write('from-server;');
    const fresh = await connectClient();
    await roundTrip(fresh, 'fresh connection works;');
    // by the time a new connection made a whole round trip, the silenced one got nothing and saw no close
    expect(silenced.received().toString()).toBe('before;');
    expect(silenced.events).toEqual([]);
    expect(proxy.stats()).toMatchObject({ accepted: 2, open: 2, silenced: 1 });
    // the client gives up and closes: the server hears nothing of it while silenced
    silenced.socket.destroy();
    await roundTrip(fresh, 'still;');
    expect(echo.endings).toEqual([]);
    expect(echo.sockets[0]!.destroyed).toBe(false);

    // healing the network delivers what was held, then the client's close (a FIN, or an RST when the server's
    // reply reaches the closed client first, as on a real network)
    proxy.pass();
    await waitFor(() => echo.endings.length === 1, 'the held close to reach the server', 5000, 10);
    expect(['end', 'ECONNRESET']).toContain(echo.endings[0]);
    expect(proxy.stats().bytesToServer).toBe('before;held;'.length + 'fresh connection works;still;'.length);
  });

  it('silences one direction only: what the client sends still reaches the server, no reply comes back', async () => {
    const client = await connectClient();
    await roundTrip(client, 'a;');
    proxy.silence('to-client');
    client.socket.write('b;');
    await waitFor(() => echo.sockets[0]!.bytesRead === 4, 'the write to reach the server', 5000, 10);
    // the server echoed it at once; a whole round trip on another connection later, nothing came back
    await roundTrip(await connectClient(), 'c;');
    expect(echo.sockets[0]!.bytesWritten).toBe(4);
    expect(client.received().toString()).toBe('a;');
    expect(client.events).toEqual([]);
    proxy.pass();
    await waitFor(() => client.received().toString() === 'a;b;', 'the held reply after pass()', 5000, 10);
  });

  it('resets every connection: both the client and the server see an RST', async () => {
    const first = await connectClient();
    const second = await connectClient();
    await roundTrip(first, 'one');
    await roundTrip(second, 'two');
    expect(proxy.reset()).toBe(2);
    await waitFor(() => first.events.includes('close') && second.events.includes('close'), 'both clients to close');
    expect(first.events).toContain('ECONNRESET');
    expect(second.events).toContain('ECONNRESET');
    await waitFor(() => echo.endings.length === 2, 'the server side to fail');
    expect(echo.endings).toEqual(['ECONNRESET', 'ECONNRESET']);
    expect(proxy.stats()).toMatchObject({ accepted: 2, open: 0, reset: 2 });
    // new connections work
    const third = await connectClient();
    await roundTrip(third, 'three');
  });

  it('sends new connections to a new target after retarget(); a target that refuses resets the client', async () => {
    const other = await startEcho();
    try {
      const before = await connectClient();
      await roundTrip(before, 'x');
      proxy.retarget(other.port);
      const after = await connectClient();
      await roundTrip(after, 'y');
      expect(echo.sockets).toHaveLength(1);
      expect(other.sockets).toHaveLength(1);
    } finally {
      await other.close();
    }
    proxy.retarget(1);
    const refused = await connectClient();
    await waitFor(() => refused.events.includes('close'), 'the refused connection to close');
    expect(refused.events).toContain('ECONNRESET');
  });
});
