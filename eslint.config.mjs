// ESLint flat config: typescript-eslint's recommended rules on the TypeScript
// sources, ESLint's on the JavaScript fixtures.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/** What workers/ may not import (see below). */
const WORKERS_MAY_NOT_IMPORT = '(^|/)src(?!/shared/)(/|$)|(^|/)src/shared/(.*/)?[.][.](/|$)|(^|/)dist(/|$)|^lukhas-orchestrator(/|$)';
/** The same, for esquery selectors, whose regular expressions cannot hold a slash. */
const IN_SELECTOR = WORKERS_MAY_NOT_IMPORT.replaceAll('/', '\\x2F');
const WORKERS_IMPORT_MESSAGE = 'workers/ may import only from src/shared/: the rest of src/ runs on the main thread.';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'scratch/', 'bench/results/', '.soak-dist-*/'] },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommended],
    languageOptions: { globals: globals.node },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': ['error', { ignoreRestArgs: true }],
      '@typescript-eslint/no-require-imports': 'off',
      eqeqeq: ['error', 'always'],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // What runs in a worker thread imports only what both sides of the thread boundary
    // share: src/shared/ (docs/ARCHITECTURE.md). Refused: the rest of src/ (src itself
    // is its index), a path that leaves src/shared/ through `..`, the built library and
    // the package by name; in `import`, `export ... from`, `import()` and `require()`.
    files: ['workers/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex: WORKERS_MAY_NOT_IMPORT, message: WORKERS_IMPORT_MESSAGE }] }],
      'no-restricted-syntax': [
        'error',
        { selector: `CallExpression[callee.name='require'] > Literal.arguments[value=/${IN_SELECTOR}/]`, message: WORKERS_IMPORT_MESSAGE },
        { selector: `ImportExpression > Literal.source[value=/${IN_SELECTOR}/]`, message: WORKERS_IMPORT_MESSAGE },
        { selector: `TSImportType Literal[value=/${IN_SELECTOR}/]`, message: WORKERS_IMPORT_MESSAGE },
        // A path built at run time cannot be checked here: workers/ loads nodes' modules by variable alone.
        { selector: "CallExpression[callee.name='require'] > TemplateLiteral.arguments", message: WORKERS_IMPORT_MESSAGE },
        { selector: 'ImportExpression > TemplateLiteral.source', message: WORKERS_IMPORT_MESSAGE },
        { selector: "CallExpression[callee.name='createRequire'], CallExpression[callee.property.name='createRequire']", message: 'workers/ loads modules with require() and import() alone, which this rule checks.' },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: globals.node },
  },
);
