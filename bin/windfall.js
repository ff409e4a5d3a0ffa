#!/usr/bin/env node
// The `windfall` command. It runs the compiled library in dist/ (built by `npm install` / `npm run build`).
import { existsSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

// Node ≥ 22.1 keeps the compiled code of the modules on disk: every later command starts faster (a batch enqueued
// from the command line on a machine the worker keeps busy waits for its own start-up). Node 20 has no such cache.
module.enableCompileCache?.();

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('windfall: dist/ is missing; build it first with `npm install` or `npm run build`\n');
  process.exit(1);
}
const { main, installProcessGuards } = await import(entry.href);
// errors printed by Node (uncaught) or by libraries (console) are rendered without their fields' secrets
installProcessGuards();
process.exitCode = await main(process.argv);
// the command is done: a socket whose peer went silent (it never answers the goodbye) must not keep the process up
setTimeout(() => process.exit(), 5000).unref();
