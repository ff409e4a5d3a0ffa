import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDeadLetter, listDeadLetters } from '../src/dead-letters/dead-letter-store.js';
import { balances, waitForBatchDone } from './support/batches.js';
import { eventually } from './support/cli.js';
import { launchChromium, TEST_RESULTS } from './support/chromium.js';
import { useTestEnvironment } from './support/environment.js';
import { startServe, type ServeProcess } from './support/serve.js';

const env = useTestEnvironment();
let server: ServeProcess;
let browser: Browser;

beforeAll(async () => {
  browser = await launchChromium('console');
  server = await startServe(env.env({ WINDFALL_JOB_ATTEMPTS: '1', WINDFALL_RECOVERY_INTERVAL_MS: '0' }));
});
afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

function operator(): Promise<BrowserContext> {
  return browser.newContext({
    httpCredentials: { username: 'operator', password: server.adminToken },
    viewport: { width: 1366, height: 900 },
  });
}

/** A batch with one user dead-lettered (its lock held elsewhere, no lock retries, one job attempt) and one applied. */
async function batchWithFailures(tag: string): Promise<void> {
  await env.holdLock(`${tag}-busy`, 'elsewhere:9');
  const windfall = await env.open({
    rewardLockPolicy: { name: 'reward', retries: 0, initialDelayMs: 10, factor: 1, ttlMs: 5000 },
    jobAttempts: 1,
  });
  await windfall.createWorker().start();
  await windfall.producer.enqueueRewards(
    [
      { rewardId: `${tag}-1`, uid: `${tag}-busy`, amount: 77 },
      { rewardId: `${tag}-2`, uid: `${tag}-ok`, amount: 5 },
    ],
    { batchId: `${tag}-batch` },
  );
  expect(await waitForBatchDone(env.pool, `${tag}-batch`)).toMatchObject({
    status: 'completed_with_failures',
    applied: 1,
    deadLettered: 1,
  });
  await env.redis.del(`${env.prefix}:lock:${tag}-busy`);
}

/** Collects what the browser reports about the Content-Security-Policy: the console's own script and style must run. */
function watchCsp(page: Page): string[] {
  const violations: string[] = [];
  page.on('console', (message) => {
    if (/content security policy/i.test(message.text())) violations.push(message.text());
  });
  page.on('pageerror', (error) => violations.push(`page error: ${error.message}`));
  return violations;
}

describe('operator console (/console)', () => {
  it("an operator's morning: a batch completed with failures, its dead letter previewed then replayed, the batch completes, the replay is in the audit trail", async () => {
    await batchWithFailures('cm');
    const context = await operator();
    const page = await context.newPage();
    // the Content-Security-Policy lets the console's own script and style run, and nothing else: a violation would be
    // reported on the browser's console
    const violations = watchCsp(page);
    const first = await page.goto(`${server.baseUrl}/console`);
    expect(first?.headers()['content-security-policy']).toMatch(/default-src 'none'; script-src 'sha256-[^']+'/);
    expect(first?.headers()['x-content-type-options']).toBe('nosniff');
    // the stylesheet applies (allowed by its hash)
    // (the browser's own function, as text: the tests are type-checked without the DOM's types)
    expect(await page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor")).toBe(
      'rgb(29, 36, 48)',
    );
    await page.fill('#actor', 'alice');
    await page.dispatchEvent('#actor', 'change');
    const row = page.locator('tr', { hasText: 'cm-batch' });
    await expect(row.textContent()).resolves.toContain('completed_with_failures');
    // the status filter lists the batch under its own status only
    await page.goto(`${server.baseUrl}/console/batches?status=completed_with_failures`);
    expect(await page.locator('main').textContent()).toContain('cm-batch');
    await page.goto(`${server.baseUrl}/console/batches?status=completed`);
    expect(await page.locator('main').textContent()).not.toContain('cm-batch');
    await page.goto(`${server.baseUrl}/console/batches`);
    await page.click('a:text("cm-batch")');
    await page.locator('input[name=entry]').first().check();
    const replay = page.locator('form[data-action$="/actions/replay"]');
    await replay.locator('button[data-mode=preview]').click();
    await eventually(
      async () => (await replay.locator('output').textContent())?.includes('nothing changed yet') === true,
      'the replay preview',
    );
    expect(await replay.locator('output').textContent()).toContain('"dryRun": true');
    // the preview changed nothing
    const [entry] = await listDeadLetters(env.pool, { batchId: 'cm-batch', state: 'any' });
    expect((await getDeadLetter(env.pool, entry!.id))?.state).toBe('open');
    expect(await replay.locator('output p').textContent()).toBe(
      'Preview, nothing changed yet: Would replay 1 entry, 1 reward.',
    );
    await page.screenshot({ path: `${TEST_RESULTS}console-batch.png`, fullPage: true });
    // the page is not reloaded: what the script keeps on it stays, and the figures change in place
    await page.evaluate('window.kept = 42');
    expect(await page.locator('[data-live=batch]').textContent()).toMatch(/statuscompleted_with_failures/);
    await replay.locator('button[data-mode=confirm]').click();
    // the answer in words, then the batch's status once the worker has applied the replayed reward
    await eventually(
      async () =>
        (await replay.locator('output p').textContent()) === 'Replayed 1 entry, 1 reward; the batch is completed.',
      'the replay, in words',
    );
    expect(await page.locator('[data-live=batch]').getAttribute('data-batch-status')).toBe('completed');
    const figures = await page.locator('[data-live=batch]').textContent();
    expect(figures).toMatch(/statuscompleted(?!_)/);
    expect(figures).toMatch(/applied2/);
    expect(figures).toMatch(/dead-lettered0/);
    expect(await page.locator('[data-live=dead-letters] tbody tr').first().textContent()).toContain('replayed');
    expect(await page.evaluate('window.kept')).toBe(42);
    // the raw answer is one click away
    expect(await replay.locator('output details pre').textContent()).toContain('"replayedCount": 1');
    await page.screenshot({ path: `${TEST_RESULTS}console-batch-replayed.png`, fullPage: true });
    expect(await waitForBatchDone(env.pool, 'cm-batch')).toMatchObject({ status: 'completed', applied: 2 });
    expect((await balances(env.pool)).get('cm-busy')).toBe(77n);
    await page.goto(`${server.baseUrl}/console/batches`);
    await eventually(
      async () => ((await page.locator('tr', { hasText: 'cm-batch' }).textContent()) ?? '').includes('completed'),
      'the batch to show completed',
    );
    await page.goto(`${server.baseUrl}/console/audit?action=dlq.replay`);
    const audit = await page.locator('main table').textContent();
    expect(audit).toContain('http:console@127.0.0.1 as alice');
    expect(audit).toContain(`dead-letters:${entry!.id}`);
    await page.screenshot({ path: `${TEST_RESULTS}console-audit.png`, fullPage: true });
    expect(violations).toEqual([]);
    await context.close();
  });

  it('pages through dead letters 50 at a time, with the rewards counted but not loaded', async () => {
    await env.pool.query(
      `insert into dead_letters (source, batch_id, chunk_no, uid, shard, rewards, reward_count, amount, reason, error, attempts)
       select 'cpg:' || g, 'cpg-batch', 0, 'cpg-u' || g, 0,
              (select jsonb_agg(jsonb_build_object('rewardId', 'cpg-r' || g || '-' || k, 'uid', 'cpg-u' || g, 'amount', '4'))
               from generate_series(1, 150) k),
              150, 600, 'UNKNOWN', 'unknown (test)', 1
       from generate_series(1, 120) g`,
    );
    const context = await operator();
    const page = await context.newPage();
    const violations = watchCsp(page);
    const seen: string[] = [];
    await page.goto(`${server.baseUrl}/console/dead-letters?batchId=cpg-batch&reason=UNKNOWN`);
    for (const expected of [50, 50, 20]) {
      const rows = page.locator('main table tbody tr');
      expect(await rows.count()).toBe(expected);
      seen.push(...(await rows.locator('td:nth-child(4)').allTextContents()));
      expect(await rows.first().textContent()).toMatch(/cpg-u\d+\s*150\s*600\s*UNKNOWN/);
      const next = page.locator('nav.pager a', { hasText: 'Next page' });
      if (expected < 50) {
        expect(await next.count()).toBe(0);
        break;
      }
      await next.click();
      expect(await page.locator('nav.pager a', { hasText: 'First page' }).count()).toBe(1);
    }
    expect(new Set(seen).size).toBe(120);
    // an entry's page lists its first 100 rewards and links to the rest
    await page.locator('main table tbody tr a').first().click();
    expect(await page.locator('main table').nth(1).locator('tbody tr').count()).toBe(100);
    await page.click('a:text("Show all")');
    expect(await page.locator('main table').nth(1).locator('tbody tr').count()).toBe(150);
    expect(violations).toEqual([]);
    await context.close();
  });

  it('cuts long audit results before escaping them: never inside an entity', async () => {
    // a foreign lock whose value is markup: the force release records it as the previous holder
    await env.redis.set(`${env.prefix}:lock:ce-held`, '<&>"\''.repeat(200), 'PX', 60_000);
    const windfall = await env.open();
    await windfall.wallet.forceReleaseLock('ce-held', { actor: 'test', reason: '&<'.repeat(300) });
    const context = await operator();
    const response = await context.request.get(`${server.baseUrl}/console/audit?action=lock.force_release`);
    expect(response.headers()['content-security-policy']).toContain("default-src 'none'");
    const html = await response.text();
    const row = /<tr>(?:(?!<\/tr>).)*uid:ce-held(?:(?!<\/tr>).)*<\/tr>/s.exec(html)?.[0] ?? '';
    expect(row).toContain('&lt;&amp;&gt;\\&quot;&#39;');
    // every & starts a whole entity, and no markup of the value got through
    expect(row.match(/&(?!(?:amp|lt|gt|quot|#39);)/g)).toBeNull();
    const cells = [...row.matchAll(/<code>(.*?)<\/code>/gs)].map((match) => match[1]!);
    expect(cells.length).toBe(2);
    for (const cell of cells) {
      expect(cell).not.toMatch(/[<>"']/);
      expect(cell.endsWith('…')).toBe(true);
    }
    await context.close();
  });

  it('force-releases a lock with a reason and reverts a batch from the console (each previewed first)', async () => {
    await env.holdLock('cl-held', 'hung-host:4');
    const windfall = await env.open();
    await windfall.createWorker().start();
    await windfall.producer.enqueueRewards([{ rewardId: 'cr-1', uid: 'cr-u', amount: 40 }], { batchId: 'cr-batch' });
    await waitForBatchDone(env.pool, 'cr-batch');
    const context = await operator();
    const page = await context.newPage();
    const violations = watchCsp(page);
    await page.goto(`${server.baseUrl}/console/locks?uid=cl-held`);
    expect(await page.locator('main table').textContent()).toContain('hung-host:4');
    const release = page.locator('form[data-action$="/actions/lock-release"]');
    await release.locator('input[data-field=reason]').fill('holder hung since 03:00');
    await release.locator('button[data-mode=preview]').click();
    await eventually(
      async () => (await release.locator('output').textContent())?.includes('nothing changed yet') === true,
      'the release preview',
    );
    expect(await env.redis.exists(`${env.prefix}:lock:cl-held`)).toBe(1);
    await release.locator('button[data-mode=confirm]').click();
    await eventually(
      async () => (await env.redis.exists(`${env.prefix}:lock:cl-held`)) === 0,
      'the lock to be released',
    );
    await eventually(
      async () =>
        (await release.locator('output p').textContent()) === 'Released the lock of cl-held (held by hung-host:4).',
      'the release, in words',
    );
    expect(await page.locator('[data-live=lock]').textContent()).toMatch(/lockedno/);

    await page.goto(`${server.baseUrl}/console/batches/cr-batch`);
    const revert = page.locator('form[data-action$="/actions/revert"]');
    await revert.locator('input[data-field=reason]').fill('sent twice');
    await revert.locator('button[data-mode=preview]').click();
    await eventually(
      async () => (await revert.locator('output').textContent())?.includes('nothing changed yet') === true,
      'the revert preview',
    );
    expect((await balances(env.pool)).get('cr-u')).toBe(40n);
    expect(await revert.locator('output p').textContent()).toBe(
      'Preview, nothing changed yet: Would revert 1 reward; the batch would be reverted.',
    );
    await revert.locator('button[data-mode=confirm]').click();
    await eventually(async () => (await balances(env.pool)).get('cr-u') === 0n, 'the revert');
    await eventually(
      async () => (await revert.locator('output p').textContent()) === 'Reverted 1 reward; the batch is reverted.',
      'the revert, in words',
    );
    expect(await page.locator('[data-live=batch]').textContent()).toMatch(/reverted1/);
    // the revert writes its audit record once its debits are in: wait for the run to finish, not only for the money
    await eventually(
      async () =>
        (await env.pool.query(`select 1 from audit_log where action = 'batch.revert' and target = 'batch:cr-batch'`))
          .rowCount === 1,
      "the revert's audit record",
    );
    await page.goto(`${server.baseUrl}/console/audit`);
    const audit = await page.locator('main table').textContent();
    expect(audit).toContain('lock.force_release');
    expect(audit).toContain('holder hung since 03:00');
    expect(audit).toContain('batch.revert');
    expect(audit).toContain('batch:cr-batch');
    expect(violations).toEqual([]);
    await context.close();
  });

  it('cancels a batch in flight from its page (previewed first): the page shows it cancelled without a reload', async () => {
    // no worker: nothing of the batch settles, so both rewards are in flight when it is cancelled
    const windfall = await env.open();
    await windfall.producer.enqueueRewards(
      [
        { rewardId: 'cc-1', uid: 'cc-u1', amount: 3 },
        { rewardId: 'cc-2', uid: 'cc-u2', amount: 4 },
      ],
      { batchId: 'cc-batch' },
    );
    const context = await operator();
    const page = await context.newPage();
    const violations = watchCsp(page);
    await page.goto(`${server.baseUrl}/console/batches/cc-batch`);
    let loads = 0;
    page.on('load', () => (loads += 1));
    const cancel = page.locator('form[data-action$="/actions/cancel"]');
    await cancel.locator('input[data-field=reason]').fill('wrong audience');
    await cancel.locator('button[data-mode=preview]').click();
    await eventually(
      async () => (await cancel.locator('output').textContent())?.includes('Would cancel 2 rewards') === true,
      'the cancel preview',
    );
    expect(
      (await env.pool.query(`select cancelled_at from reward_batches where batch_id = 'cc-batch'`)).rows[0],
    ).toEqual({
      cancelled_at: null,
    });
    await cancel.locator('button[data-mode=confirm]').click();
    await eventually(
      async () =>
        (await cancel.locator('output p').textContent()) ===
        'Cancelled 2 rewards not settled yet; 0 applied rewards stay; the batch is cancelled.',
      'the cancel, in words',
    );
    await eventually(
      async () => /statuscancelled/.test((await page.locator('[data-live=batch]').textContent()) ?? ''),
      'the page to show the batch cancelled',
    );
    expect(await page.locator('[data-live=batch]').textContent()).toMatch(/cancelled2/);
    expect(loads).toBe(0);
    await page.screenshot({ path: `${TEST_RESULTS}/console-batch-cancelled.png`, fullPage: true });
    expect(violations).toEqual([]);
    await context.close();
  });

  it('purges a selected entry from the dead-letters page, exactly once, and the purge is audited', async () => {
    await batchWithFailures('cp');
    const [entry] = await listDeadLetters(env.pool, { batchId: 'cp-batch' });
    const context = await operator();
    const page = await context.newPage();
    const violations = watchCsp(page);
    await page.goto(`${server.baseUrl}/console/dead-letters?batchId=cp-batch&reason=LOCK_BUSY`);
    await page.check(`input[name=entry][value="${entry!.id}"]`);
    const purge = page.locator('form[data-action$="/actions/purge"]');
    await purge.locator('button[data-mode=preview]').click();
    await eventually(
      async () => (await purge.locator('output').textContent())?.includes('nothing changed yet') === true,
      'the purge preview',
    );
    expect((await getDeadLetter(env.pool, entry!.id))?.state).toBe('open');
    // keyboard: the confirm button has the focus after a preview
    await page.keyboard.press('Enter');
    await eventually(async () => (await getDeadLetter(env.pool, entry!.id))?.state === 'purged', 'the purge');
    const records = await env.pool.query(`select actor, action from audit_log where target = $1`, [
      `dead-letters:${entry!.id}`,
    ]);
    expect(records.rows).toEqual([{ actor: 'http:console@127.0.0.1', action: 'dlq.purge' }]);
    // the entry's own page: its rewards, error and attempts, and no action any more
    await page.goto(`${server.baseUrl}/console/dead-letters/${entry!.id}`);
    const text = await page.locator('main').textContent();
    expect(text).toContain('cp-1');
    expect(text).toContain('LOCK_BUSY');
    expect(text).toContain('This entry is purged.');
    expect(await page.locator('form[data-action]').count()).toBe(0);
    expect((await waitForBatchDone(env.pool, 'cp-batch')).status).toBe('completed_with_failures');
    expect(violations).toEqual([]);
    await context.close();
  });

  it('pages batches 50 at a time and finds one by id, by the start of its id, by rewardId and by uid', async () => {
    await batchWithFailures('cs');
    // 120 more batches, one a second apart, newest last
    await env.pool.query(
      `insert into reward_batches (batch_id, status, total, users, chunks, shards, content_digest, created_at)
       select 'pg-' || lpad(g::text, 3, '0'), 'completed', 0, 0, 0, 8, 'x', now() - interval '1 day' + g * interval '1 second'
       from generate_series(1, 120) g`,
    );
    const context = await operator();
    const page = await context.newPage();
    const violations = watchCsp(page);
    // the search and the status filter stay on every page
    await page.goto(`${server.baseUrl}/console/batches?by=batch&q=pg-&status=completed`);
    const seen: string[] = [];
    for (const expected of [50, 50, 20]) {
      const rows = page.locator('[data-live=batches] tbody tr');
      expect(await rows.count()).toBe(expected);
      seen.push(...(await rows.locator('td:first-child').allTextContents()));
      const next = page.locator('nav.pager a', { hasText: 'Next page' });
      if (expected < 50) {
        expect(await next.count()).toBe(0);
        break;
      }
      await next.click();
    }
    expect(seen).toEqual(Array.from({ length: 120 }, (_, n) => `pg-${String(120 - n).padStart(3, '0')}`));

    const searchFor = async (by: string, text: string): Promise<string[]> => {
      await page.goto(`${server.baseUrl}/console/batches`);
      await page.selectOption('select[name=by]', by);
      await page.fill('input[name=q]', text);
      await page.click('form[role=search] button');
      return page.locator('[data-live=batches] tbody tr td:first-child').allTextContents();
    };
    expect(await searchFor('batch', 'cs-batch')).toEqual(['cs-batch']);
    expect(await searchFor('batch', 'pg-11')).toEqual([
      'pg-119',
      'pg-118',
      'pg-117',
      'pg-116',
      'pg-115',
      'pg-114',
      'pg-113',
      'pg-112',
      'pg-111',
      'pg-110',
    ]);
    expect(await searchFor('batch', 'pg_')).toEqual([]); // a LIKE wildcard is a character like any other
    expect(await searchFor('reward', 'cs-2')).toEqual(['cs-batch']);
    // the user applied (ledger) and the user dead-lettered (entry) both find it
    expect(await searchFor('uid', 'cs-ok')).toEqual(['cs-batch']);
    expect(await searchFor('uid', 'cs-busy')).toEqual(['cs-batch']);
    expect(await page.locator('main').textContent()).toContain('search by its rewardId');
    expect(await searchFor('uid', 'nobody')).toEqual([]);
    expect(await page.locator('main').textContent()).toContain('No batch found by uid "nobody"');
    await page.screenshot({ path: `${TEST_RESULTS}console-batches-search.png`, fullPage: true });
    expect(violations).toEqual([]);
    await context.close();
  });

  it('finds dead-letter entries by uid and by rewardId, and audit records by a word of their target or actor', async () => {
    await batchWithFailures('cd');
    const [entry] = await listDeadLetters(env.pool, { batchId: 'cd-batch' });
    const windfall = await env.open();
    await windfall.deadLetters.purge({ ids: [entry!.id] }, { actor: 'http:console@127.0.0.1 as Dora' });
    const context = await operator();
    const page = await context.newPage();
    const violations = watchCsp(page);
    await page.goto(`${server.baseUrl}/console/dead-letters`);
    await page.fill('input[name=uid]', 'cd-busy');
    await page.selectOption('select[name=state]', 'any');
    await page.click('form[role=search] button');
    const rows = page.locator('[data-live=dead-letters] tbody tr');
    expect(await rows.count()).toBe(1);
    expect(await rows.first().textContent()).toMatch(/cd-batch\s*cd-busy\s*1\s*77\s*LOCK_BUSY\s*purged/);
    await page.goto(`${server.baseUrl}/console/dead-letters?state=any&rewardId=cd-1`);
    expect(await rows.locator('td:nth-child(2)').allTextContents()).toEqual([entry!.id]);
    await page.goto(`${server.baseUrl}/console/dead-letters?state=any&rewardId=cd-2`);
    expect(await rows.count()).toBe(0);
    await page.goto(`${server.baseUrl}/console/dead-letters?state=any&uid=cd-ok`);
    expect(await rows.count()).toBe(0);

    await page.goto(`${server.baseUrl}/console/audit`);
    await page.fill('input[name=q]', 'dora');
    await page.click('form[role=search] button');
    const records = page.locator('main table tbody tr');
    expect(await records.count()).toBe(1);
    expect(await records.first().textContent()).toContain(`dead-letters:${entry!.id}`);
    await page.fill('input[name=q]', `dead-letters:${entry!.id}`);
    await page.click('form[role=search] button');
    expect(await records.count()).toBe(1);
    await page.fill('input[name=q]', '%');
    await page.click('form[role=search] button');
    expect(await page.locator('main').textContent()).toContain('No records.');
    expect(violations).toEqual([]);
    await context.close();
  });

  it('looks up a reward: its state, batch, user, amount, ledger or dead-letter entry, and every batch holding it', async () => {
    await batchWithFailures('cw');
    const windfall = await env.open();
    await windfall.createWorker().start();
    await windfall.producer.enqueueRewards([{ rewardId: 'cw-2', uid: 'cw-ok', amount: 5 }], { batchId: 'cw-again' });
    await waitForBatchDone(env.pool, 'cw-again');
    const [entry] = await listDeadLetters(env.pool, { batchId: 'cw-batch' });
    const context = await operator();
    const page = await context.newPage();
    const violations = watchCsp(page);
    await page.goto(`${server.baseUrl}/console/batches`);
    await page.click('header a:text("Rewards")');
    await page.fill('input[name=rewardId]', 'cw-1');
    await page.click('form[role=search] button');
    const fields = page.locator('[data-live=reward]');
    expect(await fields.locator('[data-reward-state]').getAttribute('data-reward-state')).toBe('dead_lettered');
    expect(await fields.textContent()).toMatch(/batchcw-batch/);
    expect(await fields.textContent()).toMatch(/uidcw-busy/);
    expect(await fields.textContent()).toMatch(/amount77/);
    expect(await fields.textContent()).toContain(`${entry!.id} (LOCK_BUSY)`);
    // its entry's page links back to it
    await page.click(`[data-live=reward] a:text("${entry!.id}")`);
    await page.click('main table a:text("cw-1")');
    expect(await page.locator('h1').textContent()).toBe('Reward cw-1');

    await page.goto(`${server.baseUrl}/console/rewards?rewardId=cw-2`);
    expect(await page.locator('[data-reward-state]').getAttribute('data-reward-state')).toBe('applied');
    expect(await page.locator('main table tbody tr').allTextContents()).toEqual([
      'cw-batchapplied',
      'cw-againduplicate',
    ]);
    await page.screenshot({ path: `${TEST_RESULTS}console-reward.png`, fullPage: true });

    const unknown = await page.goto(`${server.baseUrl}/console/rewards?rewardId=cw-none`);
    expect(unknown?.status()).toBe(404);
    expect(await page.locator('main').textContent()).toContain('no batch holds rewardId "cw-none"');
    expect(violations).toEqual([]);
    await context.close();
  });

  it('refuses without the admin credentials (401), with the API token (403), and cross-site requests or requests without its marker change nothing', async () => {
    const anonymous = await browser.newContext();
    const refused = await anonymous.request.get(`${server.baseUrl}/console/batches`);
    expect(refused.status()).toBe(401);
    expect(refused.headers()['www-authenticate']).toMatch(/^Basic/);
    await anonymous.close();
    const producer = await browser.newContext({ httpCredentials: { username: 'operator', password: server.apiToken } });
    expect((await producer.request.get(`${server.baseUrl}/console/batches`)).status()).toBe(403);
    await producer.close();

    await batchWithFailures('cx');
    const [entry] = await listDeadLetters(env.pool, { batchId: 'cx-batch' });
    const context = await operator();
    // a plain request with the credentials but without the console's marker
    const plain = await context.request.post(`${server.baseUrl}/console/actions/purge`, {
      data: { ids: [entry!.id], dryRun: false },
    });
    expect(plain.status()).toBe(403);
    // a form on another site, posted by a browser that has the basic-auth credentials
    const evil: Server = createServer((_request, response) => {
      response.setHeader('content-type', 'text/html');
      response.end(`<form id="f" method="post" action="${server.baseUrl}/console/actions/purge" enctype="text/plain"><input name='{"ids":["${entry!.id}"],"dryRun":false,"x":"' value='"}'></form>
<script>fetch(${JSON.stringify(`${server.baseUrl}/console/actions/replay`)}, {method: 'POST', credentials: 'include', headers: {'content-type': 'application/json', 'x-windfall-console': '1'}, body: JSON.stringify({ids: [${JSON.stringify(entry!.id)}], dryRun: false})}).catch(() => {}).finally(() => document.getElementById('f').submit());</script>`);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.2', resolve));
    try {
      const page = await context.newPage();
      const posted = page
        .waitForResponse((response) => response.url().endsWith('/console/actions/purge'), { timeout: 15_000 })
        .catch(() => null);
      await page.goto(`http://127.0.0.2:${(evil.address() as AddressInfo).port}/`);
      const answer = await posted;
      expect(answer?.status()).toBe(403);
    } finally {
      evil.close();
    }
    expect((await getDeadLetter(env.pool, entry!.id))?.state).toBe('open');
    const trail = await env.pool.query(`select 1 from audit_log where target = $1`, [`dead-letters:${entry!.id}`]);
    expect(trail.rowCount).toBe(0);
    await context.close();
  });
});
