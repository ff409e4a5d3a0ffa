/**
 * The package as a user gets it: `npm pack` of this checkout (its built dist/), installed into an empty project under
 * Node 26 (the npm registry's `node` package, pinned in scripts/node-toolchain.sh), its types checked from that
 * project, and the README's library example ("Using it") run there against this test's Redis and PostgreSQL.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { useTestEnvironment } from './support/environment.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));
const env = useTestEnvironment();
const scratch = mkdtempSync(join(tmpdir(), 'windfall-package-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The environment of a user's shell: this process's, without what npm passes to the scripts it runs. */
function userEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env.env(extra)))
    if (!key.startsWith('npm_') && key !== 'INIT_CWD') clean[key] = value;
  return clean;
}

/** The ```js block of the README's "Using it" section. */
function readmeLibraryExample(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(
    readme.indexOf('## Using it'),
    readme.indexOf('\n## ', readme.indexOf('## Using it') + 1),
  );
  const example = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  if (!example) throw new Error('the README\'s "Using it" section has no ```js example');
  return example;
}

describe('the packed package, installed into an empty project under Node 26', () => {
  it('holds what a user needs, installs without engine warnings, type-checks, and runs the README example', async () => {
    const pinned = (await run('sh', ['scripts/node-toolchain.sh', 'pinned'], { cwd: root })).stdout.trim();
    const nodeBin = (
      await run('sh', ['scripts/node-toolchain.sh', 'bin', pinned], { cwd: root, timeout: 120_000 })
    ).stdout.trim();
    const node26 = join(nodeBin, 'node');
    const shell = userEnvironment({ PATH: `${nodeBin}:${process.env['PATH'] ?? ''}` });

    // the tarball of the built checkout (`npm test` builds first): only what a user needs
    const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', scratch], {
      cwd: root,
      env: shell,
      maxBuffer: 16 * 1024 * 1024,
    });
    const [manifest] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    const files = manifest!.files.map((file) => file.path);
    for (const needed of [
      'package.json',
      'README.md',
      'LICENSE',
      'CHANGELOG.md',
      'bin/windfall.js',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/migrations/0001_ledger.js',
      'dist/workers/reward-worker.js',
    ])
      expect(files, needed).toContain(needed);
    const unwanted = files.filter(
      (file) => !/^(package\.json|README\.md|LICENSE|CHANGELOG\.md|bin\/|dist\/)/.test(file),
    );
    expect(unwanted).toEqual([]);
    expect(files.filter((file) => /^dist\/(bench|test)\/|\.map$/.test(file))).toEqual([]);

    // an empty project installs it (and the Node types a TypeScript user has), from npm's cache when it can
    const app = join(scratch, 'app');
    await run('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'windfall-user', private: true, type: 'module' }));
    const typesNode = JSON.parse(readFileSync(join(root, 'node_modules/@types/node/package.json'), 'utf8')) as {
      version: string;
    };
    const install = await run(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        join(scratch, manifest!.filename),
        `@types/node@${typesNode.version}`,
      ],
      { cwd: app, env: shell, timeout: 240_000, maxBuffer: 16 * 1024 * 1024 },
    );
    expect(install.stdout + install.stderr).not.toMatch(/EBADENGINE|ERESOLVE|deprecated windfall/);
    expect((await run(node26, ['--version'], { cwd: app })).stdout.trim()).toBe(`v${pinned}`);

    // its types resolve from the user's project: each probe below is a type error only while the type behind it is
    // real (a type a missing package leaves is `any`, and accepts anything: the unused directive then fails tsc)
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          target: 'es2022',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
        },
        files: ['check-types.ts'],
      }),
    );
    writeFileSync(
      join(app, 'check-types.ts'),
      [
        "import { createLogger, loadConfig, migrateToLatest, openWindfall, type Windfall } from 'windfall';",
        "const windfall: Windfall = await openWindfall(loadConfig(process.env), createLogger('warn'));",
        "const result = await windfall.wallet.withdrawBalance('user1', 50, { operationId: 'refund-42' });",
        '// @ts-expect-error a balance is a bigint, not a string',
        'const balance: string = result.balance;',
        '// @ts-expect-error migrations run over a pg.Pool (@types/pg, a dependency)',
        'await migrateToLatest(42);',
        '// @ts-expect-error openWindfall takes a configuration',
        'await openWindfall(42, createLogger());',
        'console.log(balance);',
        'await windfall.close();',
        '',
      ].join('\n'),
    );
    const tsc = await run(node26, [join(root, 'node_modules/typescript/bin/tsc'), '-p', app], { cwd: app }).catch(
      (error: { stdout?: string; stderr?: string }) => error,
    );
    expect(`${tsc.stdout ?? ''}${tsc.stderr ?? ''}`).toBe('');

    // the README's example, as written, against this test's services: a user credited 100 is refunded 50 once
    writeFileSync(
      join(app, 'grant.mjs'),
      [
        "import { createLogger, loadConfig, openWindfall } from 'windfall';",
        "const windfall = await openWindfall(loadConfig(process.env), createLogger('warn'));",
        "try { await windfall.wallet.addBalance('user1', 100, { operationId: 'grant-1' }); } finally { await windfall.close(); }",
        '',
      ].join('\n'),
    );
    writeFileSync(join(app, 'refund.mjs'), readmeLibraryExample());
    await run(join(app, 'node_modules/.bin/windfall'), ['migrate'], { cwd: app, env: shell, timeout: 60_000 });
    await run(node26, ['grant.mjs'], { cwd: app, env: shell, timeout: 60_000 });
    const first = await run(node26, ['refund.mjs'], { cwd: app, env: shell, timeout: 60_000 });
    expect(first.stdout.trim()).toBe('applied 50');
    const repeat = await run(node26, ['refund.mjs'], { cwd: app, env: shell, timeout: 60_000 });
    expect(repeat.stdout.trim()).toBe('duplicate 50');

    // and the installed command reads the same wallet
    const wallet = await run(join(app, 'node_modules/.bin/windfall'), ['wallet', 'user1', '--json'], {
      cwd: app,
      env: shell,
      timeout: 60_000,
    });
    expect(JSON.parse(wallet.stdout)).toMatchObject([{ uid: 'user1', balance: '50' }]);
  }, 300_000);
});
