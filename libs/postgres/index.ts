export * from './identifiers.js';
export * from './servers.js';
export * from './embedded.js';
export * from './bootstrap.js';
export * from './migrator.js';
export * from './pool-registry.js';
export * from './rls.js';
