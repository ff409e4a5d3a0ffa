import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { ReplyError } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { MAX_THROWN_TEXT, renderError } from '../../src/log/error-rendering.js';
import { createLogger, scrubSecrets } from '../../src/log/logger.js';
import { repeatedJsonKeys } from '../support/json-keys.js';

const PASSWORD = 'rotated-Pa55word-never-printed';

/** A logger with the production options writing into memory; `lines()` parses what it wrote. */
function capture(level: 'debug' | 'trace' = 'debug') {
  let out = '';
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      out += chunk.toString();
      done();
    },
  });
  const logger = createLogger(level, {}, destination);
  return {
    logger,
    text: () => out,
    lines: () => out.split('\n').filter(Boolean),
    records: () =>
      out
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

/** The error ioredis gives every pending command when AUTH fails: a ReplyError carrying the AUTH command. */
function failedAuth(): Error {
  const error = new ReplyError('WRONGPASS invalid username-password pair or user is disabled.') as Error;
  return Object.assign(error, { command: { name: 'auth', args: [PASSWORD] } });
}

describe('Redis command arguments never reach a log line', () => {
  it('under err, under other keys, nested in causes, previousErrors, AggregateError, plain objects, arrays and child bindings', () => {
    const { logger, text, records } = capture('trace');
    logger.error({ err: failedAuth(), shard: 0 }, 'shard worker error');
    logger.warn({ error: failedAuth() }, 'under another key');
    logger.warn({ err: new Error('could not take the lock', { cause: failedAuth() }) }, 'as a cause');
    logger.warn(
      { err: Object.assign(new Error('EXECABORT'), { previousErrors: [failedAuth(), failedAuth()] }) },
      'pipeline',
    );
    logger.warn({ err: new AggregateError([failedAuth(), new Error('other')], 'all nodes failed') }, 'aggregate');
    logger.warn(
      { failure: { attempts: [{ last: failedAuth() }] }, command: { name: 'auth', args: [PASSWORD] } },
      'deep',
    );
    logger.child({ lastError: failedAuth() }).info('bound');
    logger.error(failedAuth());
    logger.trace({ err: Object.assign(new Error('cluster'), { lastNodeError: failedAuth() }) }, 'cluster');
    const out = text();
    expect(out).not.toContain(PASSWORD);
    const lines = records();
    expect(lines).toHaveLength(9);
    // what is useful stays: the type, the message, the stack, the command's name
    expect(lines[0]!['err']).toMatchObject({
      type: 'ReplyError',
      message: expect.stringContaining('WRONGPASS'),
      command: { name: 'auth', args: '[1 hidden]' },
    });
    expect((lines[0]!['err'] as { stack: string }).stack).toContain('ReplyError: WRONGPASS');
    expect(lines[1]!['error']).toMatchObject({ type: 'ReplyError', command: { name: 'auth' } });
    expect(lines[2]!['err']).toMatchObject({
      type: 'Error',
      message: 'could not take the lock: WRONGPASS invalid username-password pair or user is disabled.',
    });
    expect((lines[3]!['err'] as { previousErrors: unknown[] }).previousErrors).toHaveLength(2);
    expect(
      (lines[4]!['err'] as { aggregateErrors: { message: string }[] }).aggregateErrors.map((e) => e.message),
    ).toEqual([expect.stringContaining('WRONGPASS'), 'other']);
    expect(lines[5]!['command']).toEqual({ name: 'auth', args: '[1 hidden]' });
    expect(lines[6]!['lastError']).toMatchObject({ type: 'ReplyError', command: { name: 'auth' } });
    expect(lines[7]!['msg']).toContain('WRONGPASS');
  });

  it('the arguments Redis quotes in an unknown command error are scrubbed from any text', () => {
    const { logger, text } = capture();
    logger.warn(
      { err: new ReplyError(`ERR unknown command 'auht', with args beginning with: '${PASSWORD}' `) },
      'unknown command',
    );
    logger.warn(`plain text: ERR unknown command 'x', with args beginning with: '${PASSWORD}'`);
    expect(text()).not.toContain(PASSWORD);
    expect(text()).toContain('with args beginning with: [redacted]');
    expect(scrubSecrets(`ERR unknown command 'x', with args beginning with: '${PASSWORD}'\nnext line`)).toBe(
      `ERR unknown command 'x', with args beginning with: [redacted]\nnext line`,
    );
    for (const line of text().split('\n').filter(Boolean)) JSON.parse(line);
  });
});

describe('what Node and libraries print in a windfall process', () => {
  const main = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
  const run = (body: string) => {
    const script = `
      const { installProcessGuards } = await import(${JSON.stringify(main)});
      installProcessGuards();
      const error = Object.assign(new Error('WRONGPASS invalid username-password pair'), { command: { name: 'auth', args: [${JSON.stringify(PASSWORD)}] } });
      ${body}
    `;
    return spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  };

  it('an error nothing caught is reported without the Redis command arguments Node would print, and the process exits 1', () => {
    const crashed = run('Promise.reject(error);');
    expect(crashed.status).toBe(1);
    expect(crashed.stderr).toContain('windfall: unexpected error: WRONGPASS invalid username-password pair');
    expect(crashed.stderr).toContain('"command":{"name":"auth","args":"[1 hidden]"}');
    expect(crashed.stdout + crashed.stderr).not.toContain(PASSWORD);
  });

  it("a library's console.error/warn of a Redis error (BullMQ's 'Unexpected Error in AsyncFifoQueue') shows the command's name only", () => {
    const printed = run(
      `console.error('Unexpected Error in AsyncFifoQueue', error); console.warn(error); console.log('at redis://:${PASSWORD}@h:1');`,
    );
    expect(printed.status).toBe(0);
    expect(printed.stderr).toContain('Unexpected Error in AsyncFifoQueue');
    expect(printed.stderr).toContain("name: 'auth'");
    expect(printed.stdout).toContain('redis://:***@h:1');
    expect(printed.stdout + printed.stderr).not.toContain(PASSWORD);
  });
});

describe('thrown non-Error values are logged usefully', () => {
  it('a plain object, a string, a number, null, an object with a message: type and message, never an empty stack', () => {
    const { logger, records, text } = capture();
    logger.error({ err: { code: 'E_BUSY', retryInMs: 50 } }, 'object');
    logger.error({ err: 'boom' }, 'string');
    logger.error({ err: 42 }, 'number');
    logger.error({ err: null }, 'null');
    logger.error({ err: { message: 'WRONGPASS from a plain object' } }, 'message only');
    logger.error({ err: { huge: 'x'.repeat(10_000) } }, 'huge');
    const [object, string, number, nothing, message, huge] = records().map(
      (record) => record['err'] as Record<string, unknown>,
    );
    expect(object).toEqual({
      type: 'Object',
      message: '{"code":"E_BUSY","retryInMs":50}',
      code: 'E_BUSY',
      retryInMs: 50,
    });
    expect(string).toEqual({ type: 'string', message: 'boom' });
    expect(number).toEqual({ type: 'number', message: '42' });
    expect(nothing).toEqual({ type: 'null', message: 'null' });
    expect(message).toEqual({ type: 'Object', message: 'WRONGPASS from a plain object' });
    expect(String(huge!['message']).length).toBe(MAX_THROWN_TEXT + 1);
    expect(text()).not.toContain('"stack":""');
  });

  it('renderError survives cycles, class instances and deep nesting', () => {
    const looped: Record<string, unknown> = { name: 'loop' };
    looped['self'] = looped;
    expect(renderError(looped)).toMatchObject({ type: 'Object', self: '[Circular]' });
    class Timeout {
      readonly ms = 5;
    }
    expect(renderError(new Timeout())).toEqual({ type: 'Timeout', message: '{"ms":5}', ms: 5 });
    const cyclic = new Error('outer');
    (cyclic as { cause?: unknown }).cause = cyclic;
    expect(renderError(cyclic)).toMatchObject({ type: 'Error', message: 'outer' });
    let deep: Record<string, unknown> = { bottom: failedAuth() };
    for (let level = 0; level < 20; level += 1) deep = { deeper: deep };
    expect(JSON.stringify(renderError(Object.assign(new Error('deep'), { deep })))).not.toContain(PASSWORD);
  });
});

describe('one key per log line', () => {
  it('a call field repeating a binding with the same value is written once; another value goes to <key>_call', () => {
    const { logger, lines, records } = capture();
    const job = logger.child({ jobId: '7', attempt: 1, shard: 3 });
    job.warn({ users: 2, attempt: 1 }, 'users failed for now');
    job.warn({ attempt: 2 }, 'transient database error; trying the step again');
    job.info({ time: 'client time', level: 'mine', service: 'windfall', msg: 'x' }, 'pino keys');
    job.child({ deadLetterId: 'a' }).warn({ deadLetterId: 'b', uid: 'u' }, 'rewards dead-lettered');
    const secretChild = logger.child({ databaseUrl: 'postgres://u:pw@h/db' });
    secretChild.info({ databaseUrl: 'postgres://u:other@h/db' }, 'secret binding repeated');
    for (const line of lines()) expect(repeatedJsonKeys(line)).toEqual([]);
    const [first, second, third, fourth, fifth] = records();
    expect(first).toMatchObject({ attempt: 1, users: 2 });
    expect(second).toMatchObject({ attempt: 1, attempt_call: 2 });
    expect(third).toMatchObject({
      level: 'info',
      time_call: 'client time',
      level_call: 'mine',
      msg: 'pino keys',
      msg_call: 'x',
    });
    expect(fourth).toMatchObject({ deadLetterId: 'a', deadLetterId_call: 'b' });
    expect(fifth).toMatchObject({ databaseUrl: '[redacted]' });
    expect(Object.keys(fifth!)).not.toContain('databaseUrl_call');
  });

  it('the checker finds a repeated key', () => {
    expect(repeatedJsonKeys('{"a":1,"b":{"c":[{"d":1,"d":2}]},"a":1}')).toEqual(['b.c.[].d', 'a']);
  });
});
