import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as windfall from '../../src/index.js';

/**
 * The library's entry (`import … from 'windfall'`) exports these values and no others (types are not listed: they
 * leave no trace at run time). A new export is a decision: add it here and to the README's library section.
 */
const PUBLIC_VALUES = [
  'AUDIT_ACTIONS',
  'BATCH_POLICY',
  'BatchConflictError',
  'BatchRevertRefusedError',
  'BatchValidationError',
  'BudgetExceededError',
  'CampaignRequestError',
  'ConfigError',
  'CsvHeaderError',
  'DEAD_LETTER_REASONS',
  'DEFAULT_CONFIG',
  'DEFAULT_POLICY',
  'DEFAULT_SIGNATURE_TOLERANCE_SECONDS',
  'DeadLetterQueue',
  'DeadLetterService',
  'InsufficientFundsError',
  'InvalidOperationError',
  'LOG_LEVELS',
  'LockBusyError',
  'LockTimeoutError',
  'MAX_REWARD_AMOUNT',
  'OperationConflictError',
  'REWARD_POLICY',
  'RevertRequestError',
  'RewardProducer',
  'SIGNATURE_HEADER',
  'ServiceUnavailableError',
  'UnknownBatchError',
  'UnknownCampaignError',
  'WalletService',
  'Windfall',
  'WindfallError',
  'createLogger',
  'formatAmount',
  'getBatchReport',
  'getCampaignReport',
  'listAudit',
  'listEvents',
  'loadConfig',
  'migrateToLatest',
  'openWindfall',
  'parseAmount',
  'readQueueStats',
  'readRewardFile',
  'reconcile',
  'recordsFromArray',
  'revertBatch',
  'setCampaignBudget',
  'silentLogger',
  'totalWaitMs',
  'verifySignature',
];

describe('the public API', () => {
  it('exports exactly the deliberate set: no SQL text, helpers or worker stages', () => {
    expect(Object.keys(windfall).sort()).toEqual([...PUBLIC_VALUES].sort());
  });

  it("names in the README's library section and examples are exported", () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const imported = [...readme.matchAll(/import \{([^}]+)\} from 'windfall'/g)].flatMap((match) =>
      match[1]!
        .split(',')
        .map((name) => name.trim())
        .filter((name) => /^[A-Za-z_]+$/.test(name)),
    );
    const mentioned = [
      ...readme
        .slice(readme.indexOf('As a library'))
        .split('\n## ')[0]!
        .matchAll(/`([A-Za-z]+)`/g),
    ].map((match) => match[1]!);
    expect(imported.length).toBeGreaterThan(0);
    for (const name of imported) expect(PUBLIC_VALUES, name).toContain(name);
    for (const name of mentioned.filter((name) => /^[A-Z]/.test(name) || name.startsWith('open')))
      expect(PUBLIC_VALUES, name).toContain(name);
  });
});
