// Lint: typescript-eslint's type-aware rules (floating promises, misused promises, unsafe `any`, …) over the
// library, its entry points, the bench and the tests. Run by `npm test` (`npm run lint`).
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

const UNSAFE_ANY = [
  '@typescript-eslint/no-explicit-any',
  '@typescript-eslint/no-unsafe-assignment',
  '@typescript-eslint/no-unsafe-member-access',
  '@typescript-eslint/no-unsafe-call',
  '@typescript-eslint/no-unsafe-return',
  '@typescript-eslint/no-unsafe-argument',
];
const off = (rules) => Object.fromEntries(rules.map((rule) => [rule, 'off']));

export default defineConfig(
  { ignores: ['dist/**', 'node_modules/**', 'docs/**', 'ops/**', '.scratch/**', 'coverage/**', 'bin/**', '*.js'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // async without await is deliberate here: route handlers, generators over arrays and test doubles that keep
      // an async interface
      '@typescript-eslint/require-await': 'off',
      // every String(x) here stringifies a caught value (narrowed to `{}`) on purpose; objects put into template
      // strings are still checked by restrict-template-expressions
      '@typescript-eslint/no-base-to-string': 'off',
      // an AbortSignal's reason (typed any) and a stream's failure are passed on as they are
      '@typescript-eslint/prefer-promise-reject-errors': [
        'error',
        { allowThrowingAny: true, allowThrowingUnknown: true },
      ],
      '@typescript-eslint/only-throw-error': ['error', { allowThrowingAny: true, allowThrowingUnknown: true }],
      // a variable assigned once after closures that read it later (wiring objects that refer to each other)
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  // Kysely migrations are written against `Kysely<any>`: they run before (and build) the schema the types describe
  { files: ['migrations/**/*.ts'], rules: off(UNSAFE_ANY) },
  // tests read JSON documents (CLI --json, HTTP bodies) as `any` to assert on them; promises and the rest still apply
  { files: ['test/**/*.ts'], rules: off(UNSAFE_ANY) },
);
