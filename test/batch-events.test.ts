import { afterEach, describe, expect, it } from 'vitest';
import type { WindfallConfig } from '../src/config/config.js';
import { loadConfig } from '../src/config/config.js';
import { ConfigError } from '../src/config/config-error.js';
import { refreshStoredStatus } from '../src/status/batch-status.js';
import {
  DEFAULT_DELIVERY_BACKOFF,
  deliveryBackoffMs,
  deliveryExpired,
  nextAttemptDelayMs,
} from '../src/events/delivery-backoff.js';
import { signatureHeader, verifySignature } from '../src/events/event-signature.js';
import { writeStatusWithEvent, type RecordedEvent } from '../src/events/event-store.js';
import { eventJobId } from '../src/events/event-publisher.js';
import { postEvent } from '../src/events/post-event.js';
import type { Windfall } from '../src/runtime/windfall.js';
import { useTestEnvironment } from './support/environment.js';
import { eventually, runCli, startCli } from './support/cli.js';
import { waitForBatchDone } from './support/batches.js';
import { startReceiver, verifyAsReceiver, type WebhookReceiver } from './support/webhook-receiver.js';
import { startServe } from './support/serve.js';

const env = useTestEnvironment();
const SECRET = 'whsec-test-0123456789abcdef-0123456789';
/** Fast retries for tests; the production schedule is tested on its own below. */
const FAST_BACKOFF = { firstMs: 50, capMs: 200, maxAgeMs: DEFAULT_DELIVERY_BACKOFF.maxAgeMs };

const receivers: WebhookReceiver[] = [];
afterEach(async () => {
  for (const receiver of receivers.splice(0)) await receiver.close();
});

async function receiver(): Promise<WebhookReceiver> {
  const started = await startReceiver(SECRET);
  receivers.push(started);
  return started;
}

interface Delivery {
  id: string;
  type: string;
  batchId: string;
  state: string;
  attempts: number;
  lastError: string | null;
  lastAttemptAt: string | null;
  createdAt: string;
  deliveredAt: string | null;
}

/** `windfall events --json …` through the CLI, as operators see it. */
async function eventsCli(args: string[] = []): Promise<Delivery[]> {
  const result = await runCli(['events', '--json', ...args], env.env());
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Delivery[];
}

async function eventRows(batchId: string): Promise<{ id: string; type: string; state: string; attempts: number }[]> {
  const { rows } = await env.pool.query(
    `select id, type, state, attempts from batch_events where batch_id = $1 order by type`,
    [batchId],
  );
  return rows;
}

async function storedStatus(batchId: string): Promise<string | undefined> {
  const { rows } = await env.pool.query<{ status: string }>(`select status from reward_batches where batch_id = $1`, [
    batchId,
  ]);
  return rows[0]?.status;
}

/** A Windfall whose worker settles batches and whose delivery worker sends events to `url`. */
async function windfallWithWebhook(
  url: string,
  options: { backoff?: typeof FAST_BACKOFF; timeoutMs?: number; startWorker?: boolean } = {},
): Promise<Windfall> {
  // the job lock of the SIGKILL test's workers: BullMQ's stalled check runs once per interval for the whole queue, and
  // a longer lock here would hold off the next test's check of the events queue for as long
  const overrides: Partial<WindfallConfig> = {
    webhookUrl: url,
    webhookSecret: SECRET,
    recoveryIntervalMs: 0,
    jobLockMs: 2000,
  };
  const windfall = await env.open(overrides);
  if (options.startWorker ?? true) await windfall.createWorker().start();
  await windfall.startEventDelivery({
    backoff: options.backoff ?? FAST_BACKOFF,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
  });
  return windfall;
}

async function waitForState(batchId: string, type: string, state: string): Promise<void> {
  await eventually(
    async () => (await eventRows(batchId)).some((row) => row.type === type && row.state === state),
    `the ${type} event of ${batchId} to be ${state}`,
  );
}

describe('batch events (webhooks)', () => {
  it('sends one signed batch.completed per completed batch, with the batch counts, and lists it', async () => {
    const hooks = await receiver();
    const windfall = await windfallWithWebhook(hooks.url);
    await windfall.wallet.addBalance('ev-owner', 10, { operationId: 'ev-taken' });
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'ev-a1', uid: 'ev-u1', amount: 5 },
        { rewardId: 'ev-a2', uid: 'ev-u2', amount: 6 },
        { rewardId: 'ev-a3', uid: 'ev-u3', amount: 7 },
      ],
      { batchId: 'ev-clean', campaignId: 'ev-spring' },
    );
    // ev-clean first: its ev-a1 must be applied before ev-mixed repeats it (two batches' chunks may run in any order)
    await waitForBatchDone(env.pool, 'ev-clean');
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'ev-a1', uid: 'ev-u1', amount: 5 }, // applied by ev-clean: duplicate here
        { rewardId: 'ev-taken', uid: 'ev-u4', amount: 10 }, // another user's operation id: CONFLICT, dead-lettered
        { rewardId: 'ev-b1', uid: 'ev-u5', amount: 1 },
      ],
      { batchId: 'ev-mixed' },
    );
    await waitForBatchDone(env.pool, 'ev-clean');
    await waitForBatchDone(env.pool, 'ev-mixed');
    await waitForState('ev-clean', 'batch.completed', 'delivered');
    await waitForState('ev-mixed', 'batch.completed', 'delivered');

    expect(hooks.requests).toHaveLength(2);
    for (const request of hooks.requests) {
      expect(request.verified).toBe(true);
      expect(request.signature).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    }
    const byBatch = new Map([...hooks.events.values()].map((event) => [event.data['batchId'], event]));
    expect(byBatch.get('ev-clean')).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      type: 'batch.completed',
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      data: {
        batchId: 'ev-clean',
        campaignId: 'ev-spring',
        status: 'completed',
        total: 3,
        applied: 3,
        duplicate: 0,
        deadLettered: 0,
      },
    });
    expect(byBatch.get('ev-mixed')).toMatchObject({
      type: 'batch.completed',
      data: {
        batchId: 'ev-mixed',
        campaignId: null,
        status: 'completed_with_failures',
        total: 3,
        applied: 1,
        duplicate: 1,
        deadLettered: 1,
      },
    });
    // the body's keys in the documented order
    expect(Object.keys(JSON.parse(hooks.requests[0]!.body))).toEqual(['id', 'type', 'createdAt', 'data']);

    const listed = await eventsCli();
    expect(listed.map((event) => [event.batchId, event.type, event.state, event.attempts, event.lastError])).toEqual(
      expect.arrayContaining([
        ['ev-clean', 'batch.completed', 'delivered', 1, null],
        ['ev-mixed', 'batch.completed', 'delivered', 1, null],
      ]),
    );
    expect(listed.find((event) => event.batchId === 'ev-clean')!.id).toBe(byBatch.get('ev-clean')!.id);
    expect(await eventsCli(['--batch', 'ev-mixed', '--state', 'delivered'])).toHaveLength(1);
    expect(await eventsCli(['--batch', 'ev-mixed', '--state', 'failed'])).toEqual([]);
    const human = await runCli(['events', '--batch', 'ev-clean'], env.env());
    expect(human.stdout).toMatch(/^id\s+type\s+batchId\s+state\s+attempts/m);
    expect(human.stdout).toMatch(/batch\.completed\s+ev-clean\s+delivered\s+1/);
    // and over HTTP (admin), as the CLI
    const server = await startServe(env.env({ WINDFALL_RECOVERY_INTERVAL_MS: '0' }));
    try {
      const get = (query: string, token: string) =>
        fetch(`${server.baseUrl}/v1/events${query}`, { headers: { authorization: `Bearer ${token}` } });
      const answer = await get('?batchId=ev-clean', server.adminToken);
      expect(answer.status).toBe(200);
      expect(await answer.json()).toEqual(await eventsCli(['--batch', 'ev-clean']));
      expect((await get('?state=lost', server.adminToken)).status).toBe(400);
      expect((await get('', server.apiToken)).status).toBe(403);
    } finally {
      expect(await server.stop()).toBe(0);
    }

    // a status written again (the batch went back to processing for a replay, and completed again): no second event
    await env.pool.query(`update reward_batches set status = 'processing' where batch_id = 'ev-mixed'`);
    const published: RecordedEvent[] = [];
    await refreshStoredStatus(env.pool, 'ev-mixed', { publish: async (event) => void published.push(event) });
    expect(published).toEqual([]);
    expect(await eventRows('ev-mixed')).toHaveLength(1);
    expect(await storedStatus('ev-mixed')).toBe('completed_with_failures');
  });

  it('retries after two 500 answers and delivers the same bytes on the third attempt', async () => {
    const hooks = await receiver();
    hooks.answer = (_request, index) => (index < 2 ? 500 : 200);
    const windfall = await windfallWithWebhook(hooks.url);
    await windfall.producer.enqueueRewards([{ rewardId: 'ev-r1', uid: 'ev-r-u', amount: 3 }], { batchId: 'ev-retry' });
    await waitForState('ev-retry', 'batch.completed', 'delivered');

    expect(hooks.requests).toHaveLength(3);
    expect(hooks.requests.every((request) => request.verified)).toBe(true);
    expect(new Set(hooks.requests.map((request) => request.body)).size).toBe(1);
    expect(hooks.events.size).toBe(1);
    const [event] = await eventsCli(['--batch', 'ev-retry']);
    expect(event).toMatchObject({
      type: 'batch.completed',
      state: 'delivered',
      attempts: 3,
      lastError: expect.stringContaining('HTTP 500'),
    });
    expect(event!.lastError).toContain('receiver says 500');
    expect(event!.id).toBe(hooks.requests[0]!.event!.id);
    expect(event!.deliveredAt).not.toBeNull();
  });

  it('survives a worker killed with SIGKILL mid-delivery: another worker sends the same event again, then it is delivered', async () => {
    const hooks = await receiver();
    // the first request is held open until its worker is dead; every later one is answered 200
    hooks.answer = (_request, index) => (index === 0 ? 'hold' : 200);
    const producer = await env.open();
    await producer.producer.enqueueRewards([{ rewardId: 'ev-k1', uid: 'ev-k-u', amount: 8 }], { batchId: 'ev-kill' });
    const workerEnv = env.env({
      WINDFALL_WEBHOOK_URL: hooks.url,
      WINDFALL_WEBHOOK_SECRET: SECRET,
      WINDFALL_JOB_LOCK_MS: '2000',
      WINDFALL_RECOVERY_INTERVAL_MS: '0',
    });

    const victim = startCli(['worker'], workerEnv);
    await eventually(() => hooks.requests.length >= 1, 'the receiver to see the first delivery request');
    victim.child.kill('SIGKILL');
    expect(await victim.exited).toBe('SIGKILL');
    const [pending] = await eventRows('ev-kill');
    expect(pending).toMatchObject({ type: 'batch.completed', state: 'pending', attempts: 1 });

    const survivor = startCli(['worker'], workerEnv);
    await waitForState('ev-kill', 'batch.completed', 'delivered');
    survivor.child.kill('SIGTERM');
    expect(await survivor.exited, survivor.output()).toBe(0);

    expect(hooks.requests).toHaveLength(2);
    expect(hooks.requests.every((request) => request.verified)).toBe(true);
    expect(hooks.requests[1]!.event!.id).toBe(hooks.requests[0]!.event!.id);
    expect(hooks.requests[1]!.body).toBe(hooks.requests[0]!.body);
    expect(hooks.events.size).toBe(1);
    const [event] = await eventsCli(['--batch', 'ev-kill']);
    expect(event).toMatchObject({ id: pending!.id, state: 'delivered', attempts: 2 });
  }, 60_000);

  it('sends batch.reverted when a batch is reverted (once, however often the revert runs)', async () => {
    const hooks = await receiver();
    const windfall = await windfallWithWebhook(hooks.url);
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'ev-v1', uid: 'ev-v-u1', amount: 4 },
        { rewardId: 'ev-v2', uid: 'ev-v-u2', amount: 9 },
      ],
      { batchId: 'ev-revert' },
    );
    await waitForState('ev-revert', 'batch.completed', 'delivered');
    const cliEnv = env.env({ WINDFALL_WEBHOOK_URL: hooks.url, WINDFALL_WEBHOOK_SECRET: SECRET });
    const reverted = await runCli(['batch', 'revert', 'ev-revert', '--yes', '--json'], cliEnv);
    expect(reverted.code, reverted.stderr).toBe(0);
    await waitForState('ev-revert', 'batch.reverted', 'delivered');
    const again = await runCli(['batch', 'revert', 'ev-revert', '--yes', '--json'], cliEnv);
    expect(again.code, again.stderr).toBe(0);

    expect(await eventRows('ev-revert')).toMatchObject([
      { type: 'batch.completed', state: 'delivered' },
      { type: 'batch.reverted', state: 'delivered', attempts: 1 },
    ]);
    const revertEvents = [...hooks.events.values()].filter((event) => event.type === 'batch.reverted');
    expect(revertEvents).toHaveLength(1);
    expect(revertEvents[0]!.data).toEqual({
      batchId: 'ev-revert',
      campaignId: null,
      status: 'reverted',
      total: 2,
      applied: 2,
      duplicate: 0,
      deadLettered: 0,
      reverted: 2,
    });
    expect(hooks.requests.every((request) => request.verified)).toBe(true);
  });

  it('records and sends nothing without WINDFALL_WEBHOOK_URL', async () => {
    const windfall = await env.open({ recoveryIntervalMs: 0 });
    expect(windfall.events).toBeUndefined();
    expect(await windfall.startEventDelivery()).toBeUndefined();
    await windfall.createWorker().start();
    await windfall.producer.enqueueRewards([{ rewardId: 'ev-n1', uid: 'ev-n-u', amount: 2 }], { batchId: 'ev-none' });
    expect(await waitForBatchDone(env.pool, 'ev-none')).toMatchObject({ status: 'completed' });
    await eventually(async () => (await storedStatus('ev-none')) === 'completed', 'the stored status');
    expect(await eventRows('ev-none')).toEqual([]);
    expect(await eventsCli(['--batch', 'ev-none'])).toEqual([]);
  });

  it('re-adds the delivery of an event whose job was never added (a crash between the two), and gives up on one 24 h old', async () => {
    const hooks = await receiver();
    hooks.answer = (request) => (request.event?.data['batchId'] === 'ev-old' ? 503 : 200);
    // two settled batches whose events are recorded with their status, as if the process died before adding the jobs
    const producer = await env.open();
    for (const batchId of ['ev-orphan', 'ev-old']) {
      await producer.producer.enqueueRewards([{ rewardId: `${batchId}-1`, uid: `${batchId}-u`, amount: 1 }], {
        batchId,
      });
    }
    await producer.createWorker().start();
    for (const batchId of ['ev-orphan', 'ev-old']) {
      await waitForBatchDone(env.pool, batchId);
      // the job writes the stored status after its rewards settle: let it, or it would overwrite ours below
      await eventually(async () => (await storedStatus(batchId)) === 'completed', `the stored status of ${batchId}`);
    }
    for (const batchId of ['ev-orphan', 'ev-old']) {
      await env.pool.query(`update reward_batches set status = 'processing' where batch_id = $1`, [batchId]);
      const recorded = await writeStatusWithEvent(env.pool, {
        batchId,
        status: 'completed',
        type: 'batch.completed',
        applied: 1,
        duplicate: 0,
        deadLettered: 0,
        reverted: 0,
        onlyIfChanged: true,
      });
      expect(recorded).not.toBeNull();
    }
    await env.pool.query(`update batch_events set created_at = now() - interval '25 hours' where batch_id = 'ev-old'`);

    await windfallWithWebhook(hooks.url, { startWorker: false });
    await waitForState('ev-orphan', 'batch.completed', 'delivered');
    await waitForState('ev-old', 'batch.completed', 'failed');
    const [old] = await eventsCli(['--batch', 'ev-old']);
    expect(old).toMatchObject({
      state: 'failed',
      attempts: 1,
      lastError: expect.stringContaining('HTTP 503'),
      deliveredAt: null,
    });
    expect(await eventsCli(['--state', 'failed'])).toHaveLength(1);
    // the failed event's job ended for good: no retry is scheduled
    const job = await producer.queues.events().getJob(eventJobId(old!.id));
    expect(await job?.getState()).toBe('failed');
  });

  it('refuses a bad --state (exit 2)', async () => {
    const bad = await runCli(['events', '--state', 'lost'], env.env());
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('pending, delivered, failed');
  });
});

describe('webhook delivery attempts', () => {
  it('reports a refused connection and a receiver that does not answer in time', async () => {
    const hooks = await receiver();
    const closedPort = new URL(hooks.url).port;
    await hooks.close();
    const refused = await postEvent(`http://127.0.0.1:${closedPort}/x`, SECRET, '{}', { eventId: 'e1' });
    expect(refused).toMatchObject({ ok: false, error: expect.stringContaining('connection refused') });

    const silent = await receiver();
    silent.answer = () => 'hold';
    const timedOut = await postEvent(silent.url, SECRET, '{"a":1}', { eventId: 'e2', timeoutMs: 2000 });
    expect(timedOut).toEqual({ ok: false, error: 'no answer within 2000 ms (timeout)' });
    await eventually(() => silent.requests.length === 1, 'the receiver to have read the request');
    expect(silent.requests[0]!.verified).toBe(true);
  });

  it('signs "<t>.<body>" with HMAC-SHA256 and verifies within the tolerance', () => {
    const body = '{"id":"x"}';
    const header = signatureHeader(SECRET, body, 1_700_000_000);
    expect(header).toMatch(/^t=1700000000,v1=[0-9a-f]{64}$/);
    expect(verifyAsReceiver(SECRET, header, body, 1_700_000_000)).toBe(true);
    expect(verifySignature(SECRET, header, body, { nowSeconds: 1_700_000_299 })).toBe('ok');
    expect(verifySignature(SECRET, header, body, { nowSeconds: 1_700_000_301 })).toBe('stale');
    expect(verifySignature(SECRET, header, `${body} `, { nowSeconds: 1_700_000_000 })).toBe('mismatch');
    expect(verifySignature('other-secret', header, body, { nowSeconds: 1_700_000_000 })).toBe('mismatch');
    expect(verifySignature(SECRET, 'v1=abc', body)).toBe('malformed');
  });

  it('decodes the hex strictly: a valid signature with anything after it, or a short one, does not verify', () => {
    const body = '{"id":"x"}';
    const now = 1_700_000_000;
    const header = signatureHeader(SECRET, body, now);
    const hex = header.split('v1=')[1]!;
    // Buffer.from(…, 'hex') stops at the first non-hex character: leniently decoded, each of these would verify
    for (const v1 of [`${hex}zz`, `${hex}0`, `${hex}00`, `${hex} x`, `${hex.slice(0, 62)}zz`, `${hex}\u00e9`]) {
      const forged = `t=${now},v1=${v1}`;
      expect(verifySignature(SECRET, forged, body, { nowSeconds: now }), v1).toBe('mismatch');
      expect(verifyAsReceiver(SECRET, forged, body, now), v1).toBe(false);
    }
    // the case of the digits does not matter, and a second v1 (a secret being rotated) may be the good one
    expect(verifySignature(SECRET, `t=${now},v1=${hex.toUpperCase()}`, body, { nowSeconds: now })).toBe('ok');
    expect(verifySignature(SECRET, `t=${now},v1=${hex}zz,v1=${hex}`, body, { nowSeconds: now })).toBe('ok');
  });
});

describe('the production retry schedule', () => {
  it('waits 1 s doubling up to 1 h, and gives up when the event is 24 h old', () => {
    expect([1, 2, 3, 4, 12, 13, 20].map((n) => deliveryBackoffMs(n))).toEqual([
      1000, 2000, 4000, 8000, 2_048_000, 3_600_000, 3_600_000,
    ]);
    expect(deliveryBackoffMs(5000)).toBe(3_600_000);
    // simulate an event that never gets through: attempts until it is 24 h old
    const created = 0;
    let now = created;
    let attempts = 1;
    while (!deliveryExpired(created, now)) {
      now += nextAttemptDelayMs(attempts, created, now);
      attempts += 1;
    }
    expect(now).toBe(24 * 3_600_000);
    expect(attempts).toBe(36);
    // the last wait is cut short so that the last attempt happens at 24 h, not up to an hour later
    expect(nextAttemptDelayMs(30, created, 24 * 3_600_000 - 60_000)).toBe(60_000);
    expect(nextAttemptDelayMs(30, created, 25 * 3_600_000)).toBe(0);
  });
});

describe('webhook configuration', () => {
  const base = { REDIS_URL: 'redis://127.0.0.1:6379', DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/x' };
  it('needs a secret with a URL, and an http(s) URL', () => {
    expect(loadConfig(base)).toMatchObject({ webhookUrl: undefined, webhookSecret: undefined });
    expect(
      loadConfig({ ...base, WINDFALL_WEBHOOK_URL: 'https://hooks.example/w', WINDFALL_WEBHOOK_SECRET: SECRET }),
    ).toMatchObject({
      webhookUrl: 'https://hooks.example/w',
      webhookSecret: SECRET,
    });
    expect(() => loadConfig({ ...base, WINDFALL_WEBHOOK_URL: 'https://hooks.example/w' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base, WINDFALL_WEBHOOK_URL: 'https://hooks.example/w' })).toThrow(
      /^WINDFALL_WEBHOOK_SECRET: is required when WINDFALL_WEBHOOK_URL is set/,
    );
    expect(() =>
      loadConfig({ ...base, WINDFALL_WEBHOOK_URL: 'ftp://hooks.example/w', WINDFALL_WEBHOOK_SECRET: SECRET }),
    ).toThrow(/^WINDFALL_WEBHOOK_URL: has scheme ftp:/);
  });

  it('stops a worker started with a URL and no secret (exit 2, naming the variable)', async () => {
    const result = await runCli(['worker'], env.env({ WINDFALL_WEBHOOK_URL: 'http://127.0.0.1:9/x' }));
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('WINDFALL_WEBHOOK_SECRET');
  });
});
