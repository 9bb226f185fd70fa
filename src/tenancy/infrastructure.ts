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
  findBehindPlacements,
  latestMigration,
  placementLabel,
  RolloutOptions,
  RolloutPlacement,
  RolloutReport,
  runMigrationRollout,
} from './migration-rollout.js';
import { CONTROL_SCHEMA, DatabaseRuntime, grantControlSchema, withOwner } from './placements.js';

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

/**
 * Brings every placement (shared tier, each schema and dedicated tenant) up to the current tenant
 * migrations in waves (see migration-rollout.ts). A placement that fails is set aside (its tenants
 * answer 503) so that every other tenant can be served; with the shared placement, that is every
 * shared-tier tenant.
 */
export async function migrateTenantPlacements(
  runtime: DatabaseRuntime,
  log: Log,
  onProgress?: PlacementProgress,
  options: RolloutOptions = {},
): Promise<RolloutReport> {
  let started = false;
  const report = await runMigrationRollout(runtime, {
    ...options,
    onProgress: (p) => {
      if (!started) onProgress?.(0, p.total, '');
      started = true;
      if (p.done) onProgress?.(p.done, p.total, p.placement);
    },
  });
  for (const f of report.failed) {
    log(`tenant migrations failed for ${placementLabel(f.placement)}: ${f.error}`);
    await setAside(runtime, f.placement, `tenant migrations failed: ${f.error}`);
  }
  if (report.migrated) log(`tenant migrations applied to ${report.migrated} of ${report.total} placements`);
  return report;
}

async function setAside(runtime: DatabaseRuntime, p: RolloutPlacement, reason: string): Promise<void> {
  if (p.tenantId) {
    runtime.failedPlacements.set(p.tenantId, { tenant: p.tenantSlug!, reason });
    return;
  }
  const shared = await withOwner(runtime.primary, runtime.primary.database, async (c) =>
    (await c.query<{ id: string; slug: string }>(`SELECT id, slug FROM ${CONTROL_SCHEMA}.tenants WHERE tier = 'shared'`)).rows,
  );
  for (const t of shared) runtime.failedPlacements.set(t.id, { tenant: t.slug, reason });
}

/**
 * Start-up with MIGRATE_ON_START=false migrates no tenant placement: placements the bookkeeping
 * shows failed, pending or behind this code are set aside (503) rather than served by code newer
 * than their schema. Placements never recorded are served: they were migrated when provisioned.
 */
export async function setAsideUnmigratedPlacements(runtime: DatabaseRuntime, log: Log): Promise<number> {
  const behind = await withOwner(runtime.primary, runtime.primary.database, (c) => findBehindPlacements(runtime, c));
  const latest = latestMigration(runtime);
  for (const b of behind) {
    const reason =
      b.status === 'failed'
        ? `tenant migrations failed: ${b.error ?? 'no error recorded'}`
        : `tenant migrations are behind (at ${b.version ?? 'none'}, this code needs ${latest}); run \`npm run migrate\``;
    runtime.failedPlacements.set(b.tenantId, { tenant: b.slug, reason });
  }
  if (behind.length) {
    log(`MIGRATE_ON_START=false: ${behind.length} tenant${behind.length === 1 ? ' is' : 's are'} set aside (503) until \`npm run migrate\` brings their placements up to ${latest}`);
  }
  return behind.length;
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
 * DATABASE_URL), roles, control-plane migrations, the server registry, proof that the runtime role
 * cannot bypass RLS, then the tenant migrations on every placement (MIGRATE_ON_START, the default)
 * or, without them, placements the bookkeeping shows behind set aside.
 */
export async function prepareDatabases(
  config: AppConfig,
  log: Log = () => undefined,
  onProgress?: PlacementProgress,
): Promise<DatabaseRuntime> {
  const runtime = await openDatabaseRuntime(config, log);
  try {
    await prepareControlPlane(runtime, log);
    if (config.migrations.onStart) {
      await migrateTenantPlacements(runtime, log, onProgress, { waves: config.migrations.waves, concurrency: config.migrations.concurrency });
    } else {
      await setAsideUnmigratedPlacements(runtime, log);
    }
    return runtime;
  } catch (err) {
    await runtime.stop().catch(() => undefined);
    throw err;
  }
}

/**
 * What every start-up and `migrate` do before any tenant placement: control-plane migrations, the
 * server registry, interrupted provisionings marked failed, and proof on every server that the
 * runtime role cannot bypass RLS.
 */
export async function prepareControlPlane(runtime: DatabaseRuntime, log: Log): Promise<void> {
  const primary = runtime.primary;
  const servers = [...runtime.servers.values()];
  await withOwner(primary, primary.database, async (c) => {
    const control = await migrateSchema(c, CONTROL_SCHEMA, runtime.controlMigrations, grantControlSchema(primary.appUser));
    if (control.length) log(`migrated control plane (+${control.length})`);
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
}
