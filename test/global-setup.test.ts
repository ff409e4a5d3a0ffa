/**
 * The test suite's own set-up (test/support/global-setup.ts), run as a developer runs it: `DATABASE_URL` naming a
 * database that does not exist yet is created, as `windfall migrate` does, instead of failing with
 * "PostgreSQL does not answer".
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { describe, expect, inject, it } from 'vitest';
import { quoteIdentifier } from '../src/db/create-database.js';

const root = fileURLToPath(new URL('..', import.meta.url));

function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

describe('npm test with DATABASE_URL naming a missing database', () => {
  it('creates the database and runs the tests', async () => {
    const server = inject('databaseUrl');
    const missing = `windfall_missing_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: withDatabase(server, 'postgres') });
    await admin.connect();
    try {
      const env: NodeJS.ProcessEnv = {};
      for (const [key, value] of Object.entries(process.env))
        if (!key.startsWith('VITEST') && key !== 'NODE_ENV') env[key] = value;
      const run = spawnSync(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', 'test/schema-types.test.ts'], {
        cwd: root,
        encoding: 'utf8',
        timeout: 150_000,
        env: { ...env, DATABASE_URL: withDatabase(server, missing), REDIS_URL: inject('redisUrl') },
      });
      expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
      expect(run.stdout).toMatch(/Tests\s+.*\d+ passed/);
      const { rowCount } = await admin.query('select 1 from pg_database where datname = $1', [missing]);
      expect(rowCount).toBe(1);
    } finally {
      await admin.query(`drop database if exists ${quoteIdentifier(missing)}`);
      await admin.end();
    }
  }, 180_000);
});
