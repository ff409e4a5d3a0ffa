import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const httpDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/http');

/** `request.params`, `request.query`, `request.body` (or `req.…`), under parentheses and `??`. */
function readsRequest(node: ts.Expression): boolean {
  if (ts.isParenthesizedExpression(node)) return readsRequest(node.expression);
  if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.QuestionQuestionToken)
    return readsRequest(node.left) || readsRequest(node.right);
  return (
    ts.isPropertyAccessExpression(node) &&
    ts.isIdentifier(node.expression) &&
    ['request', 'req'].includes(node.expression.text) &&
    ['params', 'query', 'body'].includes(node.name.text)
  );
}

/** `file:line: text` of every `x as T`, `<T>x` or `x!` applied to a request's params, query or body. */
function requestCasts(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      (ts.isAsExpression(node) || ts.isTypeAssertionExpression(node) || ts.isNonNullExpression(node)) &&
      readsRequest(node.expression)
    ) {
      const line = source.getLineAndCharacterOfPosition(node.getStart()).line + 1;
      found.push(`${file.slice(httpDir.length + 1)}:${line}: ${node.getText()}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe('HTTP handlers', () => {
  it('read params, query and body as their route types them: no cast in src/http', () => {
    const files = readdirSync(httpDir, { recursive: true, encoding: 'utf8' })
      .filter((name) => name.endsWith('.ts'))
      .map((name) => join(httpDir, name));
    expect(files.length).toBeGreaterThan(0);
    expect(files.flatMap(requestCasts)).toEqual([]);
  });

  it('the check finds the casts it looks for', () => {
    const probe = (code: string): boolean => {
      const source = ts.createSourceFile('probe.ts', code, ts.ScriptTarget.Latest, true);
      let hit = false;
      const visit = (node: ts.Node): void => {
        if ((ts.isAsExpression(node) || ts.isNonNullExpression(node)) && readsRequest(node.expression)) hit = true;
        ts.forEachChild(node, visit);
      };
      visit(source);
      return hit;
    };
    expect(probe('const { id } = request.params as { id: string };')).toBe(true);
    expect(probe('const body = (request.body ?? {}) as { reason?: string };')).toBe(true);
    expect(probe('const q = req.query!;')).toBe(true);
    expect(probe('const { id } = request.params;')).toBe(false);
    expect(probe('const params = issue.params as { missingProperty?: string };')).toBe(false);
    expect(probe('const body: Action = request.body ?? {};')).toBe(false);
  });
});
