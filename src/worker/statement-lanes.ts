import pg from 'pg';

/** A statement's answer: its rows, each a list of column texts (null for SQL NULL). */
export type TextRows = (string | null)[][];

/** Runs a named prepared statement with text parameters, answering its rows as text. */
export type StatementRunner = (name: string, text: string, values: readonly (string | null)[]) => Promise<TextRows>;

/** Options of {@link StatementLanes}. */
export interface StatementLanesOptions {
  /** PostgreSQL connections (each one runs one transaction at a time). */
  readonly lanes: number;
  /** Statements sent ahead on one connection: the running one plus those queued behind it. Default 2. */
  readonly depth?: number;
  /** A lane with nothing to do for this long closes its connection. Default 10 s. */
  readonly idleMs?: number;
  /** Longest a closing connection waits for the answers to statements on their way, ms. Default 10000. */
  readonly closeWaitMs?: number;
}

interface Request {
  readonly name: string;
  readonly text: string;
  readonly values: readonly (string | null)[];
  readonly resolve: (rows: TextRows) => void;
  readonly reject: (error: unknown) => void;
  /** This request carries the statement's Parse message. */
  parse?: boolean;
  /** The server confirmed that Parse. */
  parsed?: boolean;
}

/** What a lane needs of its connection: the socket pg.Client opened and authenticated. */
export interface LaneSocket {
  write(data: Buffer): boolean;
  end(): void;
  destroy(): void;
  ref?(): void;
  unref?(): void;
  on(event: 'data', listener: (data: Buffer) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
}

const EXECUTE_SYNC = Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0x53, 0, 0, 0, 4]); // Execute(unnamed, all rows), Sync
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);

/** Parse: a named statement (parameter types left to the server). */
function parseMessage(name: string, text: string): Buffer {
  const length = 4 + Buffer.byteLength(name) + 1 + Buffer.byteLength(text) + 1 + 2;
  const message = Buffer.allocUnsafe(1 + length);
  message[0] = 0x50;
  message.writeInt32BE(length, 1);
  let at = 5 + message.write(name, 5);
  message[at++] = 0;
  at += message.write(text, at);
  message[at++] = 0;
  message.writeInt16BE(0, at);
  return message;
}

/** Bind (unnamed portal, text parameters and results), then Execute and Sync: one buffer, one write. */
function bindExecuteSync(name: string, values: readonly (string | null)[]): Buffer {
  const nameBytes = Buffer.byteLength(name);
  let length = 4 + 1 + nameBytes + 1 + 2 + 2 + 2;
  const sizes: number[] = [];
  for (const value of values) {
    const size = value === null ? -1 : Buffer.byteLength(value);
    sizes.push(size);
    length += 4 + Math.max(0, size);
  }
  const message = Buffer.allocUnsafe(1 + length + EXECUTE_SYNC.length);
  message[0] = 0x42;
  message.writeInt32BE(length, 1);
  message[5] = 0; // unnamed portal
  let at = 6 + message.write(name, 6);
  message[at++] = 0;
  message.writeInt16BE(0, at); // parameter formats: all text
  message.writeInt16BE(values.length, at + 2);
  at += 4;
  values.forEach((value, i) => {
    const size = sizes[i]!;
    message.writeInt32BE(size, at);
    at += 4;
    if (value !== null) at += message.write(value, at);
  });
  message.writeInt16BE(0, at); // result formats: all text
  EXECUTE_SYNC.copy(message, at + 2);
  return message;
}

/** ErrorResponse fields, by their protocol code, as pg's DatabaseError carries them. */
const ERROR_FIELDS: Record<string, string> = {
  S: 'severity',
  C: 'code',
  D: 'detail',
  H: 'hint',
  P: 'position',
  p: 'internalPosition',
  q: 'internalQuery',
  W: 'where',
  s: 'schema',
  t: 'table',
  c: 'column',
  d: 'dataType',
  n: 'constraint',
  F: 'file',
  L: 'line',
  R: 'routine',
};

function decodeError(buffer: Buffer, start: number, end: number): Error {
  const fields: Record<string, string> = {};
  let at = start;
  while (at < end && buffer[at] !== 0) {
    const code = String.fromCharCode(buffer[at]!);
    const stop = buffer.indexOf(0, at + 1);
    fields[code] = buffer.toString('utf8', at + 1, stop);
    at = stop + 1;
  }
  const error = new pg.DatabaseError(fields['M'] ?? 'unknown error', end - start + 4, 'error') as unknown as Record<string, unknown> & Error;
  for (const [code, property] of Object.entries(ERROR_FIELDS)) if (fields[code] !== undefined) error[property] = fields[code];
  return error;
}

function decodeDataRow(buffer: Buffer, start: number): (string | null)[] {
  const count = buffer.readInt16BE(start);
  const fields: (string | null)[] = [];
  let at = start + 2;
  for (let i = 0; i < count; i += 1) {
    const size = buffer.readInt32BE(at);
    at += 4;
    if (size < 0) fields.push(null);
    else {
      fields.push(buffer.toString('utf8', at, at + size));
      at += size;
    }
  }
  return fields;
}

/**
 * One PostgreSQL connection that runs statements sent ahead of their turn (the protocol's pipelining): each statement
 * is Bind/Execute/Sync, so each one is its own implicit transaction, committed before the next one starts; the
 * next one waits in the connection, so the server never waits for this process between two users.
 * Errors stay with their statement: the server skips to that statement's Sync and runs the next one normally.
 * The lane speaks the few protocol messages it needs itself, on the socket pg.Client opened and authenticated.
 */
class Lane {
  private readonly inflight: Request[] = [];
  /** Requests waiting for their statement's first Parse to be confirmed (a Bind before it would fail). */
  private held: Request[] = [];
  private readonly prepared = new Map<string, 'pending' | 'ready'>();
  private rows: TextRows = [];
  private error: unknown;
  private pendingBytes: Buffer | null = null;
  private idleTimer: NodeJS.Timeout | undefined;
  broken = false;

  constructor(
    private readonly socket: LaneSocket,
    private readonly idleMs: number,
    private readonly closeWaitMs: number,
    private readonly onIdle: (lane: Lane) => void,
    private readonly onBroken: (lane: Lane) => void,
    private readonly onFree: () => void,
  ) {
    socket.on('data', (data) => this.receive(data));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(this.closingReason() ?? new Error('Connection terminated unexpectedly')));
    this.sleep();
  }

  /**
   * The server's own reason for closing (a FATAL error such as 57P01, terminated by an administrator), when it sent
   * one; never a statement's error, which belongs to that statement only.
   */
  private closingReason(): unknown {
    const severity = (this.error as { severity?: unknown } | undefined)?.severity;
    return severity === 'FATAL' || severity === 'PANIC' ? this.error : undefined;
  }

  get load(): number {
    return this.inflight.length + this.held.length;
  }

  submit(request: Request): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.socket.ref?.();
    const state = this.prepared.get(request.name);
    if (state === 'pending') {
      this.held.push(request);
      return;
    }
    const message = bindExecuteSync(request.name, request.values);
    if (state === undefined) {
      request.parse = true;
      this.prepared.set(request.name, 'pending');
      this.socket.write(Buffer.concat([parseMessage(request.name, request.text), message]));
    } else {
      this.socket.write(message);
    }
    this.inflight.push(request);
  }

  private receive(data: Buffer): void {
    const buffer = this.pendingBytes ? Buffer.concat([this.pendingBytes, data]) : data;
    let at = 0;
    while (buffer.length - at >= 5) {
      const end = at + 1 + buffer.readInt32BE(at + 1);
      if (end > buffer.length) break;
      switch (buffer[at]) {
        case 0x31: {
          // ParseComplete
          const head = this.inflight[0];
          if (head) head.parsed = true;
          break;
        }
        case 0x44: // DataRow
          this.rows.push(decodeDataRow(buffer, at + 5));
          break;
        case 0x45: // ErrorResponse
          this.error ??= decodeError(buffer, at + 5, end);
          break;
        case 0x5a: // ReadyForQuery: the statement's transaction is over
          this.finishHead();
          break;
        default: // BindComplete, CommandComplete, NoData, notices, parameter status: nothing to do
          break;
      }
      at = end;
    }
    this.pendingBytes = at < buffer.length ? Buffer.from(buffer.subarray(at)) : null;
  }

  private finishHead(): void {
    const request = this.inflight.shift();
    if (!request) return;
    const { rows, error } = this;
    this.rows = [];
    this.error = undefined;
    if (request.parse) {
      if (request.parsed) this.prepared.set(request.name, 'ready');
      else this.prepared.delete(request.name);
      const held = this.held.filter((waiting) => waiting.name === request.name);
      this.held = this.held.filter((waiting) => waiting.name !== request.name);
      for (const waiting of held) this.submit(waiting);
    }
    if (error !== undefined) request.reject(error);
    else request.resolve(rows);
    if (this.load === 0) this.sleep();
    this.onFree();
  }

  /** Idle: let the process exit, and close after a while. */
  private sleep(): void {
    this.socket.unref?.();
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.onIdle(this), this.idleMs);
    this.idleTimer.unref();
  }

  private fail(error: unknown): void {
    if (this.broken) return;
    this.broken = true;
    clearTimeout(this.idleTimer);
    const pending = [...this.inflight.splice(0), ...this.held.splice(0)];
    this.onBroken(this);
    for (const request of pending) request.reject(error);
    this.socket.destroy();
  }

  /** Closes the connection (Terminate) once its statements are answered. */
  async close(): Promise<void> {
    clearTimeout(this.idleTimer);
    this.socket.ref?.();
    const giveUpAt = Date.now() + this.closeWaitMs;
    while (this.load > 0 && !this.broken && Date.now() < giveUpAt) await new Promise((resolve) => setTimeout(resolve, 5));
    if (this.broken) return;
    if (this.load > 0) {
      // the server does not answer: fail what is still on its way (transient: it runs again elsewhere) and drop it
      this.fail(new Error(`PostgreSQL did not answer within ${this.closeWaitMs} ms while the connection was closing`));
      return;
    }
    this.broken = true;
    await new Promise<void>((resolve) => {
      this.socket.on('close', () => resolve());
      this.socket.write(TERMINATE);
      this.socket.end();
      setTimeout(resolve, 2000).unref();
    });
  }
}

/**
 * The connections that run user statements, with statements sent ahead on each (see {@link Lane}). At most `lanes`
 * statements execute at once (one per connection, like a pool of that size); up to `lanes × depth` are on their
 * way. Connections open on demand with the pool's settings and close when idle.
 */
export class StatementLanes {
  private readonly lanes: Lane[] = [];
  private opening = 0;
  private readonly waiting: Request[] = [];
  private readonly depth: number;
  private readonly idleMs: number;
  private closed = false;

  constructor(
    private readonly connect: () => Promise<LaneSocket>,
    private readonly options: StatementLanesOptions,
  ) {
    this.depth = options.depth ?? 2;
    this.idleMs = options.idleMs ?? 10_000;
  }

  /** Lanes over new connections made like `pool`'s (same server, user, application name, search path). */
  static forPool(pool: pg.Pool, options: StatementLanesOptions): StatementLanes {
    const config = (pool as unknown as { options: pg.ClientConfig }).options;
    return new StatementLanes(async () => {
      // pg.Client opens and authenticates the connection (every auth method, TLS); the lane then takes its socket
      const client = new pg.Client(config);
      // until the lane takes the socket over, a server that goes away must not crash the process (no listener)
      client.on('error', () => undefined);
      await client.connect();
      const connection = (client as unknown as { connection: NodeJS.EventEmitter & { stream: LaneSocket & NodeJS.EventEmitter } }).connection;
      connection.removeAllListeners();
      connection.on('error', () => undefined); // pg's stream listeners still forward here; the lane handles them
      const socket = connection.stream;
      // pg's message parser reads 'data' and pg reports errors: the lane does both from here on
      // ('end' and 'close' keep their listeners: Node closes the socket through them)
      socket.removeAllListeners('data');
      socket.removeAllListeners('error');
      // a server or network that vanishes without closing the connection is noticed (the statements then fail as
      // transient and run again: they are idempotent), instead of leaving them waiting forever
      (socket as LaneSocket & { setKeepAlive?: (enable: boolean, delayMs: number) => void }).setKeepAlive?.(true, 10_000);
      return socket;
    }, options);
  }

  /** Statements sent and not answered, plus those waiting for a lane. */
  get pending(): number {
    return this.waiting.length + this.lanes.reduce((sum, lane) => sum + lane.load, 0);
  }

  /** How many statements can be on their way at once. */
  get capacity(): number {
    return this.options.lanes * this.depth;
  }

  readonly run: StatementRunner = (name, text, values) =>
    new Promise<TextRows>((resolve, reject) => {
      if (this.closed) {
        reject(new Error('statement lanes are closed'));
        return;
      }
      this.waiting.push({ name, text, values, resolve, reject });
      this.dispatch();
    });

  private dispatch(): void {
    while (this.waiting.length > 0) {
      let best: Lane | undefined;
      for (const lane of this.lanes) if (!lane.broken && lane.load < this.depth && (!best || lane.load < best.load)) best = lane;
      // spread over connections first: open another one while every open one is busy
      if ((!best || best.load > 0) && this.lanes.length + this.opening < this.options.lanes) this.open();
      if (!best) return;
      best.submit(this.waiting.shift()!);
    }
  }

  private open(): void {
    this.opening += 1;
    this.connect().then(
      (connection) => {
        this.opening -= 1;
        const lane = new Lane(
          connection,
          this.idleMs,
          this.options.closeWaitMs ?? 10_000,
          (idle) => {
            if (idle.load === 0) this.remove(idle, true);
          },
          (broken) => this.remove(broken, false),
          () => {
            if (this.waiting.length > 0) this.dispatch();
          },
        );
        if (this.closed) void lane.close();
        else this.lanes.push(lane);
        this.dispatch();
      },
      (error: unknown) => {
        this.opening -= 1;
        // nothing to run them on: fail what waits (the caller retries transient errors), keep the rest
        if (this.lanes.length + this.opening === 0) for (const request of this.waiting.splice(0)) request.reject(error);
      },
    );
  }

  private remove(lane: Lane, close: boolean): void {
    const index = this.lanes.indexOf(lane);
    if (index >= 0) this.lanes.splice(index, 1);
    if (close) void lane.close();
    this.dispatch();
  }

  /** Waits for the statements on their way, then closes every connection. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    for (const request of this.waiting.splice(0)) request.reject(new Error('statement lanes are closed'));
    await Promise.all(this.lanes.splice(0).map((lane) => lane.close()));
  }
}
