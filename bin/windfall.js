#!/usr/bin/env node
// The `windfall` command. It runs the compiled library in dist/ (built by `npm install` / `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('windfall: dist/ is missing; build it first with `npm install` or `npm run build`\n');
  process.exit(1);
}
const { main, installProcessGuards } = await import(entry.href);
// errors printed by Node (uncaught) or by libraries (console) are rendered without their fields' secrets
installProcessGuards();
process.exitCode = await main(process.argv);
