import pg from 'pg';
import { join } from 'node:path';
import type { AppConfig } from '../../config/configuration.js';
import { fromRoot } from '../../config/paths.js';
import { loadOrCreateLocalSecrets } from '../../config/secrets.js';
import {
  DatabaseServer,
  describeServer,
  EmbeddedCluster,
  ensureDatabase,
  ensurePlatformRoles,
  inspectRoleSafety,
  loadSqlMigrations,
  migrateSchema,
  roleSafetyProblems,
  serverFromUrl,
  startEmbeddedCluster,
} from '../../libs/postgres/index.js';
import {
  CONTROL_SCHEMA,
  DatabaseRuntime,
  grantControlSchema,
  grantTenantSchema,
  preparePlacement,
  SHARED_SCHEMA,
  withOwner,
} from './placements.js';
import type { Tier } from './tenant-route.js';

export const PRIMARY_SERVER = 'primary';
export const SECONDARY_SERVER = 'secondary';
const EMBEDDED_DATABASE = 'tenancy';
const OWNER_ROLE = 'tenancy_owner';

type Log = (msg: string) => void;

export class UnsafeRuntimeRoleError extends Error {
  constructor(problems: string[]) {
    super(`refusing to start: the runtime database role could bypass row-level security: ${problems.join('; ')}`);
    this.name = 'UnsafeRuntimeRoleError';
  }
}

async function startEmbedded(config: AppConfig, log: Log): Promise<{ servers: DatabaseServer[]; stop: () => Promise<void> }> {
  const dir = config.database.embeddedDir;
  const secrets = loadOrCreateLocalSecrets(join(dir, 'secrets.json'));
  const clusters: EmbeddedCluster[] = [];
  const servers: DatabaseServer[] = [];
  for (const [i, key] of [PRIMARY_SERVER, SECONDARY_SERVER].entries()) {
    const port = config.database.embeddedPort + i;
    log(`starting embedded PostgreSQL '${key}' on 127.0.0.1:${port} (data in ${join(dir, key)})`);
    const cluster = await startEmbeddedCluster({ dataDir: join(dir, key), port, password: secrets.superuserPassword });
    clusters.push(cluster);
    const database = key === PRIMARY_SERVER ? EMBEDDED_DATABASE : 'postgres';
    const superuser = new pg.Client({ host: '127.0.0.1', port, user: cluster.user, password: cluster.password, database: 'postgres' });
    await superuser.connect();
    try {
      await ensurePlatformRoles(superuser, {
        ownerUser: OWNER_ROLE,
        ownerPassword: secrets.ownerPassword,
        appUser: config.database.appUser,
        appPassword: secrets.appPassword,
      });
      if (key === PRIMARY_SERVER) await ensureDatabase(superuser, EMBEDDED_DATABASE, OWNER_ROLE);
    } finally {
      await superuser.end();
    }
    servers.push({
      key,
      host: '127.0.0.1',
      port,
      database,
      ownerUser: OWNER_ROLE,
      ownerPassword: secrets.ownerPassword,
      appUser: config.database.appUser,
      appPassword: secrets.appPassword,
    });
  }
  return { servers, stop: async () => void (await Promise.all(clusters.map((c) => c.stop()))) };
}

function configuredServers(config: AppConfig): DatabaseServer[] {
  const app = { user: config.database.appUser, password: config.database.appPassword ?? '' };
  const servers = [serverFromUrl(PRIMARY_SERVER, config.database.url!, app)];
  if (config.database.secondaryUrl) servers.push(serverFromUrl(SECONDARY_SERVER, config.database.secondaryUrl, app));
  return servers;
}

/** Refuses a runtime role that is superuser, has BYPASSRLS or owns tables, on every server. */
export async function assertRuntimeRoleSafe(server: DatabaseServer): Promise<void> {
  const client = new pg.Client({
    host: server.host,
    port: server.port,
    user: server.appUser,
    password: server.appPassword,
    database: server.database,
    connectionTimeoutMillis: 10_000,
  });
  await client.connect();
  try {
    const problems = roleSafetyProblems(await inspectRoleSafety(client));
    if (problems.length) throw new UnsafeRuntimeRoleError(problems.map((p) => `${p} on ${describeServer(server)}`));
  } finally {
    await client.end();
  }
}

/** Progress over the tenant placements: called once with done = 0 before the first, then after each one. */
export type PlacementProgress = (done: number, total: number, placementLabel: string) => void;

/** Brings every placement that lives outside the shared schema up to the current tenant migrations. */
export async function migrateTenantPlacements(runtime: DatabaseRuntime, log: Log, onProgress?: PlacementProgress): Promise<number> {
  const rows = await withOwner(runtime.primary, runtime.primary.database, async (c) =>
    (
      await c.query<{ id: string; slug: string; tier: Tier; server_key: string; database_name: string; schema_name: string }>(
        `SELECT id, slug, tier, server_key, database_name, schema_name FROM ${CONTROL_SCHEMA}.tenants
          WHERE tier <> 'shared' AND status IN ('active', 'suspended') ORDER BY created_at`,
      )
    ).rows,
  );
  onProgress?.(0, rows.length, '');
  let changed = 0;
  for (const [i, r] of rows.entries()) {
    // One broken placement (an unreachable server, a failing migration) must not keep every other
    // tenant from being served: it is logged and set aside.
    try {
      const applied = await preparePlacement(runtime, {
        tier: r.tier,
        serverKey: r.server_key,
        database: r.database_name,
        schema: r.schema_name,
      });
      if (applied.length) changed++;
    } catch (err) {
      const reason = (err as Error).message;
      runtime.failedPlacements.set(r.id, { tenant: r.slug, reason });
      log(`tenant migrations failed for '${r.slug}' (${r.tier} on ${r.server_key}): ${reason}`);
    }
    onProgress?.(i + 1, rows.length, `${r.slug} (${r.tier} on ${r.server_key})`);
  }
  if (changed) log(`tenant migrations applied to ${changed} of ${rows.length} own placements`);
  return rows.length;
}

/**
 * The servers (embedded ones started when there is no DATABASE_URL) and the runtime that
 * describes them, with nothing migrated or checked yet: for read-only tools. stop() ends
 * the embedded servers.
 */
export async function openDatabaseRuntime(config: AppConfig, log: Log = () => undefined): Promise<DatabaseRuntime> {
  const embedded = config.database.url ? undefined : await startEmbedded(config, log);
  const servers = embedded?.servers ?? configuredServers(config);
  const primary = servers[0];
  return {
    servers: new Map(servers.map((s) => [s.key, s])),
    primary,
    defaultDedicatedServer: servers.length > 1 ? servers[1].key : primary.key,
    controlMigrations: loadSqlMigrations(fromRoot('migrations', 'control')),
    tenantMigrations: loadSqlMigrations(fromRoot('migrations', 'tenant')),
    failedPlacements: new Map(),
    stop: async () => embedded?.stop(),
  };
}

/**
 * Everything the app needs from its databases before it serves: servers (embedded when no
 * DATABASE_URL), roles, control-plane and tenant migrations on every placement, the server
 * registry, and proof that the runtime role cannot bypass RLS.
 */
export async function prepareDatabases(
  config: AppConfig,
  log: Log = () => undefined,
  onProgress?: PlacementProgress,
): Promise<DatabaseRuntime> {
  const runtime = await openDatabaseRuntime(config, log);
  const primary = runtime.primary;
  const servers = [...runtime.servers.values()];
  try {
    await withOwner(primary, primary.database, async (c) => {
      const control = await migrateSchema(c, CONTROL_SCHEMA, runtime.controlMigrations, grantControlSchema(primary.appUser));
      const shared = await migrateSchema(c, SHARED_SCHEMA, runtime.tenantMigrations, grantTenantSchema(SHARED_SCHEMA, primary.appUser));
      if (control.length + shared.length) log(`migrated control plane (+${control.length}) and shared tier (+${shared.length})`);
      for (const s of servers) {
        await c.query(
          `INSERT INTO ${CONTROL_SCHEMA}.database_servers (key, host, port) VALUES ($1, $2, $3)
           ON CONFLICT (key) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port, updated_at = now()
           WHERE database_servers.host IS DISTINCT FROM EXCLUDED.host OR database_servers.port IS DISTINCT FROM EXCLUDED.port`,
          [s.key, s.host, s.port],
        );
      }
      // A provisioning that a crash interrupted never finished: say so instead of serving it.
      await c.query(
        `UPDATE ${CONTROL_SCHEMA}.tenants SET status = 'failed', updated_at = now(),
                status_reason = 'provisioning was interrupted by a restart; create the tenant again'
          WHERE status = 'provisioning' AND updated_at < now() - interval '10 minutes'`,
      );
    });
    for (const s of servers) await assertRuntimeRoleSafe(s);
    await migrateTenantPlacements(runtime, log, onProgress);
    return runtime;
  } catch (err) {
    await runtime.stop().catch(() => undefined);
    throw err;
  }
}
