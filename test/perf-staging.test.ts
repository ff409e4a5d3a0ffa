import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BatchValidationError } from '../src/rewards/batch-errors.js';
import { FingerprintSet } from '../src/staging/fingerprint-set.js';
import { CopyBuffer } from '../src/staging/copy-text.js';
import { stageBatch } from '../src/staging/stage-batch.js';
import { shardOf } from '../src/queue/shard-routing.js';
import { readJsonLines, recordsFromArray } from '../src/rewards/reward-sources.js';
import { useTestEnvironment } from './support/environment.js';

const env = useTestEnvironment();

/** The routing function as first written (TextEncoder bytes): the allocation-free one must agree with it. */
function shardOfReference(uid: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(uid)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % shards;
}

async function* lines(text: string, pieceBytes: number): AsyncGenerator<Uint8Array> {
  const bytes = Buffer.from(text, 'utf8');
  for (let at = 0; at < bytes.length; at += pieceBytes) yield bytes.subarray(at, at + pieceBytes);
}

describe('staging a batch fast (COPY, fingerprints, allocation-free routing) keeps its exact meaning', () => {
  it('stores every value exactly, escapes included', async () => {
    const rows = [
      {
        rewardId: 'esc-\\1',
        uid: 'user\\with\\backslashes',
        amount: 7,
        description: 'tab\there, newline\nthere, cr\r, backslash \\, 活动奖励 😀',
      },
      { rewardId: 'esc-2', uid: '用户', amount: '9007199254740991', description: '\\N' },
      { rewardId: 'esc-3', uid: 'u3', amount: 1 },
    ];
    const staged = await stageBatch(env.pool, recordsFromArray(rows), {
      batchId: 'escapes',
      shards: 8,
      chunkSize: 500,
      maxRows: 100,
    });
    expect(staged).toMatchObject({ total: 3, users: 3, created: true });
    const { rows: stored } = await env.pool.query<{
      reward_id: string;
      uid: string;
      amount: string;
      description: string | null;
      shard: number;
      row_no: number;
    }>(
      `select reward_id, uid, amount::text, description, shard, row_no from reward_batch_items where batch_id = 'escapes' order by row_no`,
    );
    expect(stored).toEqual(
      rows.map((row, index) => ({
        reward_id: row.rewardId,
        uid: row.uid,
        amount: String(row.amount),
        description: row.description ?? null,
        shard: shardOfReference(row.uid, 8),
        row_no: index + 1,
      })),
    );
  });

  it('stages every row exactly when the COPY buffers of earlier chunks are used again (multi-byte text, many chunks)', async () => {
    const rows = Array.from({ length: 40_000 }, (_, n) => ({
      rewardId: `reuse-${n}`,
      uid: `用户-${n % 977}`,
      amount: 1 + (n % 9973),
      ...(n % 3 === 0 ? { description: `奖励 ${'x'.repeat(n % 400)} 😀 \\ \t ${n}` } : {}),
    }));
    // read as a socket delivers it: pieces between which PostgreSQL's answers are handled
    async function* arriving(): AsyncGenerator<string> {
      for (let at = 0; at < rows.length; at += 200) {
        await new Promise((resolve) => setImmediate(resolve));
        yield rows
          .slice(at, at + 200)
          .map((row) => `${JSON.stringify(row)}\n`)
          .join('');
      }
    }
    await stageBatch(env.pool, readJsonLines(arriving()), {
      batchId: 'reuse',
      shards: 8,
      chunkSize: 500,
      maxRows: 1e6,
    });
    const expected = createHash('md5')
      .update(rows.map((row) => `${row.rewardId}|${row.uid}|${row.amount}|${row.description ?? '-'}`).join('\n'))
      .digest('hex');
    const { rows: stored } = await env.pool.query<{ digest: string; n: number }>(
      `select md5(string_agg(reward_id || '|' || uid || '|' || amount || '|' || coalesce(description, '-'), E'\\n' order by row_no)) as digest,
              count(*)::int as n
       from reward_batch_items where batch_id = 'reuse'`,
    );
    expect(stored[0]).toEqual({ digest: expected, n: rows.length });
  });

  it('leaves nothing behind when a batch is refused while one of its chunks is being copied (over maxRows)', async () => {
    // rows arrive in pieces with pauses between them; row 5,001, past the limit, comes in the piece that completes the
    // first chunk (5,000 rows), while that chunk is being staged
    async function* arriving(): AsyncGenerator<string> {
      for (let at = 0; at < 6000; at += 300) {
        await new Promise((resolve) => setImmediate(resolve));
        let piece = '';
        for (let n = at; n < at + 300; n += 1) piece += `{"rewardId":"over-${n}","uid":"over-u${n % 50}","amount":1}\n`;
        yield piece;
      }
    }
    for (let round = 0; round < 3; round += 1) {
      const error = await stageBatch(env.pool, readJsonLines(arriving()), {
        batchId: `over-${round}`,
        shards: 8,
        chunkSize: 500,
        maxRows: 5000,
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BatchValidationError);
      expect((error as Error).message).toContain('more than 5000 rewards');
    }
    const { rows } = await env.pool.query(
      `select batch_id, count(*)::int as n from reward_batch_items where batch_id like 'over-%' group by batch_id`,
    );
    expect(rows).toEqual([]);
  });

  it('hands out the same bytes from recycled COPY buffers as from new ones', () => {
    const copy = new CopyBuffer();
    const lines = Array.from(
      { length: 30_000 },
      (_, n) => `b\t${n % 8}\t用户${n}\tr-${n}\t${n}\t${n + 1}\t${'😀'.repeat(n % 50)}`,
    );
    const pieces: Buffer[][] = [];
    for (let at = 0; at < lines.length; at += 7_000) {
      for (const line of lines.slice(at, at + 7_000)) copy.row(line);
      const taken = copy.take();
      // what was sent is copied out before its buffers are used again
      pieces.push(taken.map((piece) => Buffer.from(piece)));
      copy.recycle(taken);
    }
    expect(Buffer.concat(pieces.flat()).toString('utf8')).toBe(`${lines.join('\n')}\n`);
  });

  it('names every repeated rewardId, within a COPY chunk and across chunks, for the same user or another', async () => {
    const count = 60_000;
    let text = '';
    for (let n = 1; n <= count; n += 1) {
      let rewardId = `big-${n}`;
      let uid = `u${n % 5000}`;
      if (n === 30_010) rewardId = 'big-30000'; // same chunk, another user
      if (n === 59_999) {
        rewardId = 'big-5'; // another chunk, the same user as row 5
        uid = 'u5';
      }
      if (n === 60_000) {
        rewardId = 'big-59998'; // the same user, the next row
        uid = `u${59_998 % 5000}`;
      }
      text += `${JSON.stringify({ rewardId, uid, amount: 1 + (n % 10) })}\n`;
    }
    const error = await stageBatch(env.pool, readJsonLines(lines(text, 65_536)), {
      batchId: 'big-repeats',
      shards: 8,
      chunkSize: 500,
      maxRows: 1e6,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BatchValidationError);
    expect((error as BatchValidationError).errors.map((e) => [e.row, e.reason])).toEqual([
      [30_010, 'repeats row 30000 of this batch (a rewardId may appear once per batch)'],
      [59_999, 'repeats row 5 of this batch (a rewardId may appear once per batch)'],
      [60_000, 'repeats row 59998 of this batch (a rewardId may appear once per batch)'],
    ]);
    const { rows } = await env.pool.query(
      `select count(*)::int as n from reward_batch_items where batch_id = 'big-repeats'`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('survives PostgreSQL failing a COPY at its second row while megabytes of it are still on their way, and names the repeat', async () => {
    // one COPY chunk (25,000 rows) of about 12 MB: the unique violation at row 2 arrives while the client still
    // sends (pg-copy-streams#171 crashes the process there unless one buffer at a time is in flight)
    const description = 'd'.repeat(480);
    const rows = Array.from({ length: 25_000 }, (_, n) => ({
      rewardId: `early-${n === 1 ? 0 : n}`,
      uid: 'early-u',
      amount: 1,
      description,
    }));
    for (let round = 0; round < 3; round += 1) {
      const error = await stageBatch(env.pool, recordsFromArray(rows), {
        batchId: `early-repeat-${round}`,
        shards: 8,
        chunkSize: 500,
        maxRows: 1e6,
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BatchValidationError);
      expect((error as BatchValidationError).errors.map((e) => [e.row, e.field, e.reason])).toEqual([
        [2, 'rewardId', 'repeats row 1 of this batch (a rewardId may appear once per batch)'],
      ]);
    }
    const { rows: left } = await env.pool.query(
      `select count(*)::int as n from reward_batch_items where batch_id like 'early-repeat-%'`,
    );
    expect(left[0].n).toBe(0);
  });

  it('reads the same lines from any cut of the stream (pieces decoded whole or line by line)', async () => {
    const rows = Array.from({ length: 300 }, (_, n) =>
      JSON.stringify({ rewardId: `cut-${n}`, uid: `用户-${n % 7}`, amount: n + 1, description: '活动奖励😀' }),
    );
    const text = `${rows.join('\r\n')}\n\n${rows[0]!.replace('cut-0', 'cut-x')}`;
    const expected = await collectRows(readJsonLines(lines(text, 1 << 20)));
    for (const piece of [1, 2, 3, 7, 64, 1000, 4096]) {
      expect(await collectRows(readJsonLines(lines(text, piece))), `pieces of ${piece} bytes`).toEqual(expected);
    }
    expect(expected.map((r) => r.row).slice(-2)).toEqual([300, 302]);
  });

  it('routes users exactly as the TextEncoder-based FNV-1a did', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 40 }),
        fc.integer({ min: 1, max: 1024 }),
        (uid, shards) => shardOf(uid, shards) === shardOfReference(uid, shards),
      ),
      { numRuns: 5000 },
    );
    for (const uid of ['\ud800', 'a\udc00b', '😀', '\uffff', '\u0800', '\u07ff'])
      expect(shardOf(uid, 997)).toBe(shardOfReference(uid, 997));
  });

  it('never misses a repeated rewardId (fingerprints may only over-report)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 300 }),
        fc.nat(),
        (ids, pick) => {
          const unique = new FingerprintSet();
          for (const id of ids) unique.add(id);
          const repeated = new FingerprintSet();
          for (const id of ids) repeated.add(id);
          repeated.add(ids[pick % ids.length]!);
          return repeated.maybeRepeats;
        },
      ),
    );
    const set = new FingerprintSet();
    for (let n = 0; n < 200_000; n += 1) set.add(`reward-${n}`);
    expect(set.maybeRepeats).toBe(false);
    set.add('reward-123456');
    expect(set.maybeRepeats).toBe(true);
  });
});

async function collectRows(source: AsyncIterable<{ row: number; value?: unknown; error?: unknown }>) {
  const out: { row: number; value: string }[] = [];
  for await (const record of source) out.push({ row: record.row, value: JSON.stringify(record.value ?? record.error) });
  return out;
}
