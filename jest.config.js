/** Tests run on the compiled output (native ESM, as NestJS 12 ships), against real PostgreSQL servers. */
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test', '<rootDir>/dist/src', '<rootDir>/dist/libs'],
  testMatch: ['**/*.test.js', '**/*.spec.js'],
  moduleFileExtensions: ['js', 'json'],
  transform: {},
  globalSetup: '<rootDir>/dist/test/global-setup.js',
  globalTeardown: '<rootDir>/dist/test/global-teardown.js',
  testTimeout: 60_000,
  maxWorkers: 2,
  // Stack traces point at the TypeScript sources.
  injectGlobals: true,
};
