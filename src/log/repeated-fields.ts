/**
 * One key appears once per log line. pino writes a child logger's bindings, then the fields of the log call, with
 * no check: `logger.child({attempt}).warn({attempt}, …)` gives `"attempt":1,…,"attempt":1`, which many log
 * tools reject or read as the last value only. The hook here drops a call field that repeats a binding with the
 * same value, and renames one whose value differs to `<key>_call`, so both stay readable.
 */
import { pino } from 'pino';

/** Suffix of a call field renamed because its logger already binds the key to another value. */
export const RENAMED_FIELD_SUFFIX = '_call';

/** pino's placeholder for a redacted value (`loggerOptions`' censor). */
export const REDACTED = '[redacted]';

/** Keys pino writes itself on every line (`level`, `time`); `msg` too when the call passes a message. */
const WRITTEN_BY_PINO = ['level', 'time'];

interface Bound {
  readonly chindings: string;
  readonly values: Record<string, unknown>;
}

const boundByLogger = new WeakMap<object, Bound>();

/** The key/value pairs `logger` writes on every line (its base and child bindings), read from pino's own text. */
function boundValues(logger: pino.Logger): Record<string, unknown> {
  const chindings = (logger as unknown as Record<symbol, unknown>)[pino.symbols.chindingsSym];
  if (typeof chindings !== 'string' || chindings === '') return {};
  const cached = boundByLogger.get(logger);
  if (cached?.chindings === chindings) return cached.values;
  let values: Record<string, unknown>;
  try {
    values = JSON.parse(`{${chindings.slice(1)}}`) as Record<string, unknown>;
  } catch {
    values = {};
  }
  boundByLogger.set(logger, { chindings, values });
  return values;
}

function sameValue(bound: unknown, logged: unknown): boolean {
  if (bound === logged) return true;
  if (logged === null || typeof logged !== 'object') return false;
  try {
    return JSON.stringify(bound) === JSON.stringify(logged);
  } catch {
    return false;
  }
}

/**
 * pino's `hooks.logMethod`: removes from the call's fields every key the logger already writes with the same
 * value, and renames one written with another value to `<key>_call` (`_call_call`, … while taken).
 */
export function dropRepeatedFields(this: pino.Logger, args: Parameters<pino.LogFn>, method: pino.LogFn): void {
  const fields: unknown = args[0];
  if (fields === null || typeof fields !== 'object' || fields instanceof Error || Array.isArray(fields)) {
    method.apply(this, args);
    return;
  }
  const bound = boundValues(this);
  const pinoKeys = args.length > 1 ? [...WRITTEN_BY_PINO, 'msg'] : WRITTEN_BY_PINO;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(fields)) {
    const repeatsBinding = Object.hasOwn(bound, key);
    if (!repeatsBinding && !pinoKeys.includes(key)) continue;
    copy ??= { ...(fields as Record<string, unknown>) };
    const value = copy[key];
    delete copy[key];
    // a redacted binding is not compared (and its key's value is never written under another name)
    if (repeatsBinding && (bound[key] === REDACTED || sameValue(bound[key], value))) continue;
    let renamed = `${key}${RENAMED_FIELD_SUFFIX}`;
    while (Object.hasOwn(copy, renamed) || Object.hasOwn(bound, renamed)) renamed += RENAMED_FIELD_SUFFIX;
    copy[renamed] = value;
  }
  if (!copy) {
    method.apply(this, args);
    return;
  }
  const [, ...rest] = args;
  method.apply(this, [copy, ...rest]);
}
