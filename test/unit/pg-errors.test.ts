import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  isDatabaseCreatedMeanwhile,
  isLockTimeout,
  isMissingDatabase,
  isMomentaryConnectionFault,
  isStatementResourceError,
  isUniqueViolation,
  sqlStateOf,
} from '../../src/db/pg-errors.js';
import { LockBusyError } from '../../src/lock/lock-errors.js';

const src = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'src');

/** An error as node-pg gives it: a message, a SQLSTATE, and for a constraint violation the constraint. */
function pgError(code: string, constraint?: string): Error {
  return Object.assign(new Error(`failed (${code})`), { code, ...(constraint ? { constraint } : {}) });
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('SQLSTATE checks', () => {
  it('read a SQLSTATE only from a PostgreSQL error', () => {
    expect(sqlStateOf(pgError('23505'))).toBe('23505');
    expect(sqlStateOf(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBeUndefined();
    expect(sqlStateOf(new LockBusyError('u', 'reward', 3, 10, null))).toBeUndefined();
    expect(sqlStateOf(null)).toBeUndefined();
  });

  it('name each condition a caller acts on', () => {
    expect(isUniqueViolation(pgError('23505'))).toBe(true);
    expect(
      isUniqueViolation(pgError('23505', 'ledger_entries_operation_id_key'), 'ledger_entries_operation_id_key'),
    ).toBe(true);
    expect(isUniqueViolation(pgError('23505', 'other_key'), 'ledger_entries_operation_id_key')).toBe(false);
    expect(isUniqueViolation(pgError('23503'))).toBe(false);
    expect(isLockTimeout(pgError('55P03'))).toBe(true);
    expect(isLockTimeout(pgError('57014'))).toBe(false);
    expect(['53100', '53200', '53400'].map((code) => isStatementResourceError(pgError(code)))).toEqual([
      true,
      true,
      true,
    ]);
    expect(isStatementResourceError(pgError('53300'))).toBe(false);
    expect(['57P01', '57P03', '08006', '53300'].every((code) => isMomentaryConnectionFault(pgError(code)))).toBe(true);
    expect(isMomentaryConnectionFault(pgError('08001'))).toBe(false);
    expect(isMissingDatabase(pgError('3D000'))).toBe(true);
    expect(isDatabaseCreatedMeanwhile(pgError('42P04'))).toBe(true);
    expect(isDatabaseCreatedMeanwhile(pgError('23505'))).toBe(true);
    expect(isDatabaseCreatedMeanwhile(pgError('42501'))).toBe(false);
  });

  it('are written only in src/db/pg-errors.ts', () => {
    const elsewhere = sourceFiles(src)
      .filter((file) => !file.endsWith('/db/pg-errors.ts'))
      .flatMap((file) =>
        readFileSync(file, 'utf8')
          .split('\n')
          .filter((line) => /\bcode\b.*'[0-9][0-9A-Z]{4}'/.test(line))
          .map((line) => `${relative(src, file)}: ${line.trim()}`),
      );
    expect(elsewhere).toEqual([]);
  });
});
