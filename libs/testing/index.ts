export * from './ports.js';
export * from './postgres-harness.js';
export * from './http-client.js';
export * from './workos-stand-in.js';
