import { existsSync } from 'node:fs';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, TEST_RESULTS } from './support/chromium.js';
import { useTestEnvironment } from './support/environment.js';
import { eventually } from './support/cli.js';
import { startServe, type ServeProcess } from './support/serve.js';

const env = useTestEnvironment();
let server: ServeProcess;
let browser: Browser;

beforeAll(async () => {
  browser = await launchChromium('dashboard');
  server = await startServe(env.env({ WINDFALL_JOB_ATTEMPTS: '1' }));
});
afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

describe('dashboard (Bull Board at /admin/queues)', () => {
  it('logs in with basic auth, shows every queue and the dead-letter entry, and saves a screenshot', async () => {
    // a user whose lock is held elsewhere, with no lock retries and one job attempt: dead-lettered at once
    await env.holdLock('dash-busy', 'elsewhere:9');
    const windfall = await env.open({
      rewardLockPolicy: { name: 'reward', retries: 0, initialDelayMs: 10, factor: 1, ttlMs: 5000 },
    });
    await windfall.createWorker().start();
    const accepted = await fetch(`${server.baseUrl}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.apiToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ batchId: 'dash-batch', rewards: [{ rewardId: 'dash-1', uid: 'dash-busy', amount: 77 }] }),
    });
    expect(accepted.status).toBe(202);
    await eventually(async () => (await windfall.deadLetters.list()).length === 1, 'the entry to be dead-lettered');
    const [entry] = await windfall.deadLetters.list();
    await eventually(
      async () => (await windfall.queues.deadLetters().getWaitingCount()) === 1,
      'the dead-letter queue mirror',
    );

    // without credentials, or with the API token as password, the browser is refused (a page load then fails with
    // ERR_INVALID_AUTH_CREDENTIALS, so the answers are read through the context's request API)
    const anonymous = await browser.newContext();
    const refused = await anonymous.request.get(`${server.baseUrl}/admin/queues`);
    expect(refused.status()).toBe(401);
    expect(refused.headers()['www-authenticate']).toMatch(/^Basic/);
    await anonymous.close();
    const producer = await browser.newContext({ httpCredentials: { username: 'operator', password: server.apiToken } });
    expect((await producer.request.get(`${server.baseUrl}/admin/queues`)).status()).toBe(403);
    await producer.close();

    // with the admin token as basic-auth password: the board, every shard queue and the dead-letter queue
    const context = await browser.newContext({
      httpCredentials: { username: 'operator', password: server.adminToken },
      viewport: { width: 1400, height: 900 },
    });
    try {
      const page = await context.newPage();
      const response = await page.goto(`${server.baseUrl}/admin/queues`);
      expect(response?.status()).toBe(200);
      await page.getByText('Windfall queues').first().waitFor({ timeout: 20_000 });
      for (const name of ['shard-0', 'shard-7', 'dead-letter'])
        await page.getByText(name, { exact: true }).first().waitFor({ timeout: 20_000 });

      await page.getByText('dead-letter', { exact: true }).first().click();
      await page.waitForURL(/\/admin\/queues\/queue\/dead-letter/, { timeout: 20_000 });
      await page.getByText(`dl_${entry!.id}`).first().waitFor({ timeout: 20_000 });
      await page.getByText('LOCK_BUSY').first().waitFor({ timeout: 20_000 });
      const text = await page.locator('body').innerText();
      expect(text).toContain('dash-busy');
      expect(text).toContain('dash-batch');

      const path = `${TEST_RESULTS}dashboard.png`;
      await page.screenshot({ path, fullPage: true });
      expect(existsSync(path)).toBe(true);
    } finally {
      await context.close();
    }
  }, 90_000);
});
