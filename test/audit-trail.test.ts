import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getDeadLetter } from '../src/dead-letters/dead-letter-store.js';
import { recordDeadLetters } from './support/dead-letter-fixtures.js';
import { runCli } from './support/cli.js';
import { useTestEnvironment } from './support/environment.js';
import { buildHttpServer } from '../src/http/server.js';
import { randomToken, startServe, type ServeProcess } from './support/serve.js';

const env = useTestEnvironment();
let server: ServeProcess;

beforeAll(async () => {
  server = await startServe(env.env({ WINDFALL_RECOVERY_INTERVAL_MS: '0' }));
});
afterAll(async () => {
  await server?.stop();
});

interface Audit {
  id: string;
  at: string;
  actor: string;
  action: string;
  target: string;
  details: Record<string, unknown>;
  result: Record<string, unknown>;
}

/** Open dead-letter entries of a batch that does not exist (their replays credit nothing: enough to audit). */
async function deadLetters(tag: string, count: number): Promise<string[]> {
  const entries = await recordDeadLetters(
    env.pool,
    Array.from({ length: count }, (_, n) => ({
      source: `${tag}-${n}`,
      batchId: `${tag}-batch`,
      chunkNo: 0,
      replayOf: null,
      uid: `${tag}-u${n}`,
      shard: 0,
      rewards: [{ rewardId: `${tag}-r${n}`, uid: `${tag}-u${n}`, amount: 5n, description: null }],
      reason: 'LOCK_BUSY' as const,
      error: 'lock busy',
      attempts: 3,
    })),
  );
  return entries.map((entry) => entry.id);
}

async function audit(args: string[] = []): Promise<Audit[]> {
  const result = await runCli(['audit', '--json', ...args], env.env());
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as Audit[];
}

async function http(
  method: string,
  path: string,
  token: string,
  headers: Record<string, string> = {},
  body?: object,
): Promise<{ status: number; body: any }> {
  const response = await fetch(`${server.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: response.status, body: await response.json() };
}

describe('the audit trail', () => {
  it('records CLI force release, replay and purge with their actor, target and result; dry runs are not actions', async () => {
    const [purgeId, replayId] = await deadLetters('au', 2);
    await env.redis.set(
      `${env.prefix}:lock:au-held`,
      JSON.stringify({ owner: 'other-host:1', acquiredAt: '2026-01-02T03:04:05.000Z', token: 't' }),
      'PX',
      60_000,
    );

    expect((await runCli(['dlq', 'purge', purgeId!, '--dry-run'], env.env())).code).toBe(0);
    expect((await runCli(['dlq', 'replay', replayId!, '--dry-run'], env.env())).code).toBe(0);
    expect(await audit()).toEqual([]);

    const purge = await runCli(['dlq', 'purge', purgeId!, '--yes', '--actor', 'alice'], env.env());
    expect(purge.code, purge.stderr).toBe(0);
    const replay = await runCli(['dlq', 'replay', replayId!], env.env());
    expect(replay.code, replay.stderr).toBe(0);
    const release = await runCli(['lock', 'release', 'au-held', '--force', '--actor', 'bob'], env.env());
    expect(release.code, release.stderr).toBe(0);

    const records = await audit();
    expect(records.map((record) => [record.action, record.actor, record.target])).toEqual([
      ['lock.force_release', 'bob', 'uid:au-held'],
      ['dlq.replay', expect.stringMatching(/^cli:[^@]+@.+$/), `dead-letters:${replayId}`],
      ['dlq.purge', 'alice', `dead-letters:${purgeId}`],
    ]);
    expect(records[0]!.result).toMatchObject({ released: true, previous: { owner: 'other-host:1' } });
    expect(records[1]!.result).toEqual({
      replayedCount: 1,
      rewardCount: 1,
      replayed: [replayId],
      skippedCount: 0,
      skipped: [],
    });
    expect(records[2]!.result).toEqual({ count: 1, purged: [purgeId] });
    expect(records[2]!.details).toEqual({ filter: { ids: [purgeId] } });
    expect(Number(records[0]!.id)).toBeGreaterThan(Number(records[2]!.id));

    // filters: by action, by target, newest first, limited
    expect((await audit(['--action', 'dlq.purge'])).map((record) => record.id)).toEqual([records[2]!.id]);
    expect((await audit(['--target', 'uid:au-held'])).map((record) => record.action)).toEqual(['lock.force_release']);
    expect(await audit(['--limit', '1'])).toHaveLength(1);
    const badAction = await runCli(['audit', '--action', 'dlq.delete'], env.env());
    expect(badAction.code).toBe(2);
  });

  it('records HTTP actions with the token kind, client address and X-Windfall-Actor; GET /v1/audit is for the admin token only', async () => {
    const [id] = await deadLetters('ah', 1);
    await env.redis.set(
      `${env.prefix}:lock:ah-held`,
      JSON.stringify({ owner: 'other-host:2', acquiredAt: '2026-01-02T03:04:05.000Z', token: 't' }),
      'PX',
      60_000,
    );
    const released = await http('DELETE', '/v1/locks/ah-held', server.adminToken, { 'x-windfall-actor': 'carol' });
    expect(released.status).toBe(200);
    const replayed = await http('POST', '/v1/dead-letters/replay', server.adminToken, {}, { ids: [id] });
    expect(replayed.status).toBe(200);

    const trail = await http('GET', '/v1/audit?limit=2', server.adminToken);
    expect(trail.status).toBe(200);
    expect(trail.body.map((record: Audit) => [record.action, record.actor, record.target])).toEqual([
      ['dlq.replay', 'http:admin@127.0.0.1', `dead-letters:${id}`],
      ['lock.force_release', 'http:admin@127.0.0.1 as carol', 'uid:ah-held'],
    ]);
    // the same records as the CLI reads
    expect((await audit(['--limit', '2'])).map((record) => record.id)).toEqual(
      trail.body.map((record: Audit) => record.id),
    );
    expect((await http('GET', '/v1/audit', server.apiToken)).status).toBe(403);
    expect((await http('GET', '/v1/audit?action=nope', server.adminToken)).status).toBe(400);
  });

  it('takes the client address a trusted proxy forwards (WINDFALL_TRUST_PROXY), and ignores the header otherwise', async () => {
    const forceRelease = async (trustProxy: boolean | readonly string[], remoteAddress: string, uid: string) => {
      const windfall = await env.open({ trustProxy });
      const adminToken = randomToken('admin');
      const app = await buildHttpServer(windfall, { apiToken: randomToken('api'), adminToken });
      try {
        const response = await app.inject({
          method: 'DELETE',
          url: `/v1/locks/${uid}`,
          remoteAddress,
          headers: { authorization: `Bearer ${adminToken}`, 'x-forwarded-for': '198.51.100.9, 203.0.113.7' },
        });
        expect(response.statusCode, response.body).toBe(200);
      } finally {
        await app.close();
      }
      const [record] = await audit(['--target', `uid:${uid}`]);
      return record!.actor;
    };
    // off by default: anyone can send X-Forwarded-For, so the socket's peer is the client
    expect(await forceRelease(false, '127.0.0.1', 'tp-off')).toBe('http:admin@127.0.0.1');
    // behind a trusted proxy: the address the proxy saw (the last one it appended)
    expect(await forceRelease(['127.0.0.1'], '127.0.0.1', 'tp-on')).toBe('http:admin@203.0.113.7');
    // a peer that is not one of the trusted proxies is the client itself, whatever it claims
    expect(await forceRelease(['10.0.0.0/8'], '192.0.2.44', 'tp-other')).toBe('http:admin@192.0.2.44');
  });

  it('is append-only: an update, a delete or a truncate of a record is refused by the database itself', async () => {
    await deadLetters('ao', 1).then(([id]) => runCli(['dlq', 'purge', id!, '--yes'], env.env()));
    const before = await audit();
    expect(before.length).toBeGreaterThan(0);
    for (const statement of [`update audit_log set actor = 'mallory'`, `delete from audit_log`, `truncate audit_log`]) {
      await expect(env.pool.query(statement), statement).rejects.toThrow(/append-only/);
    }
    expect(await audit()).toEqual(before);
  });

  it('a purge and its record are one transaction: when the record cannot be written, nothing is purged', async () => {
    const [id] = await deadLetters('at', 1);
    await env.pool.query(
      `create function refuse_audit() returns trigger language plpgsql as $$ begin raise exception 'audit store refused'; end $$`,
    );
    await env.pool.query(
      `create trigger refuse_audit before insert on audit_log for each row execute function refuse_audit()`,
    );
    try {
      const purge = await runCli(['dlq', 'purge', id!, '--yes'], env.env());
      expect(purge.code).toBe(1);
      expect(purge.stderr).toContain('audit store refused');
    } finally {
      await env.pool.query('drop trigger refuse_audit on audit_log');
      await env.pool.query('drop function refuse_audit()');
    }
    expect((await getDeadLetter(env.pool, id!))?.state).toBe('open');
  });
});
