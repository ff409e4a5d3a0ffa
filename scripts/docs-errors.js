// Writes docs/errors.md from the error table (src/errors/error-table.ts). Run by `npm run docs:errors` (after a
// build); test/unit/error-table.test.ts fails while the file is stale.
import { writeFileSync } from 'node:fs';
import { renderErrorsDoc } from '../dist/src/errors/errors-doc.js';

writeFileSync(new URL('../docs/errors.md', import.meta.url), renderErrorsDoc());
