import { fromRoot } from '../config/paths.js';
import { loadSqlMigrations, migrateSchema } from '../libs/postgres/index.js';
import { publishHarness, startHarness } from '../libs/testing/index.js';
import { CONTROL_SCHEMA, grantControlSchema, grantTenantSchema, SHARED_SCHEMA } from '../src/tenancy/placements.js';

/** Starts the real PostgreSQL servers once for the whole run; each test file clones a fresh database. */
export default async function globalSetup(): Promise<void> {
  const started = Date.now();
  const harness = await startHarness(async (owner) => {
    await migrateSchema(owner, CONTROL_SCHEMA, loadSqlMigrations(fromRoot('migrations', 'control')), grantControlSchema('tenancy_app'));
    await migrateSchema(owner, SHARED_SCHEMA, loadSqlMigrations(fromRoot('migrations', 'tenant')), grantTenantSchema(SHARED_SCHEMA, 'tenancy_app'));
  });
  const { info } = harness;
  publishHarness(info);
  (globalThis as { __tenancyHarness?: unknown }).__tenancyHarness = harness;
  process.stdout.write(`\nPostgreSQL test servers on ports ${info.primaryPort} and ${info.secondaryPort} (${Date.now() - started} ms)\n`);
}
