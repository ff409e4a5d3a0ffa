import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { classifyDatabaseError } from '../src/db/pg-errors.js';
import { StatementLanes, type LaneSocket } from '../src/worker/statement-lanes.js';

/** A backend message: type byte, length, body. */
function message(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const bytes = Buffer.alloc(5 + body.length);
  bytes[0] = type.charCodeAt(0);
  bytes.writeInt32BE(4 + body.length, 1);
  body.copy(bytes, 5);
  return bytes;
}
const errorResponse = (severity: string, code: string, text: string): Buffer => message('E', Buffer.from(`S${severity}\0C${code}\0M${text}\0\0`));
const readyForQuery = (): Buffer => message('Z', Buffer.from('I'));

/** A socket the test plays the server on. */
class ScriptedSocket extends EventEmitter implements LaneSocket {
  readonly writes: Buffer[] = [];
  write(data: Buffer): boolean {
    this.writes.push(data);
    return true;
  }
  end(): void {
    setImmediate(() => this.emit('close'));
  }
  destroy(): void {
    setImmediate(() => this.emit('close'));
  }
}

function lanesOver(socket: ScriptedSocket): StatementLanes {
  return new StatementLanes(async () => socket, { lanes: 1, depth: 2, idleMs: 60_000 });
}

const settle = (promise: Promise<unknown>): Promise<unknown> => promise.then((value) => ({ value }), (error: unknown) => ({ error }));

/** Sends two statements on one connection, plays `replies` as the server (then closes it, if `close`), and returns both outcomes. */
async function twoStatements(replies: readonly Buffer[], close: boolean): Promise<unknown[]> {
  const socket = new ScriptedSocket();
  const lanes = lanesOver(socket);
  const outcomes = [settle(lanes.run('s1', 'select 1', [])), settle(lanes.run('s1', 'select 1', []))];
  await new Promise((resolve) => setImmediate(resolve));
  for (const reply of replies) socket.emit('data', reply);
  if (close) socket.emit('close');
  const settled = await Promise.all(outcomes);
  await lanes.close();
  return settled;
}

describe('statement lanes: a connection the server closes', () => {
  it("rejects what was on its way with the server's FATAL reason (57P01), which is transient", async () => {
    const outcomes = await twoStatements([errorResponse('FATAL', '57P01', 'terminating connection due to administrator command')], true);
    for (const outcome of outcomes) {
      const error = (outcome as { error: Error & { code?: string } }).error;
      expect(error.message).toBe('terminating connection due to administrator command');
      expect(error.code).toBe('57P01');
      expect(classifyDatabaseError(error)).toBe('transient');
    }
  });

  it("never hands one statement's own error to the others when the connection then closes", async () => {
    // the first statement fails a CHECK (insufficient funds) and the connection drops before its ReadyForQuery
    const outcomes = await twoStatements([errorResponse('ERROR', '23514', 'new row violates check constraint')], true);
    for (const outcome of outcomes) {
      const error = (outcome as { error: Error & { code?: string } }).error;
      expect(error.message).toBe('Connection terminated unexpectedly');
      expect(classifyDatabaseError(error)).toBe('transient');
    }
  });

  it('gives a statement its own error once its transaction is over, and runs the next one normally', async () => {
    const [first, second] = await twoStatements(
      [
        Buffer.concat([message('1'), errorResponse('ERROR', '23514', 'new row violates check constraint'), readyForQuery()]),
        Buffer.concat([message('2'), message('C', Buffer.from('SELECT 0\0')), readyForQuery()]),
      ],
      false,
    );
    expect((first as { error: Error & { code?: string } }).error.code).toBe('23514');
    expect(second).toEqual({ value: [] });
  });
});

describe('statement lanes: closing', () => {
  it('does not wait for ever on a server that stopped answering: what was on its way fails as transient', async () => {
    const socket = new ScriptedSocket();
    const lanes = new StatementLanes(async () => socket, { lanes: 1, depth: 2, idleMs: 60_000, closeWaitMs: 200 });
    const pending = settle(lanes.run('s1', 'select 1', []));
    await new Promise((resolve) => setImmediate(resolve));
    const started = Date.now();
    await lanes.close();
    expect(Date.now() - started).toBeLessThan(2000);
    const error = ((await pending) as { error: Error }).error;
    expect(error.message).toMatch(/did not answer within 200 ms/);
    expect(classifyDatabaseError(error)).toBe('transient');
  });
});
