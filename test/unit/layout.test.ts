import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const src = join(root, 'src');

/** The folders a reward passes through, in order (the README's data-flow diagram, docs/architecture.md). */
const STAGES = ['producer', 'staging', 'queue', 'worker', 'settlement', 'dead-letters', 'status', 'events'];
/** Folders every stage may use; they use no stage and no operator folder. */
const SHARED = [
  'money',
  'rewards',
  'concurrency',
  'log',
  'db',
  'metrics',
  'lock',
  'config',
  'services',
  'ledger',
  'audit',
  'errors',
];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** `src/a/b/c.ts` → `a/b`; a file directly in src → `.`. */
function folderOf(file: string): string {
  const parts = relative(src, file).split('/');
  return parts.length === 1 ? '.' : parts.slice(0, -1).join('/');
}

/** Folder → folders it imports (relative imports of other folders under src). */
function folderGraph(): Map<string, Map<string, string[]>> {
  const graph = new Map<string, Map<string, string[]>>();
  for (const file of sourceFiles(src)) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/(?:from|import)\s*\(?\s*'(\.\.?\/[^']+)'/g)) {
      const target = resolve(dirname(file), match[1]!);
      if (!target.startsWith(src + '/')) continue;
      const from = folderOf(file);
      const to = folderOf(target);
      if (from === to) continue;
      const edges = graph.get(from) ?? new Map<string, string[]>();
      graph.set(from, edges);
      edges.set(to, [...(edges.get(to) ?? []), relative(root, file)]);
    }
  }
  return graph;
}

/** A cycle of folders, if any (depth-first search). */
function findCycle(graph: Map<string, Map<string, string[]>>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (node: string): string[] | null => {
    if (state.get(node) === 'done') return null;
    if (state.get(node) === 'open') return [...path.slice(path.indexOf(node)), node];
    state.set(node, 'open');
    path.push(node);
    for (const next of graph.get(node)?.keys() ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(node, 'done');
    return null;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return null;
}

describe('the source layout', () => {
  const graph = folderGraph();

  it('has no folder that imports a folder importing it back', () => {
    expect(findCycle(graph)).toBeNull();
  });

  it('has every stage and shared folder it names', () => {
    for (const folder of [...STAGES, ...SHARED]) expect(existsSync(join(src, folder)), folder).toBe(true);
  });

  it('lets a stage use only later stages, the queue (job formats and shards) and the shared folders', () => {
    const wrong: string[] = [];
    STAGES.forEach((stage, at) => {
      for (const [to, files] of graph.get(stage) ?? []) {
        const allowed = SHARED.includes(to) || to === 'queue' || STAGES.indexOf(to) > at;
        if (!allowed) wrong.push(`${stage} → ${to} (${files.join(', ')})`);
      }
    });
    expect(wrong).toEqual([]);
  });

  it('lets the shared folders use only shared folders', () => {
    const wrong: string[] = [];
    for (const folder of SHARED) {
      for (const [to, files] of graph.get(folder) ?? []) {
        if (!SHARED.includes(to)) wrong.push(`${folder} → ${to} (${files.join(', ')})`);
      }
    }
    expect(wrong).toEqual([]);
  });
});

describe('where the code lives (docs/architecture.md)', () => {
  const architecture = readFileSync(join(root, 'docs/architecture.md'), 'utf8');
  const section = architecture.slice(
    architecture.indexOf('## Where the code lives'),
    architecture.indexOf('## Decisions'),
  );
  const table = section.slice(section.indexOf("**A reward's path"), section.indexOf('**Shared by the stages**'));
  const pathFiles = [...table.matchAll(/^\|[^|]*\| `(src\/[^`]+\.ts)`/gm)].map((match) => match[1]!);

  it('names files that exist, one per row of the path', () => {
    expect(pathFiles.length).toBeGreaterThan(15);
    for (const file of pathFiles) expect(existsSync(join(root, file)), file).toBe(true);
    for (const match of section.matchAll(/`(src\/[^`]+)`/g))
      expect(existsSync(join(root, match[1]!.replace(/\/$/, ''))), match[1]).toBe(true);
  });

  it('follows the path without a jump back to an earlier folder', () => {
    const folders = pathFiles.slice(1).map((file) => file.split('/')[1]!);
    const runs = folders.filter((folder, i) => i === 0 || folders[i - 1] !== folder);
    expect(runs).toEqual(STAGES);
  });

  it('names every file of the settlement and worker folders', () => {
    for (const folder of ['worker', 'settlement']) {
      for (const file of readdirSync(join(src, folder)))
        expect(pathFiles, `${folder}/${file}`).toContain(`src/${folder}/${file}`);
    }
  });
});
