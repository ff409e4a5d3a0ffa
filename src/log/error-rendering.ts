/**
 * How errors, and anything else a program throws, appear in log records: useful to a person (type, message,
 * stack, code, the fields the error carries), and never with the arguments of a Redis command. ioredis attaches
 * `command: {name, args}` to its errors — for a failed AUTH the args are the password — and pino's standard
 * serializer, like `JSON.stringify` and `util.inspect`, prints every own field of an error.
 */

/** Nesting depth walked inside a logged value; deeper values are summarized. */
const MAX_DEPTH = 8;
/** Items of an array kept in a log record; the rest are counted. */
const MAX_ITEMS = 50;
/** Characters kept of the JSON text of a thrown non-Error value. */
export const MAX_THROWN_TEXT = 1000;

/** Text Redis puts after an unknown command's name: its first arguments. */
const REDIS_ARGS_IN_TEXT = /(with args beginning with: ?)(?:[^"\\\n]|\\[^n])*/g;

/** Removes the command arguments Redis quotes in some error texts (`… with args beginning with: 'a' 'b'`). */
export function scrubRedisArguments(text: string): string {
  return text.includes('with args beginning with') ? text.replace(REDIS_ARGS_IN_TEXT, '$1[redacted]') : text;
}

/** An Error, or an error from another realm or library that has a message and a stack. */
export function isErrorLike(value: unknown): value is Error {
  if (value instanceof Error) return true;
  if (value === null || typeof value !== 'object') return false;
  const candidate = value as { message?: unknown; stack?: unknown };
  return typeof candidate.message === 'string' && typeof candidate.stack === 'string';
}

/** A Redis command as it may appear in a log: its name, never its arguments. */
function commandWithoutArguments(command: unknown): unknown {
  if (command === null || typeof command !== 'object') return command;
  const { name, args } = command as { name?: unknown; args?: unknown };
  return {
    ...(typeof name === 'string' ? { name } : {}),
    ...(Array.isArray(args) ? { args: `[${args.length} hidden]` } : {}),
  };
}

function typeName(value: object): string {
  const constructor = (value as { constructor?: unknown }).constructor;
  if (typeof constructor === 'function' && constructor.name) return constructor.name;
  const name = (value as { name?: unknown }).name;
  return typeof name === 'string' && name ? name : 'Object';
}

function causeOf(error: Error): unknown {
  return (error as { cause?: unknown }).cause;
}

/** `message: cause's message: …`, as pino's standard serializer writes it, cut at a cycle. */
function messageWithCauses(error: Error): string {
  const parts: string[] = [];
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (isErrorLike(current) && !seen.has(current) && parts.length < MAX_DEPTH) {
    seen.add(current);
    parts.push(current.message);
    current = causeOf(current);
  }
  return parts.filter((part) => part !== '').join(': ');
}

/** The stack, then `caused by: <cause's stack>` for each cause, cut at a cycle. */
function stackWithCauses(error: Error): string {
  const parts: string[] = [];
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (isErrorLike(current) && !seen.has(current) && parts.length < MAX_DEPTH) {
    seen.add(current);
    parts.push(current.stack ?? '');
    current = causeOf(current);
  }
  return parts.join('\ncaused by: ');
}

/** JSON text of a value, cut to `max` characters (`…` marks the cut); never throws. */
function boundedJson(value: unknown, max = MAX_THROWN_TEXT): string {
  let text: string;
  try {
    text =
      JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? item.toString() : item)) ??
      String(value);
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

class Renderer {
  private readonly seen = new Set<object>();

  /** An error as a plain object: type, message (with causes), stack (with causes), aggregated errors, its fields. */
  error(error: Error, depth: number): Record<string, unknown> {
    if (this.seen.has(error))
      return { type: typeName(error), message: scrubRedisArguments(error.message), circular: true };
    this.seen.add(error);
    const rendered: Record<string, unknown> = {
      type: typeName(error),
      message: scrubRedisArguments(messageWithCauses(error)),
    };
    const stack = stackWithCauses(error);
    if (stack.trim() !== '') rendered['stack'] = scrubRedisArguments(stack);
    const errors = (error as { errors?: unknown }).errors;
    if (Array.isArray(errors)) rendered['aggregateErrors'] = this.array(errors, depth + 1);
    for (const key in error) {
      if (key in rendered || key === 'errors') continue;
      const value = (error as unknown as Record<string, unknown>)[key];
      // the cause's message and stack are already part of this error's
      if (key === 'cause' && isErrorLike(value)) continue;
      rendered[key] = key === 'command' ? commandWithoutArguments(value) : this.value(value, depth + 1);
    }
    this.seen.delete(error);
    return rendered;
  }

  /** Any value inside a log record, with every error in it rendered and every Redis command stripped of its arguments. */
  value(value: unknown, depth: number): unknown {
    if (value === null || typeof value !== 'object') return typeof value === 'function' ? undefined : value;
    if (isErrorLike(value)) return this.error(value, depth);
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
    if (depth >= MAX_DEPTH) return Array.isArray(value) ? `[Array(${value.length})]` : `[${typeName(value)}]`;
    if (this.seen.has(value)) return '[Circular]';
    this.seen.add(value);
    try {
      if (Array.isArray(value)) return this.array(value, depth);
      const copy: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(value))
        copy[key] = key === 'command' ? commandWithoutArguments(item) : this.value(item, depth + 1);
      return copy;
    } finally {
      this.seen.delete(value);
    }
  }

  private array(items: readonly unknown[], depth: number): unknown[] {
    const kept = items.slice(0, MAX_ITEMS).map((item) => this.value(item, depth + 1));
    if (items.length > MAX_ITEMS) kept.push(`… ${items.length - MAX_ITEMS} more`);
    return kept;
  }
}

/**
 * Renders what was thrown for the `err` field of a log record.
 * - An error (any `Error`, or an object with a string `message` and `stack`): `{type, message, stack, …fields}`
 *   like pino's standard serializer — causes are appended to the message and stack, `AggregateError.errors` become
 *   `aggregateErrors` — except that a Redis `command` keeps only its name, and errors nested anywhere in the fields
 *   (`previousErrors`, `lastNodeError`, …) are rendered the same way.
 * - Anything else (a string, a number, a plain object, `null`): `{type, message}` where `type` is `string`,
 *   `number`, `null`, `Object`, … and `message` is the string itself, the object's `message`, or its JSON text cut
 *   to {@link MAX_THROWN_TEXT} characters. An object's other fields follow, rendered as above.
 */
export function renderError(thrown: unknown): unknown {
  if (thrown === undefined) return undefined;
  const renderer = new Renderer();
  if (isErrorLike(thrown)) return renderer.error(thrown, 0);
  if (thrown === null) return { type: 'null', message: 'null' };
  if (typeof thrown !== 'object') {
    const text = typeof thrown === 'string' ? thrown : typeof thrown === 'symbol' ? thrown.toString() : String(thrown);
    return {
      type: typeof thrown,
      message: scrubRedisArguments(text.length > MAX_THROWN_TEXT ? `${text.slice(0, MAX_THROWN_TEXT)}…` : text),
    };
  }
  const fields = renderer.value(thrown, 0);
  const message = (thrown as { message?: unknown }).message;
  // an array, an object with its own JSON form (a Date, a Buffer), a summarized value: its JSON text says it all
  if (fields === thrown || fields === null || typeof fields !== 'object' || Array.isArray(fields)) {
    return { type: typeName(thrown), message: boundedJson(fields) };
  }
  const record = fields as Record<string, unknown>;
  const { message: _message, ...rest } = record;
  return {
    type: typeName(thrown),
    message: scrubRedisArguments(typeof message === 'string' && message !== '' ? message : boundedJson(rest)),
    ...rest,
  };
}

/**
 * The fields of a log call made safe, for pino's `formatters.log`: every error found under any key, at any depth,
 * is rendered by {@link renderError}'s rules, and every Redis `command` keeps only its name. The `errorKey` field
 * is left to the `err` serializer.
 */
export function renderLogFields(fields: Record<string, unknown>, errorKey = 'err'): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(fields)) {
    const value = fields[key];
    if (key === errorKey || value === null || typeof value !== 'object') continue;
    copy ??= { ...fields };
    copy[key] = key === 'command' ? commandWithoutArguments(value) : new Renderer().value(value, 1);
  }
  return copy ?? fields;
}
