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

/** The low-level connection pg.Client speaks through (pg's `Connection`); only what lanes use. */
interface ProtocolConnection {
  readonly stream: NodeJS.WritableStream & { cork(): void; uncork(): void; ref?(): void; unref?(): void; destroy(): void };
  on(event: string, listener: (message: never) => void): unknown;
  removeAllListeners(): unknown;
  parse(query: { name: string; text: string; types: number[] }): void;
  bind(config: { statement: string; values: readonly (string | null)[] }): void;
  execute(config: { portal?: string; rows?: number }): void;
  sync(): void;
  end(): void;
}

/**
 * One PostgreSQL connection that runs statements sent ahead of their turn (the protocol's pipelining): each statement
 * is Bind/Execute/Sync, so each one is its own implicit transaction, committed before the next one starts; the
 * next one waits in the connection, so the server never waits for this process between two users.
 * Errors stay with their statement: the server skips to that statement's Sync and runs the next one normally.
 */
class Lane {
  private readonly inflight: Request[] = [];
  /** Requests waiting for their statement's first Parse to be confirmed (a Bind before it would fail). */
  private held: Request[] = [];
  private readonly prepared = new Map<string, 'pending' | 'ready'>();
  private rows: TextRows = [];
  private error: unknown;
  private idleTimer: NodeJS.Timeout | undefined;
  broken = false;
  private closing = false;

  constructor(
    private readonly connection: ProtocolConnection,
    private readonly idleMs: number,
    private readonly onIdle: (lane: Lane) => void,
    private readonly onBroken: (lane: Lane) => void,
  ) {
    connection.on('parseComplete', () => {
      const head = this.inflight[0];
      if (head) head.parsed = true;
    });
    connection.on('dataRow', (message: { fields: (string | null)[] }) => {
      this.rows.push(message.fields);
    });
    connection.on('errorMessage', (error: unknown) => {
      this.error ??= error;
    });
    connection.on('readyForQuery', () => this.finishHead());
    connection.on('error', (error: unknown) => this.fail(error));
    connection.on('end', () => this.fail(new Error('Connection terminated unexpectedly')));
    this.sleep();
  }

  get load(): number {
    return this.inflight.length + this.held.length;
  }

  submit(request: Request): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.connection.stream.ref?.();
    const state = this.prepared.get(request.name);
    if (state === 'pending') {
      this.held.push(request);
      return;
    }
    if (state === undefined) {
      request.parse = true;
      this.prepared.set(request.name, 'pending');
    }
    const { connection } = this;
    connection.stream.cork();
    if (request.parse) connection.parse({ name: request.name, text: request.text, types: [] });
    connection.bind({ statement: request.name, values: request.values });
    connection.execute({});
    connection.sync();
    connection.stream.uncork();
    this.inflight.push(request);
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
  }

  /** Idle: let the process exit, and close after a while. */
  private sleep(): void {
    this.connection.stream.unref?.();
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.onIdle(this), this.idleMs);
    this.idleTimer.unref();
  }

  private fail(error: unknown): void {
    if (this.broken) return;
    this.broken = true;
    clearTimeout(this.idleTimer);
    const pending = [...this.inflight.splice(0), ...this.held.splice(0)];
    if (!this.closing || pending.length > 0) this.onBroken(this);
    for (const request of pending) request.reject(error);
    this.connection.stream.destroy();
  }

  /** Closes the connection once its statements are answered. */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.idleTimer);
    while (this.load > 0 && !this.broken) await new Promise((resolve) => setTimeout(resolve, 5));
    if (this.broken) return;
    this.broken = true;
    await new Promise<void>((resolve) => {
      this.connection.on('end', () => resolve());
      this.connection.end();
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
    private readonly connect: () => Promise<ProtocolConnection>,
    private readonly options: StatementLanesOptions,
  ) {
    this.depth = options.depth ?? 2;
    this.idleMs = options.idleMs ?? 10_000;
  }

  /** Lanes over new connections made like `pool`'s (same server, user, application name, search path). */
  static forPool(pool: pg.Pool, options: StatementLanesOptions): StatementLanes {
    const config = (pool as unknown as { options: pg.ClientConfig }).options;
    return new StatementLanes(async () => {
      const client = new pg.Client({ ...config, application_name: `${config.application_name ?? 'windfall'}` });
      await client.connect();
      // From here on the lane speaks the protocol on the client's connection itself.
      const connection = (client as unknown as { connection: ProtocolConnection }).connection;
      connection.removeAllListeners();
      return connection;
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
          (idle) => {
            if (idle.load === 0) this.remove(idle, true);
          },
          (broken) => this.remove(broken, false),
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
