import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

/** Debian's Chromium (`apt-get install -y chromium`); no browser is downloaded at install time. */
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Where browser tests save their screenshots (created by {@link launchChromium}). */
export const TEST_RESULTS = fileURLToPath(new URL('../../test-results/', import.meta.url));

/** Launches headless Chromium for the `what` test, or fails saying how to install it. */
export async function launchChromium(what: string): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `the ${what} test drives Debian's Chromium at ${CHROMIUM}: install it with \`apt-get install -y chromium\``,
    );
  }
  mkdirSync(TEST_RESULTS, { recursive: true });
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}
