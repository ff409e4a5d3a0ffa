import { defineConfig } from 'vitest/config';

/** Redis and PostgreSQL found (or started) once per run, and a migrated template database per lane. */
const SERVICES = 'test/support/global-setup.ts';

/**
 * The test lanes (vitest projects; docs/development.md, Tests). `npm test` runs all but perf (`--project '!perf'`), `.ci/run` runs
 * each lane on its own. A file's name or folder puts it in its lane:
 * - unit: test/unit/ — no Redis, no PostgreSQL, no global set-up.
 * - fault: test/reliability-*.test.ts — fault injection (own redis-server processes, killed backends).
 * - browser: test/browser-*.test.ts — Debian's Chromium driving the dashboard and the console.
 * - perf: test/perf-*.test.ts — opt-in: performance and CPU accounting.
 * - integration: every other test/*.test.ts — real Redis and PostgreSQL.
 */
export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    allowOnly: !process.env['CI'],
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/*.test.ts'],
          exclude: ['test/reliability-*.test.ts', 'test/browser-*.test.ts', 'test/perf-*.test.ts'],
          globalSetup: [SERVICES],
        },
      },
      { extends: true, test: { name: 'fault', include: ['test/reliability-*.test.ts'], globalSetup: [SERVICES] } },
      { extends: true, test: { name: 'browser', include: ['test/browser-*.test.ts'], globalSetup: [SERVICES] } },
      { extends: true, test: { name: 'perf', include: ['test/perf-*.test.ts'], globalSetup: [SERVICES] } },
    ],
  },
});
