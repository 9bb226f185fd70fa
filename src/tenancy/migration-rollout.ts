import pg from 'pg';
import { DatabaseServer, MigrationFailure, migrateSchema, quoteIdent } from '../../libs/postgres/index.js';
import { CONTROL_SCHEMA, DatabaseRuntime, grantTenantSchema, preparePlacement, SHARED_SCHEMA } from './placements.js';
import type { Placement, TenantStatus, Tier } from './tenant-route.js';

/** Tenants whose placement is kept migrated; provisioning and failed ones have nothing to keep. */
export const MIGRATED_STATUSES: readonly TenantStatus[] = ['active', 'suspended', 'pending_deletion'];

export interface RolloutPlacement extends Placement {
  /** Null for the shared placement, which holds every shared-tier tenant. */
  tenantId: string | null;
  tenantSlug: string | null;
  /** What the bookkeeping said before this run (null: never recorded). */
  recorded: { status: 'ok' | 'failed' | 'pending'; version: string | null } | null;
}

export type PlacementResult = 'migrated' | 'up_to_date' | 'failed' | 'skipped';

export interface PlacementOutcome {
  placement: RolloutPlacement;
  result: PlacementResult;
  /** 1-based; 0 for placements the bookkeeping showed up to date, which join no wave. */
  wave: number;
  applied: string[];
  /** The last migration the placement has (its own _migrations table), when known. */
  version: string | null;
  error?: string;
  startedAt?: number;
  finishedAt?: number;
}

export interface RolloutProgress {
  /** Placements settled so far (up to date, migrated, failed) out of total. */
  done: number;
  total: number;
  migrated: number;
  upToDate: number;
  failed: number;
  wave: number;
  waves: number;
  placement: string;
}

export interface RolloutOptions {
  /** Sizes of the first waves; everything left after them is one more wave. Default [1, 10]. */
  waves?: number[];
  /** Placements migrated at the same time within a wave. Default 4. */
  concurrency?: number;
  /** Slugs of schema or dedicated tenants that form the first wave, in place of its size. */
  canaries?: string[];
  /** After a wave with a failure, attempt no further wave (what is left is reported as skipped). */
  stopOnFailure?: boolean;
  /** Connect to every placement, even those the bookkeeping shows up to date. */
  recheck?: boolean;
  onProgress?: (progress: RolloutProgress) => void;
}

export interface WaveSummary {
  wave: number;
  placements: number;
  migrated: number;
  upToDate: number;
  failed: number;
}

export interface RolloutReport {
  /** The newest tenant migration this code knows. */
  latest: string | null;
  total: number;
  migrated: number;
  upToDate: number;
  failed: PlacementOutcome[];
  skipped: number;
  stopped: boolean;
  waves: WaveSummary[];
  outcomes: PlacementOutcome[];
  durationMs: number;
}

/** Options that cannot be honoured (a canary that is not a migrated schema or dedicated tenant). */
export class RolloutOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RolloutOptionsError';
  }
}

export function latestMigration(runtime: DatabaseRuntime): string | null {
  return runtime.tenantMigrations.length ? runtime.tenantMigrations[runtime.tenantMigrations.length - 1].name : null;
}

export function placementLabel(p: Pick<RolloutPlacement, 'tenantSlug' | 'tier' | 'serverKey'>): string {
  return p.tenantSlug ? `${p.tenantSlug} (${p.tier} on ${p.serverKey})` : `shared tier (on ${p.serverKey})`;
}

/** Migration names sort as they apply (forward-only, numbered), compared byte-wise like COLLATE "C". */
export function isAtLeast(version: string | null, latest: string | null): boolean {
  if (latest === null) return true;
  return version !== null && version >= latest;
}

export interface RolloutPlan {
  upToDate: RolloutPlacement[];
  waves: RolloutPlacement[][];
}

/**
 * Orders and groups the placements that need work. `own` comes oldest first.
 *
 * Canaries go first: the named ones, or else the oldest own placement (the longest-lived schema,
 * the likeliest to carry drift that a new migration trips on), so a bad migration fails on one
 * tenant before it reaches many. The shared placement holds most tenants, so a failure there costs
 * the most: it is the last wave, alone, reached only after every schema and dedicated placement
 * has shown the migration works (and, with stopOnFailure, only if none failed).
 */
export function planRollout(
  shared: RolloutPlacement | null,
  own: RolloutPlacement[],
  opts: { latest: string | null; waves: number[]; canaries?: string[]; recheck?: boolean },
): RolloutPlan {
  const needsWork = (p: RolloutPlacement) =>
    opts.recheck || !(p.recorded?.status === 'ok' && isAtLeast(p.recorded.version, opts.latest));
  const all = shared ? [...own, shared] : own;
  const upToDate = all.filter((p) => !needsWork(p));
  const work = own.filter(needsWork);
  const waves: RolloutPlacement[][] = [];
  let sizes = opts.waves;
  let rest = work;
  if (opts.canaries?.length) {
    const named = [...new Set(opts.canaries)].map((slug) => work.find((p) => p.tenantSlug === slug)).filter((p) => p !== undefined);
    if (named.length) waves.push(named);
    rest = work.filter((p) => !named.includes(p));
    sizes = opts.waves.slice(1);
  }
  for (const size of sizes) {
    if (!rest.length) break;
    waves.push(rest.slice(0, size));
    rest = rest.slice(size);
  }
  if (rest.length) waves.push(rest);
  if (shared && needsWork(shared)) waves.push([shared]);
  return { upToDate, waves };
}

/** Every placement that is kept migrated, with what the bookkeeping says of it; own placements oldest first. */
export async function listPlacements(
  runtime: DatabaseRuntime,
  control: pg.ClientBase | pg.Pool,
): Promise<{ shared: RolloutPlacement; own: RolloutPlacement[] }> {
  const primary = runtime.primary;
  const { rows } = await control.query<{
    id: string | null;
    slug: string | null;
    tier: Tier;
    server_key: string;
    database_name: string;
    schema_name: string;
    status: 'ok' | 'failed' | 'pending' | null;
    version: string | null;
  }>(
    `SELECT t.id, t.slug, t.tier, t.server_key, t.database_name, t.schema_name, pm.status, pm.version, t.created_at
       FROM ${CONTROL_SCHEMA}.tenants t
       LEFT JOIN ${CONTROL_SCHEMA}.placement_migrations pm
              ON (pm.server_key, pm.database_name, pm.schema_name) = (t.server_key, t.database_name, t.schema_name)
      WHERE t.tier <> 'shared' AND t.status = ANY ($1)
      UNION ALL
     SELECT NULL, NULL, 'shared', $2, $3, $4, pm.status, pm.version, NULL
       FROM (SELECT 1) AS one
       LEFT JOIN ${CONTROL_SCHEMA}.placement_migrations pm ON (pm.server_key, pm.database_name, pm.schema_name) = ($2, $3, $4)
      ORDER BY created_at NULLS LAST, id`,
    [MIGRATED_STATUSES, primary.key, primary.database, SHARED_SCHEMA],
  );
  const placements = rows.map(
    (r): RolloutPlacement => ({
      tier: r.tier,
      serverKey: r.server_key,
      database: r.database_name,
      schema: r.schema_name,
      tenantId: r.id,
      tenantSlug: r.slug,
      recorded: r.status ? { status: r.status, version: r.version } : null,
    }),
  );
  return { shared: placements[placements.length - 1], own: placements.slice(0, -1) };
}

/**
 * Owner connections per (server, database): one small pool each, so a thousand schemas in one
 * database reuse a few connections instead of one connection (and one authentication) each. A
 * database's pool is closed once none of its placements is left, so many dedicated databases never
 * hold connections at once.
 */
class OwnerPools {
  private readonly pools = new Map<string, { pool: pg.Pool; left: number }>();

  constructor(
    private readonly max: number,
    /** Placements still to come per pool key; the primary database is kept open for the bookkeeping. */
    private readonly remaining: Map<string, number>,
  ) {}

  static key(server: DatabaseServer, database: string): string {
    return `${server.key}\u0000${database}`;
  }

  get(server: DatabaseServer, database: string): pg.Pool {
    const key = OwnerPools.key(server, database);
    let entry = this.pools.get(key);
    if (!entry) {
      const pool = new pg.Pool({
        host: server.host,
        port: server.port,
        user: server.ownerUser,
        password: server.ownerPassword,
        database,
        max: this.max,
        idleTimeoutMillis: 5_000,
        connectionTimeoutMillis: 10_000,
        application_name: 'tenancy-migrate',
      });
      pool.on('error', () => undefined);
      entry = { pool, left: this.remaining.get(key) ?? Infinity };
      this.pools.set(key, entry);
    }
    return entry.pool;
  }

  async done(server: DatabaseServer, database: string): Promise<void> {
    const key = OwnerPools.key(server, database);
    const entry = this.pools.get(key);
    if (!entry) return;
    entry.left -= 1;
    if (entry.left <= 0) {
      this.pools.delete(key);
      await entry.pool.end().catch(() => undefined);
    }
  }

  async end(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(all.map((e) => e.pool.end().catch(() => undefined)));
  }
}

/** An error as it may be stored and shown: which migration, the message and its code, no credentials. */
export function describeFailure(err: unknown, runtime: DatabaseRuntime): string {
  const e = err as MigrationFailure & { code?: string };
  let text = `${e.migration ? `${e.migration}: ` : ''}${e.message ?? String(err)}${typeof e.code === 'string' ? ` (${e.code})` : ''}`;
  text = text.replace(/(postgres(?:ql)?:\/\/)[^\s@/]*@/gi, '$1***@');
  for (const s of runtime.servers.values()) {
    for (const secret of [s.ownerPassword, s.appPassword]) if (secret) text = text.split(secret).join('***');
  }
  return text.length > 1000 ? `${text.slice(0, 999)}…` : text;
}

async function runLimited<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** Results are written in batches: a commit per placement would cost as much as the migration itself. */
const RECORD_BATCH = 100;

const RECORD = `
  INSERT INTO ${CONTROL_SCHEMA}.placement_migrations
         (server_key, database_name, schema_name, tenant_id, tier, version, status, error, attempted_at, migrated_at)
  SELECT s, d, n, t, r, v, st, e, now(), CASE WHEN m THEN now() END
    FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[])
         AS u (s, d, n, t, r, v, st, e, m)
  ON CONFLICT (server_key, database_name, schema_name) DO UPDATE
     SET tenant_id = EXCLUDED.tenant_id, tier = EXCLUDED.tier,
         version = coalesce(EXCLUDED.version, placement_migrations.version),
         status = EXCLUDED.status, error = EXCLUDED.error, attempted_at = EXCLUDED.attempted_at,
         migrated_at = coalesce(EXCLUDED.migrated_at, placement_migrations.migrated_at)`;

/**
 * Writes outcomes to control.placement_migrations, RECORD_BATCH at a time and at the end of each
 * wave. A crash loses at most a batch of records, which the next run redoes (migrateSchema skips
 * what is applied already).
 */
class Recorder {
  private buffer: PlacementOutcome[] = [];
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly control: pg.Pool,
    private readonly runtime: DatabaseRuntime,
  ) {}

  add(outcome: PlacementOutcome): Promise<void> {
    this.buffer.push(outcome);
    return this.buffer.length >= RECORD_BATCH ? this.flush() : Promise.resolve();
  }

  flush(): Promise<void> {
    const batch = this.buffer.splice(0);
    if (batch.length) this.writing = this.writing.then(() => this.write(batch));
    return this.writing;
  }

  private async write(batch: PlacementOutcome[]): Promise<void> {
    // One row per placement key, even if two tenant rows ever named the same placement.
    const rows = [...new Map(batch.map((o) => [`${o.placement.serverKey}/${o.placement.database}/${o.placement.schema}`, o])).values()];
    const ok = (o: PlacementOutcome) => o.result !== 'failed';
    try {
      await this.control.query(RECORD, [
        rows.map((o) => o.placement.serverKey),
        rows.map((o) => o.placement.database),
        rows.map((o) => o.placement.schema),
        rows.map((o) => o.placement.tenantId),
        rows.map((o) => o.placement.tier),
        rows.map((o) => o.version),
        rows.map((o) => (ok(o) ? 'ok' : 'failed')),
        rows.map((o) => (ok(o) ? null : (o.error ?? null))),
        rows.map((o) => o.applied.length > 0),
      ]);
    } catch (err) {
      // Unrecorded means unknown to a start-up that does not migrate: report these as failed (the
      // next run redoes them; each placement's own _migrations table stays the truth).
      const why = `recording the result in ${CONTROL_SCHEMA}.placement_migrations failed: ${describeFailure(err, this.runtime)}`;
      for (const o of batch) {
        o.error = o.error ? `${o.error}; ${why}` : why;
        o.result = 'failed';
      }
    }
  }
}

/** Placements about to be worked on are 'pending' until their turn, so a stopped rollout shows what it left behind. */
const MARK_PENDING = `
  INSERT INTO ${CONTROL_SCHEMA}.placement_migrations (server_key, database_name, schema_name, tenant_id, tier, status, attempted_at)
  SELECT s, d, n, t, r, 'pending', now()
    FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[]) AS u (s, d, n, t, r)
  ON CONFLICT (server_key, database_name, schema_name) DO UPDATE
     SET status = 'pending', tenant_id = EXCLUDED.tenant_id, tier = EXCLUDED.tier`;

/**
 * Brings every placement (shared schema, each schema tenant, each dedicated database) to the
 * current tenant migrations, in waves, and records each result in control.placement_migrations.
 * A failing placement is recorded and the rollout goes on (or, with stopOnFailure, ends after the
 * wave). Safe to rerun: placements recorded as up to date are skipped unless recheck, and
 * migrateSchema itself skips what a placement already has.
 */
export async function runMigrationRollout(runtime: DatabaseRuntime, options: RolloutOptions = {}): Promise<RolloutReport> {
  const started = performance.now();
  const waveSizes = options.waves ?? [1, 10];
  const concurrency = options.concurrency ?? 4;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RolloutOptionsError('concurrency must be a whole number of at least 1');
  if (waveSizes.some((s) => !Number.isInteger(s) || s < 1)) throw new RolloutOptionsError('wave sizes must be whole numbers of at least 1');
  const latest = latestMigration(runtime);
  const primary = runtime.primary;
  const primaryKey = OwnerPools.key(primary, primary.database);
  const remaining = new Map<string, number>();
  // The primary database also takes the bookkeeping writes: one connection more than the workers.
  const pools = new OwnerPools(concurrency + 1, remaining);
  try {
    const control = pools.get(primary, primary.database);
    const { shared, own } = await listPlacements(runtime, control);
    if (options.canaries?.length) await checkCanaries(control, own, options.canaries);
    const plan = planRollout(shared, own, { latest, waves: waveSizes, canaries: options.canaries, recheck: options.recheck });
    const total = own.length + 1;

    const outcomes: PlacementOutcome[] = plan.upToDate.map((placement) => ({
      placement,
      result: 'up_to_date',
      wave: 0,
      applied: [],
      version: placement.recorded?.version ?? null,
    }));
    const work = plan.waves.flat();
    const behind = work.filter((p) => !(p.recorded?.status === 'ok' && isAtLeast(p.recorded.version, latest)));
    for (const p of work) {
      const key = runtime.servers.has(p.serverKey) ? OwnerPools.key(runtime.servers.get(p.serverKey)!, p.database) : '';
      if (key !== primaryKey) remaining.set(key, (remaining.get(key) ?? 0) + 1);
    }
    // Not those only rechecked: a recheck that is interrupted must not make healthy placements look behind.
    if (behind.length) {
      await control.query(MARK_PENDING, [
        behind.map((p) => p.serverKey),
        behind.map((p) => p.database),
        behind.map((p) => p.schema),
        behind.map((p) => p.tenantId),
        behind.map((p) => p.tier),
      ]);
    }

    const counts = { migrated: 0, upToDate: outcomes.length, failed: 0 };
    const progress = (wave: number, placement: string) =>
      options.onProgress?.({
        done: counts.migrated + counts.upToDate + counts.failed,
        total,
        ...counts,
        wave,
        waves: plan.waves.length,
        placement,
      });
    progress(0, '');

    const recorder = new Recorder(control, runtime);
    const ctx: RunContext = { runtime, pools, down: new Map() };
    const waves: WaveSummary[] = [];
    let stopped = false;
    for (const [i, wave] of plan.waves.entries()) {
      const number = i + 1;
      if (stopped) {
        for (const placement of wave) {
          outcomes.push({ placement, result: 'skipped', wave: number, applied: [], version: placement.recorded?.version ?? null });
        }
        continue;
      }
      await runLimited(wave, concurrency, async (placement) => {
        const outcome = await migratePlacement(ctx, placement, number);
        outcomes.push(outcome);
        counts[outcome.result === 'migrated' ? 'migrated' : outcome.result === 'failed' ? 'failed' : 'upToDate'] += 1;
        progress(number, placementLabel(placement));
        await recorder.add(outcome);
      });
      await recorder.flush();
      const done = outcomes.filter((o) => o.wave === number);
      const summary: WaveSummary = {
        wave: number,
        placements: wave.length,
        migrated: done.filter((o) => o.result === 'migrated').length,
        upToDate: done.filter((o) => o.result === 'up_to_date').length,
        failed: done.filter((o) => o.result === 'failed').length,
      };
      waves.push(summary);
      if (summary.failed && options.stopOnFailure) stopped = true;
    }

    return {
      latest,
      total,
      migrated: outcomes.filter((o) => o.result === 'migrated').length,
      upToDate: outcomes.filter((o) => o.result === 'up_to_date').length,
      failed: outcomes.filter((o) => o.result === 'failed'),
      skipped: outcomes.filter((o) => o.result === 'skipped').length,
      stopped,
      waves,
      outcomes,
      durationMs: Math.round(performance.now() - started),
    };
  } finally {
    await pools.end();
  }
}

async function checkCanaries(control: pg.Pool, own: RolloutPlacement[], canaries: string[]): Promise<void> {
  const missing = canaries.filter((slug) => !own.some((p) => p.tenantSlug === slug));
  if (!missing.length) return;
  const { rows } = await control.query<{ slug: string; tier: Tier; status: TenantStatus }>(
    `SELECT slug, tier, status FROM ${CONTROL_SCHEMA}.tenants WHERE slug = ANY ($1)`,
    [missing],
  );
  const problems = missing.map((slug) => {
    const t = rows.find((r) => r.slug === slug);
    if (!t) return `'${slug}': no tenant has this slug`;
    if (t.tier === 'shared') {
      return `'${slug}' is a shared-tier tenant: its rows live in the shared placement, which is always the last wave`;
    }
    return `'${slug}' is ${t.status}, so its placement is not migrated`;
  });
  throw new RolloutOptionsError(`bad canary: ${problems.join('; ')}`);
}

/** Errors that say the server itself cannot be reached: its other placements fail at once rather than each waiting. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', '57P03']);

interface RunContext {
  runtime: DatabaseRuntime;
  pools: OwnerPools;
  /** Servers found unreachable in this run, with the error. */
  down: Map<string, string>;
}

async function migratePlacement(ctx: RunContext, placement: RolloutPlacement, wave: number): Promise<PlacementOutcome> {
  const { runtime, pools } = ctx;
  const outcome: PlacementOutcome = {
    placement,
    result: 'failed',
    wave,
    applied: [],
    version: placement.recorded?.version ?? null,
    startedAt: performance.now(),
  };
  const server = runtime.servers.get(placement.serverKey);
  try {
    if (!server) throw new Error(`database server '${placement.serverKey}' is not configured`);
    const down = ctx.down.get(server.key);
    if (down) throw new Error(`not attempted: server '${server.key}' was unreachable earlier in this run (${down})`);
    try {
      const { applied, version } = await migrateOn(pools.get(server, placement.database), placement, runtime, server.appUser);
      Object.assign(outcome, { applied, version });
    } catch (err) {
      // A dedicated database that was never made (an interrupted restore, say) is made as provisioning does.
      if ((err as { code?: string }).code !== '3D000' || placement.tier !== 'dedicated') throw err;
      outcome.applied = await preparePlacement(runtime, placement);
      outcome.version = latestMigration(runtime);
    }
    outcome.result = outcome.applied.length ? 'migrated' : 'up_to_date';
  } catch (err) {
    outcome.error = describeFailure(err, runtime);
    const code = (err as { code?: string }).code;
    if (server && code && UNREACHABLE.has(code)) ctx.down.set(server.key, outcome.error);
    // The failure was inside a migration, so the placement is reachable: read where it stands.
    if (server && (err as MigrationFailure).migration) {
      outcome.version = await readVersion(pools.get(server, placement.database), placement.schema).catch(() => outcome.version);
    }
  } finally {
    outcome.finishedAt = performance.now();
    if (server) await pools.done(server, placement.database);
  }
  return outcome;
}

async function migrateOn(
  pool: pg.Pool,
  placement: RolloutPlacement,
  runtime: DatabaseRuntime,
  appUser: string,
): Promise<{ applied: string[]; version: string | null }> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const grant = grantTenantSchema(placement.schema, appUser);
    let version: string | null = null;
    const applied = await migrateSchema(client, placement.schema, runtime.tenantMigrations, async (c) => {
      await grant(c);
      const last = await c.query<{ v: string | null }>(`SELECT max(name COLLATE "C") AS v FROM ${quoteIdent(placement.schema)}._migrations`);
      version = last.rows[0].v;
    });
    return { applied, version };
  } catch (err) {
    broken = err as Error;
    throw err;
  } finally {
    // A connection that failed may be mid-transaction or dead: never hand it to the next placement.
    client.release(broken);
  }
}

async function readVersion(pool: pg.Pool, schema: string): Promise<string | null> {
  const { rows } = await pool.query<{ v: string | null }>(`SELECT max(name COLLATE "C") AS v FROM ${quoteIdent(schema)}._migrations`);
  return rows[0].v;
}

/** A tenant placement whose bookkeeping says it is behind this code or failed, for start-up without migrations. */
export interface BehindPlacement {
  tenantId: string;
  slug: string;
  status: 'ok' | 'failed' | 'pending';
  version: string | null;
  error: string | null;
}

/**
 * Tenants whose placement the bookkeeping shows failed, pending or at an older migration than this
 * code's newest. Placements never recorded are not listed: they were migrated when provisioned.
 */
export async function findBehindPlacements(runtime: DatabaseRuntime, control: pg.ClientBase): Promise<BehindPlacement[]> {
  const { rows } = await control.query<{ id: string; slug: string; status: BehindPlacement['status']; version: string | null; error: string | null }>(
    `SELECT t.id, t.slug, pm.status, pm.version, pm.error
       FROM ${CONTROL_SCHEMA}.tenants t
       JOIN ${CONTROL_SCHEMA}.placement_migrations pm
         ON (pm.server_key, pm.database_name, pm.schema_name) = (t.server_key, t.database_name, t.schema_name)
      WHERE t.status = ANY ($1)
        AND (pm.status <> 'ok' OR ($2::text IS NOT NULL AND (pm.version IS NULL OR pm.version COLLATE "C" < $2::text COLLATE "C")))`,
    [MIGRATED_STATUSES, latestMigration(runtime)],
  );
  return rows.map((r) => ({ tenantId: r.id, slug: r.slug, status: r.status, version: r.version, error: r.error }));
}
