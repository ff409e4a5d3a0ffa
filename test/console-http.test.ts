/**
 * The operator console's pages and actions over plain HTTP (the browser lane drives them in Chromium): each reads
 * its query, path or body as its route declares them, and answers what it understood.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useTestEnvironment } from './support/environment.js';
import { startServe, type ServeProcess } from './support/serve.js';

const env = useTestEnvironment();
let server: ServeProcess;
beforeAll(async () => {
  server = await startServe(env.env());
});
afterAll(async () => {
  await server?.stop();
});

async function page(path: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`${server.baseUrl}${path}`, {
    headers: { authorization: `Bearer ${server.adminToken}` },
  });
  return { status: response.status, text: await response.text() };
}

async function action(name: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${server.baseUrl}/console/actions/${name}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${server.adminToken}`,
      'content-type': 'application/json',
      'x-windfall-console': '1',
    },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

describe('console over HTTP', () => {
  it('pages read their path and query', async () => {
    const batches = await page('/console/batches?status=completed&by=uid&q=%20nobody%20');
    expect(batches.status).toBe(200);
    expect(batches.text).toContain('<option selected>completed</option>');
    expect(batches.text).toContain('value="nobody"');
    expect((await page('/console/batches/no-such-batch?after=12')).status).toBe(404);
    const deadLetters = await page('/console/dead-letters?reason=LOCK_BUSY&state=any&batchId=%20b1%20');
    expect(deadLetters.status).toBe(200);
    expect(deadLetters.text).toContain('<option selected>LOCK_BUSY</option>');
    expect(deadLetters.text).toContain('name="batchId" value="b1"');
    const entry = await page('/console/dead-letters/999999?rewards=5');
    expect(entry.status).toBe(404);
    expect(entry.text).toContain('No dead-letter entry has id 999999.');
    expect((await page('/console/rewards?rewardId=%20missing-reward%20')).status).toBe(404);
    const lock = await page('/console/locks?uid=console-http-user');
    expect(lock.status).toBe(200);
    expect(lock.text).toContain('Lock of console-http-user');
    const audit = await page('/console/audit?action=lock_release&target=uid:x&q=%20someone%20');
    expect(audit.status).toBe(200);
    expect(audit.text).toContain('value="someone"');
  });

  it('actions read their body, or answer 400 saying what is missing', async () => {
    expect(await action('replay', {})).toEqual({
      status: 400,
      json: { error: 'invalid request', message: 'select at least one entry' },
    });
    expect((await action('purge', { ids: ['12', 'x'] })).json['message']).toBe('entry ids are whole numbers');
    const preview = await action('replay', { ids: ['999999'] });
    expect(preview.status).toBe(200);
    expect(preview.json).toMatchObject({ dryRun: true, replayedCount: 0, skippedCount: 1 });
    expect((await action('lock-release', { reason: 'no uid' })).json['message']).toBe('uid is required');
    const lock = await action('lock-release', { uid: 'console-http-user' });
    expect(lock.json).toMatchObject({ dryRun: true, uid: 'console-http-user', wouldRelease: { locked: false } });
    expect((await action('lock-release', { uid: 'console-http-user', dryRun: false })).status).toBe(400);
    for (const name of ['cancel', 'revert']) {
      expect((await action(name, { reason: 'no batch' })).json['message']).toBe('batchId is required');
      expect((await action(name, { batchId: 'no-such-batch', dryRun: name === 'cancel' })).status).toBe(404);
    }
  });
});
