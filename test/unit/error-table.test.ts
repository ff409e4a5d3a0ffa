import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cliAnswer, httpAnswer } from '../../src/errors/error-answers.js';
import { ERROR_TABLE, type ErrorCode } from '../../src/errors/error-table.js';
import { ERRORS_DOC_COMMAND, renderErrorsDoc } from '../../src/errors/errors-doc.js';
import { WindfallError } from '../../src/errors/windfall-error.js';
import { BatchConflictError, BatchValidationError } from '../../src/rewards/batch-errors.js';
import { BudgetExceededError } from '../../src/staging/budget-reservation.js';
import { CampaignRequestError } from '../../src/campaign/campaign-budget.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const src = join(root, 'src');

/**
 * Error classes that never reach a user: control flow inside one module or stage, caught where they are thrown or
 * turned into an outcome. Every other error class extends `WindfallError`.
 */
const INTERNAL_ERRORS: Record<string, string> = {
  LockWaitCancelled: 'group-settlement: a lock_timeout, turned into the user waiting for the next round',
  ConnectFailed: 'group-settlement: read as PostgreSQL unavailable (the gate waits)',
  StoppingError: 'job-processor: the worker stops; the job goes back to its queue',
  UsersRetryLaterError: 'job-processor: BullMQ retries the job',
  GateClosedError: 'service-gate: the worker is stopping; waiters give up',
  FencedOutError: 'fences: another attempt owns the chunk; the job ends without paying',
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every class of src that extends another: name → its parent, whether exported, and its file. */
function declaredClasses(): Map<string, { parent: string; exported: boolean; file: string }> {
  const classes = new Map<string, { parent: string; exported: boolean; file: string }>();
  for (const file of sourceFiles(src)) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/^(export )?(?:abstract )?class (\w+) extends (\w+)/gm))
      classes.set(match[2]!, { parent: match[3]!, exported: match[1] !== undefined, file: relative(root, file) });
  }
  return classes;
}

/** The names of declared classes descending from `base`. */
function descendants(classes: ReturnType<typeof declaredClasses>, base: string): string[] {
  const isUnder = (name: string): boolean => {
    const parent = classes.get(name)?.parent;
    return parent === base || (parent !== undefined && isUnder(parent));
  };
  return [...classes.keys()].filter(isUnder).sort();
}

/** Every exported class of src descending from WindfallError, by name. */
async function exportedErrorClasses(): Promise<Map<string, typeof WindfallError>> {
  const found = new Map<string, typeof WindfallError>();
  for (const file of sourceFiles(src)) {
    const module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    for (const value of Object.values(module)) {
      if (typeof value === 'function' && value.prototype instanceof WindfallError)
        found.set(value.name, value as typeof WindfallError);
    }
  }
  return found;
}

describe('the error table', () => {
  const classes = declaredClasses();

  it('has every error class of src extend WindfallError, but the few internal ones listed here', () => {
    const plain = [...classes]
      .filter(([name, info]) => info.parent === 'Error' && name !== 'WindfallError')
      .map(([name]) => name);
    expect(plain.sort()).toEqual(Object.keys(INTERNAL_ERRORS).sort());
    expect(descendants(classes, 'WindfallError').length).toBeGreaterThan(20);
  });

  it("holds every WindfallError class's code, and no code without a class", async () => {
    const declared = descendants(classes, 'WindfallError');
    const unexported = declared.filter((name) => !classes.get(name)!.exported);
    expect(unexported, 'a WindfallError class is exported (this test finds it by importing src)').toEqual([]);
    const exported = await exportedErrorClasses();
    expect([...exported.keys()].sort()).toEqual(declared);
    const codes = new Set<string>();
    for (const [name, type] of exported) {
      expect(Object.keys(ERROR_TABLE), `${name}.code`).toContain(type.code);
      codes.add(type.code);
    }
    expect([...codes].sort(), 'codes of the table without a class').toEqual(Object.keys(ERROR_TABLE).sort());
  }, 60_000);

  it('gives every code an exit code of the contract, an HTTP status, words and a meaning', () => {
    for (const [code, rule] of Object.entries(ERROR_TABLE)) {
      expect(code).toMatch(/^[A-Z]+(_[A-Z]+)*$/);
      // never five letters: a five-character code reads as a SQLSTATE (wallet-failure.ts, pg-errors.ts)
      expect(code.length, code).not.toBe(5);
      expect([1, 2], code).toContain(rule.exit);
      expect([400, 404, 409, 413, 500, 503], code).toContain(rule.status);
      expect(rule.cli.length, code).toBeGreaterThan(0);
      expect(rule.http.length, code).toBeGreaterThan(0);
      expect(rule.meaning.length, code).toBeGreaterThan(20);
      if (rule.status === 500) expect(rule.http, code).toBe('internal error');
    }
  });

  it('answers as the contract says: a refused batch, a conflict, a budget (CLI exit 2, HTTP 400 / 409)', () => {
    const contract: Partial<Record<ErrorCode, [number, string, number]>> = {
      BATCH_INVALID: [2, 'invalid batch', 400],
      BATCH_CONFLICT: [2, 'batch conflict', 409],
      BUDGET_EXCEEDED: [2, 'budget exceeded', 409],
      BAD_USAGE: [2, 'usage', 400],
      SERVICE_UNAVAILABLE: [1, 'unavailable', 503],
    };
    for (const [code, [exit, word, status]] of Object.entries(contract)) {
      const rule = ERROR_TABLE[code as ErrorCode];
      expect([rule.exit, rule.cli, rule.status], code).toEqual([exit, word, status]);
    }
  });

  it('builds one document for both surfaces, with the fields the error carries', () => {
    const budget = new BudgetExceededError('spring', 'b-1', 500n, 100n, 1000n);
    expect(cliAnswer(budget)).toEqual({
      exit: 2,
      document: { error: 'budget exceeded', message: budget.message, campaignId: 'spring', remaining: '100' },
    });
    expect(httpAnswer(budget)).toEqual({ status: 409, body: cliAnswer(budget).document });

    const refused = new BatchValidationError([{ row: 3, field: 'amount', code: 'missing', reason: 'is missing' }], 5);
    const body = httpAnswer(refused)!.body;
    expect(body).toEqual({ ...cliAnswer(refused).document, error: 'invalid batch' });
    expect(body.message).toBe(refused.message.split('\n')[0]);
    expect(body).toMatchObject({ totalErrors: 1, badRows: 1, rowsRead: 5 });

    const conflict = new BatchConflictError('b-1', 3, 4);
    expect(httpAnswer(conflict)).toEqual({ status: 409, body: { error: 'batch conflict', message: conflict.message } });

    // a request field at fault: HTTP lists it, the CLI says usage (exit 2)
    const field = new CampaignRequestError('budget', 'budget must be a whole number');
    expect(httpAnswer(field)!.body).toEqual({
      error: 'invalid request',
      message: field.message,
      errors: [{ row: 0, field: 'budget', reason: field.message }],
    });
    expect(cliAnswer(field)).toEqual({ exit: 2, document: { error: 'usage', message: field.message } });

    // anything else: exit 1 failed, and no HTTP answer of its own (a logged 500)
    expect(cliAnswer(new Error('boom'))).toEqual({ exit: 1, document: { error: 'failed', message: 'boom' } });
    expect(httpAnswer(new Error('boom'))).toBeNull();
  });
});

describe('docs/errors.md', () => {
  it('is generated from the table', () => {
    const file = readFileSync(join(root, 'docs/errors.md'), 'utf8');
    expect(file, `docs/errors.md is stale: regenerate it with \`${ERRORS_DOC_COMMAND}\``).toBe(renderErrorsDoc());
    for (const code of Object.keys(ERROR_TABLE)) expect(file).toContain(`\`${code}\``);
  });
});
