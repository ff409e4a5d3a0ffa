/**
 * Writes docs/configuration.md from the settings declaration (src/config/settings.ts): `npm run docs:config`, which
 * builds first and runs this file from dist/scripts/.
 */
import { writeFileSync } from 'node:fs';
import { CONFIGURATION_DOC, renderConfigurationDoc } from '../src/config/configuration-doc.js';

// compiled to dist/scripts/config-docs.js: the repository is two folders up
const target = new URL(`../../${CONFIGURATION_DOC.path}`, import.meta.url);
writeFileSync(target, renderConfigurationDoc());
process.stdout.write(`wrote ${CONFIGURATION_DOC.path}\n`);
