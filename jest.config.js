// Tests run from TypeScript sources through ts-jest. tsconfig.json sets
// isolatedModules, so ts-jest transpiles file by file (fast); type errors are
// caught by `npm run build:ts`, which runs first (pretest).
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  moduleFileExtensions: ['ts', 'js', 'json', 'node'],
  testTimeout: 120000,
};
