#!/usr/bin/env node
// The `windfall` command. It runs the compiled library in dist/ (built by `npm install` / `npm run build`).
import { existsSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

// The oldest Node supported (package.json engines, the oldest CI runs): say so rather than fail inside a dependency.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 22)) {
  process.stderr.write(
    `windfall: needs Node.js 22.22 or newer; this is ${process.version}. In a checkout, \`npm install\` links a supported ` +
      'Node for npm scripts and npx (docs/adr/0012-node-toolchain.md).\n',
  );
  process.exit(1);
}

// Node keeps the compiled code of the modules on disk: every later command starts faster (a batch enqueued from the
// command line on a machine the worker keeps busy waits for its own start-up).
module.enableCompileCache();

const entry = new URL('../dist/src/cli/process-entry.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('windfall: dist/ is missing; build it first with `npm install` or `npm run build`\n');
  process.exit(1);
}
// as workers/ do: errors printed by Node (uncaught) or by libraries (console) are rendered without their fields'
// secrets, the command's code is the exit code, and a socket whose peer went silent does not keep the process up
const { runAsProcess } = await import(entry.href);
await runAsProcess(process.argv.slice(2));
