/**
 * A TCP proxy on a random loopback port that forwards to a target and injects network faults into the connections
 * through it: a one-way delay in each direction (round-trip emulation; order kept), silence (existing connections
 * stop forwarding both ways with no FIN or RST; new connections pass), and reset (every connection destroyed with an
 * RST). Counters of connections and bytes let tests tie a fault to observed progress.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { PreciseClock, preciseNow } from './precise-clock.js';

/** Where a proxy forwards to. */
export interface ProxyTarget {
  readonly host: string;
  readonly port: number;
}

/** Options of {@link startFaultProxy}. */
export interface FaultProxyOptions {
  /** Where connections are forwarded; a number is a port on 127.0.0.1. */
  readonly target: ProxyTarget | number;
  /** Listening port. Default: a random free port (the kernel's choice). */
  readonly port?: number;
  /** One-way delay in each direction from the start, ms. Default 0. */
  readonly delayMs?: number;
}

/** Which way a silence stops forwarding. */
export type SilenceDirection = 'both' | 'to-server' | 'to-client';

/** Counters of a proxy since it started. */
export interface FaultProxyStats {
  /** Connections accepted. */
  readonly accepted: number;
  /** Connections not yet closed on both sides. */
  readonly open: number;
  /** Open connections silenced now. */
  readonly silenced: number;
  /** Connections destroyed by {@link FaultProxy.reset}. */
  readonly reset: number;
  /** Bytes written to the target. */
  readonly bytesToServer: number;
  /** Bytes written back to clients. */
  readonly bytesToClient: number;
  /**
   * Bytes read but not yet written (delayed, or read before a silence). What a silenced side sends after that stays
   * in the kernel's buffers and is not counted.
   */
  readonly heldBytes: number;
  /** Chunks that went through a delay, and their mean delay as measured (ms; 0 when none). */
  readonly delayedChunks: number;
  readonly meanDelayMs: number;
}

/** A running proxy. */
export interface FaultProxy {
  /** The loopback port clients connect to. */
  readonly port: number;
  readonly host: string;
  /** Where new connections go. */
  readonly target: ProxyTarget;
  /** Forward normally: no delay, and silenced connections forward again (what they held first). */
  pass(): void;
  /**
   * Delays every chunk by `oneWayMs` in each direction (a round trip gains 2 × `oneWayMs`), for existing and new
   * connections. Chunks keep their order; a chunk is never written before its time.
   */
  delay(oneWayMs: number): void;
  /**
   * Stops forwarding on every connection open now, in `direction` (default both): what arrives is held, nothing is
   * closed, and a peer's FIN or reset is not passed on (the other side sees nothing). New connections pass. Returns
   * how many connections were silenced. {@link pass} ends it.
   */
  silence(direction?: SilenceDirection): number;
  /** Destroys every open connection with an RST to both its client and its target. Returns how many. */
  reset(): number;
  /** Sends new connections to `target` (existing ones stay where they are). */
  retarget(target: ProxyTarget | number): void;
  stats(): FaultProxyStats;
  /** Stops listening and destroys every connection. Idempotent. */
  close(): Promise<void>;
}

/** Bytes held for one direction before the sending side is paused. */
const HIGH_WATER = 4 * 1024 * 1024;
/** An end-of-stream marker in a lane's queue. */
const END = Symbol('end');

interface Queued {
  readonly dueAt: number;
  readonly arrivedAt: number;
  readonly chunk: Buffer | typeof END;
}

/** Counters shared by every connection of a proxy. */
interface Counters {
  bytesToServer: number;
  bytesToClient: number;
  delayedChunks: number;
  delayTotalMs: number;
}

/** One direction of one connection: reads `from`, writes `to`. */
class Lane {
  private readonly queue: Queued[] = [];
  private head = 0;
  private heldBytes = 0;
  private scheduled = false;
  private waitingForDrain = false;
  silenced = false;
  /** `from` ended or failed: nothing more comes. */
  private finished = false;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly delayOf: () => number,
    private readonly count: (bytes: number) => void,
    private readonly counters: Counters,
    private readonly clock: PreciseClock,
  ) {
    from.on('data', (chunk: Buffer) => this.receive(chunk));
    from.on('end', () => {
      this.finished = true;
      this.enqueue(END);
    });
  }

  get held(): number {
    return this.heldBytes;
  }

  private receive(chunk: Buffer): void {
    const delayMs = this.delayOf();
    if (delayMs <= 0 && !this.silenced && this.head === this.queue.length) {
      this.write(chunk);
      return;
    }
    this.enqueue(chunk, delayMs);
  }

  private enqueue(chunk: Buffer | typeof END, delayMs = this.delayOf()): void {
    const now = preciseNow();
    this.queue.push({ dueAt: now + Math.max(0, delayMs), arrivedAt: now, chunk });
    if (chunk !== END) {
      this.heldBytes += chunk.length;
      if (this.heldBytes > HIGH_WATER) this.from.pause();
    }
    this.schedule();
  }

  private write(chunk: Buffer): void {
    if (this.to.destroyed) return;
    this.count(chunk.length);
    if (!this.to.write(chunk) && !this.waitingForDrain) {
      this.waitingForDrain = true;
      this.from.pause();
      this.to.once('drain', () => {
        this.waitingForDrain = false;
        if (!this.silenced && this.heldBytes <= HIGH_WATER) this.from.resume();
        this.schedule();
      });
    }
  }

  /** Asks the clock to flush when the queue's head is due. */
  private schedule(): void {
    if (this.silenced || this.waitingForDrain || this.head === this.queue.length || this.scheduled) return;
    this.scheduled = true;
    this.clock.schedule(this, this.queue[this.head]!.dueAt, () => {
      this.scheduled = false;
      this.flush();
    });
  }

  /** Writes every chunk that is due, in order, as one corked burst. */
  private flush(): void {
    if (this.silenced) return;
    const now = preciseNow();
    let corked = false;
    while (this.head < this.queue.length && this.queue[this.head]!.dueAt <= now && !this.waitingForDrain) {
      const item = this.queue[this.head]!;
      this.head += 1;
      if (item.chunk === END) {
        if (!this.to.destroyed) this.to.end();
        continue;
      }
      this.heldBytes -= item.chunk.length;
      this.counters.delayedChunks += 1;
      this.counters.delayTotalMs += now - item.arrivedAt;
      if (!corked) {
        this.to.cork();
        corked = true;
      }
      this.write(item.chunk);
    }
    if (corked) this.to.uncork();
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (!this.waitingForDrain && !this.silenced && !this.finished && this.heldBytes <= HIGH_WATER) this.from.resume();
    this.schedule();
  }

  silence(): void {
    this.silenced = true;
    this.from.pause();
    this.stop();
  }

  unsilence(): void {
    if (!this.silenced) return;
    this.silenced = false;
    // what was held goes first, at once
    for (let i = this.head; i < this.queue.length; i += 1) {
      const item = this.queue[i]!;
      this.queue[i] = { ...item, dueAt: Math.min(item.dueAt, preciseNow()) };
    }
    if (!this.finished && !this.waitingForDrain) this.from.resume();
    this.schedule();
  }

  /** The sending side went away while silenced: its FIN follows what was held. */
  endAfterHeld(): void {
    if (this.finished) return;
    this.finished = true;
    this.enqueue(END, 0);
  }

  stop(): void {
    this.clock.cancel(this);
    this.scheduled = false;
  }
}

/** A client connection and its connection to the target. */
class Link {
  readonly up: Lane;
  readonly down: Lane;
  private closed = false;

  constructor(
    readonly client: Socket,
    readonly server: Socket,
    delayOf: () => number,
    counters: Counters,
    clock: PreciseClock,
    private readonly onClose: (link: Link) => void,
  ) {
    this.up = new Lane(client, server, delayOf, (n) => (counters.bytesToServer += n), counters, clock);
    this.down = new Lane(server, client, delayOf, (n) => (counters.bytesToClient += n), counters, clock);
    // a side that fails takes the other with it (an RST), unless that way is silenced: the peer then sees nothing.
    // A clean close needs nothing: its FIN travels in order through the lane, after the data before it.
    const fail = (other: Socket, lane: Lane) => () => {
      if (!lane.silenced && !other.destroyed) other.resetAndDestroy();
    };
    client.on('error', fail(server, this.up));
    server.on('error', fail(client, this.down));
    const closed = (): void => {
      if (this.client.destroyed && this.server.destroyed) this.finish();
    };
    client.on('close', closed);
    server.on('close', closed);
  }

  get silenced(): boolean {
    return this.up.silenced || this.down.silenced;
  }

  silence(direction: SilenceDirection): void {
    if (direction !== 'to-client') this.up.silence();
    if (direction !== 'to-server') this.down.silence();
  }

  unsilence(): void {
    this.up.unsilence();
    this.down.unsilence();
    // a side that closed while silenced: its close reaches the other now
    if (this.client.destroyed) this.up.endAfterHeld();
    if (this.server.destroyed) this.down.endAfterHeld();
  }

  reset(): void {
    this.client.resetAndDestroy();
    this.server.resetAndDestroy();
    this.finish();
  }

  destroy(): void {
    this.client.destroy();
    this.server.destroy();
    this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.up.stop();
    this.down.stop();
    this.onClose(this);
  }
}

function targetOf(target: ProxyTarget | number): ProxyTarget {
  return typeof target === 'number' ? { host: '127.0.0.1', port: target } : target;
}

/** Starts a proxy on 127.0.0.1 forwarding to `options.target`. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  let target = targetOf(options.target);
  let delayMs = options.delayMs ?? 0;
  const links = new Set<Link>();
  const counters: Counters = { bytesToServer: 0, bytesToClient: 0, delayedChunks: 0, delayTotalMs: 0 };
  let accepted = 0;
  let resets = 0;
  const delayOf = (): number => delayMs;
  const clock = new PreciseClock();

  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    accepted += 1;
    client.setNoDelay(true);
    const upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    upstream.setNoDelay(true);
    const link = new Link(client, upstream, delayOf, counters, clock, (closed) => links.delete(closed));
    links.add(link);
    upstream.once('connect', () => client.resume());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;

  return {
    port,
    host: '127.0.0.1',
    get target() {
      return target;
    },
    pass() {
      delayMs = 0;
      for (const link of links) link.unsilence();
    },
    delay(oneWayMs: number) {
      if (!Number.isFinite(oneWayMs) || oneWayMs < 0) throw new Error(`delay must be ≥ 0 ms, got ${oneWayMs}`);
      delayMs = oneWayMs;
    },
    silence(direction: SilenceDirection = 'both') {
      let count = 0;
      for (const link of links) {
        if (link.client.destroyed && link.server.destroyed) continue;
        link.silence(direction);
        count += 1;
      }
      return count;
    },
    reset() {
      const open = [...links];
      for (const link of open) link.reset();
      resets += open.length;
      return open.length;
    },
    retarget(next: ProxyTarget | number) {
      target = targetOf(next);
    },
    stats() {
      let heldBytes = 0;
      let silenced = 0;
      for (const link of links) {
        heldBytes += link.up.held + link.down.held;
        if (link.silenced) silenced += 1;
      }
      return {
        accepted,
        open: links.size,
        silenced,
        reset: resets,
        bytesToServer: counters.bytesToServer,
        bytesToClient: counters.bytesToClient,
        heldBytes,
        delayedChunks: counters.delayedChunks,
        meanDelayMs: counters.delayedChunks === 0 ? 0 : counters.delayTotalMs / counters.delayedChunks,
      };
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const link of [...links]) link.destroy();
      }).then(() => clock.close());
      return closing;
    },
  };
}
