import pg from 'pg';
import { DatabaseServer, ensureDatabase, migrateSchema, quoteIdent, SqlMigration, tenantObjectName } from '../../libs/postgres/index.js';
import type { Placement, Tier } from './tenant-route.js';
import { TenancyError } from './tenancy.errors.js';

/** The schema of the shared tier, and of every dedicated database. */
export const SHARED_SCHEMA = 'tenant_data';
export const CONTROL_SCHEMA = 'control';

export interface DatabaseRuntime {
  servers: Map<string, DatabaseServer>;
  primary: DatabaseServer;
  /** Where dedicated tenants go when no server is named: another server when there is one. */
  defaultDedicatedServer: string;
  controlMigrations: SqlMigration[];
  tenantMigrations: SqlMigration[];
  /**
   * Placements whose tenant migrations failed at start-up, by tenant id: set aside (their tenants
   * answer 503) so that every other tenant can be served.
   */
  failedPlacements: Map<string, { tenant: string; reason: string }>;
  stop(): Promise<void>;
}

export const DATABASE_RUNTIME = Symbol('DATABASE_RUNTIME');

/** Where a new tenant lives: names derived from its id only. */
export function placementFor(runtime: DatabaseRuntime, tenantId: string, tier: Tier, serverKey?: string): Placement {
  switch (tier) {
    case 'shared':
      return { tier, serverKey: runtime.primary.key, database: runtime.primary.database, schema: SHARED_SCHEMA };
    case 'schema':
      return { tier, serverKey: runtime.primary.key, database: runtime.primary.database, schema: tenantObjectName(tenantId) };
    case 'dedicated':
      return {
        tier,
        serverKey: serverKey ?? runtime.defaultDedicatedServer,
        database: tenantObjectName(tenantId),
        schema: SHARED_SCHEMA,
      };
  }
}

export async function withOwner<T>(server: DatabaseServer, database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    host: server.host,
    port: server.port,
    user: server.ownerUser,
    password: server.ownerPassword,
    database,
    application_name: 'tenancy-admin',
    connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Privileges of the runtime role on one tenant schema: data only, never the bookkeeping. */
export function grantTenantSchema(schema: string, appUser: string) {
  const s = quoteIdent(schema);
  const app = quoteIdent(appUser);
  return async (c: pg.ClientBase) => {
    // The schema's tables are found through pg_depend's index: GRANT ... ON ALL TABLES IN SCHEMA
    // scans the whole of pg_class once per relation kind, a cost that grows with every tenant
    // schema (11 ms a schema with 1,000 of them, most of a migration rollout's time). Two round
    // trips in all; the schema name is checked by quoteIdent, so it is a safe literal.
    const found = (await c.query(
      `GRANT USAGE ON SCHEMA ${s} TO ${app};
       SELECT c.relname, format('%I.%I', n.nspname, c.relname) AS qualified
         FROM pg_namespace n
         JOIN pg_depend d ON d.refclassid = 'pg_namespace'::regclass AND d.refobjid = n.oid AND d.classid = 'pg_class'::regclass
         JOIN pg_class c ON c.oid = d.objid
        WHERE n.nspname = '${schema}' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`,
    )) as unknown as pg.QueryResult<{ relname: string; qualified: string }>[];
    const tables = found[1].rows;
    const data = tables.filter((t) => t.relname !== '_migrations').map((t) => t.qualified);
    const statements = [`REVOKE ALL ON ${s}._migrations FROM ${app}`];
    if (data.length) statements.unshift(`GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE ${data.join(', ')} TO ${app}`);
    // Fences are set and lifted by the platform (moves), read by the write gate: never by the app.
    if (tables.some((t) => t.relname === 'tenant_fences')) statements.push(`REVOKE INSERT, UPDATE, DELETE ON ${s}.tenant_fences FROM ${app}`);
    // The audit log is append-only for the app: it adds entries (and queues them for sealing);
    // the chain and its heads are written by audit_seal() alone.
    if (tables.some((t) => t.relname === 'audit_log')) {
      statements.push(
        `REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ${s}.audit_log FROM ${app}`,
        // Never the time: entries are stamped by the database.
        `GRANT INSERT (organization_id, id, actor_kind, actor_id, action, target_type, target_id, metadata, request_id, ip, user_agent) ON ${s}.audit_log TO ${app}`,
        `REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ${s}.audit_chain_heads FROM ${app}`,
        `GRANT EXECUTE ON FUNCTION ${s}.audit_seal(uuid, integer) TO ${app}`,
      );
      if (tables.some((t) => t.relname === 'audit_chain')) {
        statements.push(
          `REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ${s}.audit_chain FROM ${app}`,
          `REVOKE UPDATE, DELETE, TRUNCATE ON ${s}.audit_pending FROM ${app}`,
        );
      }
    }
    await c.query(statements.join(';\n'));
  };
}

export function grantControlSchema(appUser: string) {
  const app = quoteIdent(appUser);
  return async (c: pg.ClientBase) => {
    await c.query(`GRANT USAGE ON SCHEMA ${CONTROL_SCHEMA} TO ${app}`);
    await c.query(`GRANT SELECT ON ${CONTROL_SCHEMA}.database_servers TO ${app}`);
    await c.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${CONTROL_SCHEMA}.tenants, ${CONTROL_SCHEMA}.users, ${CONTROL_SCHEMA}.memberships TO ${app}`);
    await c.query(`GRANT SELECT, INSERT, UPDATE ON ${CONTROL_SCHEMA}.tenant_moves TO ${app}`);
    await c.query(`GRANT SELECT ON ${CONTROL_SCHEMA}.placement_migrations TO ${app}`);
    // Append-only for the app: no UPDATE or DELETE (and a trigger refuses them for anyone).
    await c.query(`GRANT SELECT, INSERT ON ${CONTROL_SCHEMA}.platform_audit_log TO ${app}`);
    await c.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${CONTROL_SCHEMA}.audit_outbox TO ${app}`);
    // Read only: checkpoints are written by the owner role (AuditCheckpoints).
    await c.query(`GRANT SELECT ON ${CONTROL_SCHEMA}.audit_checkpoints TO ${app}`);
    const sso = ['sessions', 'sso_links', 'sso_domains', 'sso_used_states', 'sso_identities', 'workos_events', 'workos_event_cursor'];
    await c.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${sso.map((t) => `${CONTROL_SCHEMA}.${t}`).join(', ')} TO ${app}`);
    // Grants are never deleted by the app (they go with their tenant): their history is evidence.
    await c.query(`GRANT SELECT, INSERT, UPDATE ON ${CONTROL_SCHEMA}.support_grants TO ${app}`);
    await c.query(`GRANT SELECT, INSERT, UPDATE ON ${CONTROL_SCHEMA}.tenant_support_settings TO ${app}`);
    // The plan catalogue is changed by migrations (or an operator's SQL), never by the app.
    await c.query(`GRANT SELECT ON ${CONTROL_SCHEMA}.plans, ${CONTROL_SCHEMA}.plan_features TO ${app}`);
    await c.query(`GRANT SELECT, INSERT, UPDATE ON ${CONTROL_SCHEMA}.organization_billing, ${CONTROL_SCHEMA}.usage_daily TO ${app}`);
    await c.query(`GRANT SELECT, INSERT ON ${CONTROL_SCHEMA}.billing_events TO ${app}`);
  };
}

export function serverOf(runtime: DatabaseRuntime, key: string): DatabaseServer {
  const server = runtime.servers.get(key);
  if (!server) throw new Error(`database server '${key}' is not configured`);
  return server;
}

/** Creates what a placement needs (schema or database) and brings it to the current tenant migrations. */
export async function preparePlacement(runtime: DatabaseRuntime, p: Placement): Promise<string[]> {
  const server = serverOf(runtime, p.serverKey);
  if (p.tier === 'dedicated') {
    await withOwner(server, server.database, async (c) => {
      await ensureDatabase(c, p.database, server.ownerUser);
      await c.query(`REVOKE ALL ON DATABASE ${quoteIdent(p.database)} FROM PUBLIC`);
      await c.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${quoteIdent(p.database)} TO ${quoteIdent(server.appUser)}`);
    });
  }
  return withOwner(server, p.database, (c) =>
    migrateSchema(c, p.schema, runtime.tenantMigrations, grantTenantSchema(p.schema, server.appUser)),
  );
}

/**
 * Where a tenant may be placed: a registered server, and a server other than the primary only for
 * the dedicated tier. Provisioning and moves both ask.
 */
export function assertPlacementAllowed(runtime: DatabaseRuntime, tier: Tier, server: string | undefined): void {
  if (server === undefined) return;
  if (!runtime.servers.has(server)) {
    throw new TenancyError('SERVER_NOT_FOUND', `no database server is registered as '${server}'`, 'server');
  }
  if (tier !== 'dedicated' && server !== runtime.primary.key) {
    throw new TenancyError(
      'TIER_NOT_ALLOWED',
      `shared and schema tenants live on the '${runtime.primary.key}' server; only dedicated tenants can be placed on '${server}'`,
      'server',
    );
  }
}

/** Only a schema or database named after the tenant is ever dropped, whatever a corrupt row (a move's, a tenant's) says. */
export function assertOwnObject(runtime: DatabaseRuntime, tenantId: string, p: Placement): void {
  if (p.tier === 'shared') return;
  const own = tenantObjectName(tenantId);
  const name = p.tier === 'schema' ? p.schema : p.database;
  if (name !== own && !name.startsWith(`${own}_`)) {
    throw new Error(`refusing to drop ${p.tier === 'schema' ? 'schema' : 'database'} '${name}' on '${p.serverKey}': it is not named after tenant ${tenantId}`);
  }
  if (p.tier === 'dedicated' && name === serverOf(runtime, p.serverKey).database) {
    throw new Error(`refusing to drop the server's own database '${name}'`);
  }
}

/** Removes a tenant's own schema or database (and nothing else: see assertOwnObject). The shared schema is never dropped. */
export async function dropPlacement(runtime: DatabaseRuntime, p: Placement, tenantId: string): Promise<void> {
  assertOwnObject(runtime, tenantId, p);
  const server = serverOf(runtime, p.serverKey);
  if (p.tier === 'schema') {
    await withOwner(server, p.database, (c) => c.query(`DROP SCHEMA IF EXISTS ${quoteIdent(p.schema)} CASCADE`));
  } else if (p.tier === 'dedicated') {
    await withOwner(server, server.database, (c) => c.query(`DROP DATABASE IF EXISTS ${quoteIdent(p.database)} WITH (FORCE)`));
  }
}
