/**
 * The documentation holds together: every relative link of the README, the changelog and docs/ points at a file
 * (and a heading) that exists, and the reference pages name every CLI command, HTTP route, metric, alert, ADR and
 * guarantee the code and the other pages have. A page that drifts from the code fails here, not in a reader's hands.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const read = (path: string): string => readFileSync(join(root, path), 'utf8');

/** Markdown files whose links are checked: the README, the changelog, docs/ and docs/adr/. */
function markdownFiles(): string[] {
  const inFolder = (folder: string): string[] =>
    readdirSync(join(root, folder))
      .filter((name) => name.endsWith('.md'))
      .map((name) => `${folder}/${name}`);
  return ['README.md', 'CHANGELOG.md', ...inFolder('docs'), ...inFolder('docs/adr')];
}

/** The text outside fenced code blocks and inline code spans, where links and headings are. */
function prose(markdown: string): string {
  return markdown.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '');
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The anchors of a markdown file's headings, a repeated heading numbered as GitHub does (`x`, `x-1`, …). */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  for (const match of prose(markdown).matchAll(/^#{1,6} (.+)$/gm)) {
    const base = slug(match[1]!);
    let anchor = base;
    for (let n = 1; anchors.has(anchor); n += 1) anchor = `${base}-${n}`;
    anchors.add(anchor);
  }
  return anchors;
}

/** Every relative link target of a markdown file (images too), without web and mail addresses. */
function relativeLinks(markdown: string): string[] {
  return [...prose(markdown).matchAll(/\]\(([^)\s]+)\)/g)]
    .map((match) => match[1]!)
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

describe('the documentation', () => {
  it('links only to files and headings that exist', () => {
    const broken: string[] = [];
    for (const file of markdownFiles()) {
      for (const target of relativeLinks(read(file))) {
        const [path, anchor] = target.split('#', 2) as [string, string | undefined];
        const resolved = path === '' ? join(root, file) : resolve(dirname(join(root, file)), decodeURI(path));
        if (!existsSync(resolved)) {
          broken.push(`${file}: ${target} (no ${relative(root, resolved)})`);
          continue;
        }
        if (anchor === undefined || !resolved.endsWith('.md') || statSync(resolved).isDirectory()) continue;
        if (!anchorsOf(readFileSync(resolved, 'utf8')).has(anchor))
          broken.push(`${file}: ${target} (no heading #${anchor} in ${relative(root, resolved)})`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('keeps the README a short front door', () => {
    expect(read('README.md').split('\n').length).toBeLessThanOrEqual(300);
  });

  it('names every guarantee that the pages, tests and code refer to by number', () => {
    const listed = new Set([...read('docs/guarantees.md').matchAll(/^(\d+a?)\. \*\*/gm)].map((match) => match[1]!));
    expect(listed.size).toBeGreaterThan(10);
    const sources = [...markdownFiles(), ...sourceFiles('src'), ...sourceFiles('test')];
    const referred = new Set(
      sources.flatMap((file) => [...read(file).matchAll(/\bguarantees? (\d+a?)\b/gi)].map((match) => match[1]!)),
    );
    for (const number of referred) expect(listed, `guarantee ${number}`).toContain(number);
  });
});

/** `.ts` files under a folder of the checkout, as paths relative to it. */
function sourceFiles(folder: string): string[] {
  return readdirSync(join(root, folder), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts'))
    .map((name) => `${folder}/${name}`);
}

describe('the reference pages', () => {
  it('docs/cli.md has a row for every command of the CLI', () => {
    const rows = [...read('docs/cli.md').matchAll(/^\| `([^`]+)`/gm)].map((match) => match[1]!.split(/\s+/));
    const commands = new Set(
      sourceFiles('src/cli').flatMap((file) =>
        [...read(file).matchAll(/\.command\('([a-z-]+)/g)].map((match) => match[1]!),
      ),
    );
    expect(commands.size).toBeGreaterThan(15);
    for (const command of commands)
      expect(
        rows.some((words) => words.includes(command)),
        command,
      ).toBe(true);
  });

  it('docs/http.md names every route of the OpenAPI document', () => {
    const http = read('docs/http.md');
    const openapi = JSON.parse(read('docs/openapi.json')) as { paths: Record<string, Record<string, unknown>> };
    const missing: string[] = [];
    for (const [path, operations] of Object.entries(openapi.paths)) {
      for (const method of Object.keys(operations)) {
        const route = `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`;
        if (!new RegExp(`\`${route.replace(/[.?*+^$()[\]\\|{}]/g, '\\$&')}[\`? ]`).test(http)) missing.push(route);
      }
    }
    expect(Object.keys(openapi.paths).length).toBeGreaterThan(10);
    expect(missing).toEqual([]);
  });

  it('docs/operations.md explains every metric and every alert', () => {
    const operations = read('docs/operations.md');
    const metrics = new Set(
      sourceFiles('src').flatMap((file) =>
        [...read(file).matchAll(/name: '(windfall_[a-z_]+)'/g)].map((match) => match[1]!),
      ),
    );
    const alerts = [...read('ops/prometheus/alerts.yml').matchAll(/- alert: (\w+)/g)].map((match) => match[1]!);
    expect(metrics.size).toBeGreaterThan(10);
    expect(alerts.length).toBeGreaterThan(3);
    for (const name of [...metrics, ...alerts]) expect(operations, name).toContain(`\`${name}\``);
  });

  it('docs/architecture.md lists every ADR', () => {
    const architecture = read('docs/architecture.md');
    for (const adr of readdirSync(join(root, 'docs/adr')).filter((name) => name.endsWith('.md')))
      expect(architecture, adr).toContain(`(adr/${adr})`);
  });
});
