/**
 * docker-compose.yml exposes nothing beyond the machine it runs on: every published port is bound to 127.0.0.1,
 * PostgreSQL takes its password from .env (no trust authentication), Grafana has no default admin password.
 * Checked on `docker-compose config` (the file as compose resolves it) when a compose client is installed, and on
 * the file itself otherwise (CI has no Docker).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('../..', import.meta.url));
const composeFile = join(root, 'docker-compose.yml');
const scratch = mkdtempSync(join(tmpdir(), 'windfall-compose-'));
/** An empty env file, so that a developer's own .env does not change what is checked. */
const emptyEnv = join(scratch, 'empty.env');
writeFileSync(emptyEnv, '');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const PASSWORDS = { POSTGRES_PASSWORD: 'pg-secret-from-env', GRAFANA_ADMIN_PASSWORD: 'grafana-secret-from-env' };

interface Service {
  ports?: (string | number | { host_ip?: string; published?: string | number; target?: number })[];
  environment?: Record<string, string | null> | string[];
}

/** `docker-compose` (v1) or `docker compose` (v2), whichever answers; undefined when neither is installed. */
function composeCommand(): string[] | undefined {
  for (const command of [['docker-compose'], ['docker', 'compose']]) {
    const probe = spawnSync(command[0]!, [...command.slice(1), 'version'], { encoding: 'utf8' });
    if (probe.status === 0) return command;
  }
  return undefined;
}
const compose = composeCommand();

function runCompose(
  args: string[],
  env: Record<string, string>,
): { status: number | null; stdout: string; stderr: string } {
  const base: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env))
    if (!(key in PASSWORDS) && !key.startsWith('WINDFALL_')) base[key] = value;
  return spawnSync(compose![0]!, [...compose!.slice(1), '--env-file', emptyEnv, '-f', composeFile, ...args], {
    encoding: 'utf8',
    cwd: root,
    env: { ...base, ...env },
  });
}

/** The services as compose resolves them, or as the file writes them (variables left as written). */
function services(): Record<string, Service> {
  if (compose) {
    const resolved = runCompose(['config'], PASSWORDS);
    if (resolved.status !== 0) throw new Error(`docker-compose config failed: ${resolved.stderr}`);
    return (parse(resolved.stdout) as { services: Record<string, Service> }).services;
  }
  return (parse(readFileSync(composeFile, 'utf8'), { merge: true }) as { services: Record<string, Service> }).services;
}

/** The host address of a published port: `ip:published:target[/proto]`, `published:target`, or the long syntax. */
function hostAddress(port: NonNullable<Service['ports']>[number]): string {
  if (typeof port === 'object') return port.host_ip ?? '(every interface)';
  const parts = String(port).split(':');
  return parts.length >= 3 ? parts.slice(0, -2).join(':') : '(every interface)';
}

function environment(service: Service): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env))
    return Object.fromEntries(env.map((item) => [item.split('=')[0]!, item.split('=').slice(1).join('=')]));
  return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, value ?? '']));
}

describe(`docker-compose.yml (${compose ? `checked with \`${compose.join(' ')} config\`` : 'no compose client: checked as written'})`, () => {
  it('binds every published port to 127.0.0.1', () => {
    const published = Object.entries(services()).flatMap(([name, service]) =>
      (service.ports ?? []).map((port) => ({
        name,
        port: String(typeof port === 'object' ? JSON.stringify(port) : port),
        address: hostAddress(port),
      })),
    );
    expect(published.map((entry) => entry.name).sort()).toEqual(['api', 'grafana', 'postgres', 'prometheus', 'redis']);
    expect(published.filter((entry) => entry.address !== '127.0.0.1')).toEqual([]);
  });

  it('gives PostgreSQL a password from .env (no trust authentication) and builds DATABASE_URL from it; Grafana has no default password', () => {
    const all = services();
    const postgres = environment(all['postgres']!);
    expect(postgres['POSTGRES_HOST_AUTH_METHOD']).toBeUndefined();
    expect(postgres['POSTGRES_PASSWORD']).toEqual(
      compose ? PASSWORDS.POSTGRES_PASSWORD : expect.stringMatching(/^\$\{POSTGRES_PASSWORD:\?/),
    );
    for (const name of ['migrate', 'worker', 'api']) {
      const url = new URL(
        environment(all[name]!)['DATABASE_URL']!.replace(/\$\{POSTGRES_PASSWORD:\?[^}]*\}/, 'from-env'),
      );
      expect(decodeURIComponent(url.password), name).toBe(compose ? PASSWORDS.POSTGRES_PASSWORD : 'from-env');
    }
    expect(environment(all['grafana']!)['GF_SECURITY_ADMIN_PASSWORD']).toEqual(
      compose ? PASSWORDS.GRAFANA_ADMIN_PASSWORD : expect.stringMatching(/^\$\{GRAFANA_ADMIN_PASSWORD:\?/),
    );
  });

  it.runIf(compose !== undefined)(
    'refuses to resolve without the passwords, naming the variable and .env.example',
    () => {
      const withoutPostgres = runCompose(['config'], { GRAFANA_ADMIN_PASSWORD: PASSWORDS.GRAFANA_ADMIN_PASSWORD });
      expect(withoutPostgres.status).not.toBe(0);
      expect(withoutPostgres.stderr).toContain('set POSTGRES_PASSWORD in .env (see .env.example)');
      const withoutGrafana = runCompose(['config'], { POSTGRES_PASSWORD: PASSWORDS.POSTGRES_PASSWORD });
      expect(withoutGrafana.status).not.toBe(0);
      expect(withoutGrafana.stderr).toContain('set GRAFANA_ADMIN_PASSWORD in .env (see .env.example)');
    },
  );

  it('.env.example names every variable the file requires or passes on', () => {
    const example = readFileSync(join(root, '.env.example'), 'utf8');
    const named = new Set([...example.matchAll(/^([A-Z_]+)=/gm)].map((match) => match[1]));
    const used = new Set(
      [...readFileSync(composeFile, 'utf8').matchAll(/\$\{([A-Z_]+)[:}]/g)].map((match) => match[1]),
    );
    expect([...used].filter((variable) => !named.has(variable))).toEqual([]);
    // placeholders are empty: a copied example never starts a stack with a known password
    expect([...example.matchAll(/^[A-Z_]+=(.+)$/gm)].map((match) => match[0])).toEqual([]);
  });
});
