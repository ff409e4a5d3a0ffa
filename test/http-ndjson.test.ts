import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setCampaignBudget } from '../src/campaign/campaign-budget.js';
import { runCliJson } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { startServe, type ServeProcess } from './support/serve.js';
import { postNdjson, rewardLines } from './support/streamed-batch.js';

const env = useTestEnvironment();
/** Small limits, so that each is cheap to pass. */
const LIMITS = {
  WINDFALL_HTTP_BODY_LIMIT: String(64 * 1024),
  WINDFALL_MAX_BATCH_ROWS: '5000',
  WINDFALL_HTTP_STREAM_LIMIT: String(1024 * 1024),
};
let server: ServeProcess;
const dir = mkdtempSync(join(tmpdir(), 'windfall-ndjson-'));

beforeAll(async () => {
  server = await startServe(env.env({ ...LIMITS, WINDFALL_RECOVERY_INTERVAL_MS: '0' }));
});
afterAll(async () => {
  await server?.stop();
});

function post(
  query: Record<string, string | readonly string[]>,
  body: Iterable<string | Buffer> | AsyncIterable<string | Buffer> | string | Buffer,
  headers?: Record<string, string>,
) {
  const lines = typeof body === 'string' || Buffer.isBuffer(body) ? [body] : body;
  return postNdjson(server.baseUrl, server.apiToken, query, lines, headers);
}

/** `windfall enqueue --file <text as .jsonl> --json …` with the same limits as the server. */
async function enqueueFile(name: string, text: string, args: string[] = []) {
  const file = join(dir, `${name}.jsonl`);
  writeFileSync(file, text);
  return runCliJson(['enqueue', '--file', file, ...args], env.env(LIMITS));
}

async function recorded(batchId: string): Promise<{ batches: number; items: number; chunks: number }> {
  const { rows } = await env.pool.query<{ batches: number; items: number; chunks: number }>(
    `select (select count(*)::int from reward_batches where batch_id = $1) as batches,
            (select count(*)::int from reward_batch_items where batch_id = $1) as items,
            (select count(*)::int from reward_chunks where batch_id = $1) as chunks`,
    [batchId],
  );
  return rows[0]!;
}

async function stagedRows(batchId: string): Promise<unknown[]> {
  const { rows } = await env.pool.query(
    `select shard, uid, reward_id, row_no, amount::text, description from reward_batch_items where batch_id = $1 order by row_no`,
    [batchId],
  );
  return rows;
}

describe('POST /v1/batches as application/x-ndjson (a streamed batch)', () => {
  it('stages a body larger than the JSON body limit exactly as `windfall enqueue` stages the file; again is a no-op, other rewards a conflict', async () => {
    const text = [...rewardLines('nd', 3000, { users: 700 })]
      .join('')
      .replace('"amount":2}', '"amount":"2","description":"奖励 😀"}');
    expect(Buffer.byteLength(text)).toBeGreaterThan(64 * 1024);
    const accepted = await post({ batchId: 'nd-http', priority: 'high' }, text);
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(202);
    expect(accepted.body).toEqual({ batchId: 'nd-http', total: 3000, created: true });
    expect(accepted.headers['connection']).not.toBe('close');
    const cli = await enqueueFile('same', text, ['--batch-id', 'nd-cli', '--priority', 'high']);
    expect(cli.code, cli.stderr).toBe(0);
    expect(await stagedRows('nd-http')).toEqual(await stagedRows('nd-cli'));
    const batches = await env.pool.query(
      `select batch_id, total, users, chunks, content_digest, priority from reward_batches where batch_id in ('nd-http', 'nd-cli') order by batch_id desc`,
    );
    expect(batches.rows[0]).toEqual({ ...batches.rows[1], batch_id: 'nd-http' });

    const again = await post({ batchId: 'nd-http', priority: 'high' }, text);
    expect(again.body).toEqual({ batchId: 'nd-http', total: 3000, created: false });
    const other = await post({ batchId: 'nd-http', priority: 'high' }, text.replace('"amount":3}', '"amount":4}'));
    expect(other.status).toBe(409);
    expect(other.body).toMatchObject({ error: 'batch conflict' });
    expect(await recorded('nd-http')).toMatchObject({ items: 3000 });
  });

  it('refuses a body with bad rows whole, with the error report the CLI gives for the same file, recording nothing', async () => {
    const text =
      '\ufeff{"rewardId":"bad-1","uid":"u1","amount":1}\r\n' +
      '{"rewardId":"bad-2","uid":"u2","amount":1.5}\n' +
      '\n' +
      '{"rewardId":"bad-3","amount":1}\n' +
      'not json\n' +
      '{"rewardId":"bad-1","uid":"u9","amount":1}\n' +
      '{"rewardId":"bad-5","uid":"u5","amount":1,"amout":2}\n' +
      '{"rewardId":"bad-6","uid":"u6","amount":"7"}';
    const refused = await post({ batchId: 'nd-bad' }, text);
    expect(refused.status).toBe(400);
    const cli = await enqueueFile('bad', text, ['--batch-id', 'nd-bad']);
    expect(cli.code).toBe(2);
    expect(refused.body).toEqual(cli.json);
    expect(refused.body).toMatchObject({ error: 'invalid batch', totalErrors: 5, badRows: 5, rowsRead: 7 });
    expect(refused.body.errors.map((error: { row: number; code: string }) => [error.row, error.code])).toEqual([
      [2, 'amount_fraction'],
      [4, 'missing'],
      [5, 'invalid_json'],
      [6, 'repeated_reward_id'],
      [7, 'unknown_field'],
    ]);
    expect(await recorded('nd-bad')).toEqual({ batches: 0, items: 0, chunks: 0 });
  });

  it('refuses a body over WINDFALL_MAX_BATCH_ROWS as the CLI does, answering before its end, recording nothing', async () => {
    const lines = [...rewardLines('many', 6000)];
    // the body stops after 6,000 rows and goes on only once answered: a server waiting for its end would never answer
    async function* stalled(): AsyncGenerator<string> {
      yield* lines;
      await new Promise(() => undefined);
    }
    const refused = await post({ batchId: 'nd-many' }, stalled());
    expect(refused.status).toBe(400);
    const cli = await enqueueFile('many', lines.join(''), ['--batch-id', 'nd-many']);
    expect(refused.body).toEqual(cli.json);
    expect(refused.body).toMatchObject({ rowsRead: 5001 });
    expect(refused.body.message).toContain('more than 5000 rewards (WINDFALL_MAX_BATCH_ROWS)');
    expect(await recorded('nd-many')).toEqual({ batches: 0, items: 0, chunks: 0 });
  });

  it('answers 413 over WINDFALL_HTTP_STREAM_LIMIT, by Content-Length before reading or while reading a chunked body; recording nothing', async () => {
    const description = 'd'.repeat(480);
    const lines = Array.from(
      { length: 2500 },
      (_, n) => `{"rewardId":"big-${n}","uid":"big-u${n}","amount":1,"description":"${description}"}\n`,
    );
    const declared = await post({ batchId: 'nd-big' }, lines, {
      'content-length': String(lines.join('').length),
    });
    expect(declared.status).toBe(413);
    expect(declared.body).toMatchObject({ error: 'payload too large' });
    expect(declared.body.message).toContain('WINDFALL_HTTP_STREAM_LIMIT');
    const chunked = await post({ batchId: 'nd-big' }, lines);
    expect(chunked.status).toBe(413);
    expect(await recorded('nd-big')).toEqual({ batches: 0, items: 0, chunks: 0 });
    // blank lines count too: a body of nothing but newlines cannot run for ever
    const blank = await post(
      { batchId: 'nd-blank' },
      (function* () {
        for (let n = 0; n < 2000; n += 1) yield '\n'.repeat(1000);
      })(),
    );
    expect(blank.status).toBe(413);
  });

  it('refuses a bad query, an empty body and a UTF-16 body (400), and a batch over its campaign budget (409); needs the API token', async () => {
    const row = '{"rewardId":"q-1","uid":"q-u","amount":5}\n';
    const unknown = await post({ batchId: 'nd-q', campaign: 'c' }, row);
    expect(unknown.status).toBe(400);
    expect(unknown.body.errors).toEqual([
      {
        row: 0,
        field: 'campaign',
        code: 'unknown_field',
        reason: expect.stringContaining('batchId, campaignId, priority'),
      },
    ]);
    const twice = await post({ batchId: ['nd-q', 'nd-q2'] }, row);
    expect(twice.body.errors).toEqual([
      { row: 0, field: 'batchId', code: 'not_string', reason: 'is given more than once' },
    ]);
    const generated = await post({}, '{"rewardId":"q-gen","uid":"q-u","amount":5}\n');
    expect(generated.status).toBe(202);
    expect(generated.body.batchId).toMatch(/^[0-9a-f-]{36}$/);
    const priority = await post({ batchId: 'nd-q', priority: 'urgent' }, row);
    expect(priority.body.errors).toEqual([expect.objectContaining({ field: 'priority', code: 'invalid_priority' })]);
    const empty = await post({ batchId: 'nd-q' }, '');
    expect(empty.status).toBe(400);
    expect(empty.body.message).toBe('batch refused: it has no rewards');
    const utf16 = await post({ batchId: 'nd-q' }, Buffer.from(`\ufeff${row}`, 'utf16le'));
    expect(utf16.status).toBe(400);
    expect(utf16.body.message).toContain('UTF-16');
    expect(await recorded('nd-q')).toEqual({ batches: 0, items: 0, chunks: 0 });

    await setCampaignBudget(env.pool, 'nd-camp', '4');
    const over = await post({ batchId: 'nd-camp-1', campaignId: 'nd-camp' }, row);
    expect(over.status).toBe(409);
    expect(over.body).toMatchObject({ error: 'budget exceeded', campaignId: 'nd-camp', remaining: '4' });
    expect(await recorded('nd-camp-1')).toEqual({ batches: 0, items: 0, chunks: 0 });

    const anonymous = await postNdjson(server.baseUrl, 'wrong-token-0123456789', { batchId: 'nd-anon' }, [row]);
    expect(anonymous.status).toBe(401);
    expect(await recorded('nd-anon')).toEqual({ batches: 0, items: 0, chunks: 0 });
  });
});
