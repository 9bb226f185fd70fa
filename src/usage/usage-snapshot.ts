import { Inject, Injectable, Logger } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type pg from 'pg';
import type { AppConfig } from '../../config/configuration.js';
import { quoteIdent } from '../../libs/postgres/index.js';
import { tenantTables } from '../lifecycle/tenant-data.js';
import { DATABASE_RUNTIME, DatabaseRuntime } from '../tenancy/placements.js';
import { TENANT_COLUMNS, TenantRow, toRoute } from '../tenancy/routing-table.service.js';
import { TenantSession } from '../tenancy/tenant-context.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { TenantAccess, TenantRoute } from '../tenancy/tenant-route.js';
import { utcDay } from './usage-queries.js';

/** Stands in for a user in the snapshot's tenant transactions (which are read-only and audit nothing). */
const SNAPSHOT_USER = '00000000-0000-0000-0000-000000000000';
const WRITE_BATCH = 1_000;

export interface SnapshotResult {
  day: string;
  tenants: number;
  /** Tenants whose rows could not be counted this time (logged); the next snapshot tries again. */
  failed: number;
}

interface TenantSnapshot {
  tenant_id: string;
  rows_stored: Record<string, number>;
  active_seats: number;
}

/**
 * The snapshot half of usage: today's rows_stored ({table: rows}) and active_seats (memberships)
 * of every active tenant, overwritten in usage_daily every USAGE_SNAPSHOT_INTERVAL_MS by a
 * sweeper step.
 *
 * Rows are counted the way a request reads them: through the app's pool for the tenant's
 * placement, in a read-only transaction confined to the tenant (RLS on every tier, the tenant's
 * schema on the schema tier). The counts are exact (count(*) per tenant table, one statement per
 * tenant): their cost grows with the rows, which is why this runs hourly by default and one
 * tenant at a time. Estimates (pg_class.reltuples) would be cheap but exist per table, not per
 * tenant, so on the shared tier they cannot say whose rows they are.
 *
 * Each instance snapshots on its own schedule; a snapshot overwrites the last one, so instances
 * running it at once cost work, never wrong numbers.
 */
@Injectable()
export class UsageSnapshot {
  private readonly logger = new Logger(UsageSnapshot.name);
  private readonly intervalMs: number;
  private lastRunAt = 0;
  private running?: Promise<SnapshotResult>;

  constructor(
    private readonly pools: TenantPools,
    @Inject(DATABASE_RUNTIME) private readonly runtime: DatabaseRuntime,
    config: ConfigService<AppConfig, true>,
  ) {
    this.intervalMs = config.get('usage', { infer: true }).snapshotIntervalMs;
  }

  /** The sweeper step: a snapshot when the last one (by this instance) is USAGE_SNAPSHOT_INTERVAL_MS old; 0 turns it off. */
  async runIfDue(): Promise<SnapshotResult | null> {
    if (this.intervalMs === 0 || Date.now() - this.lastRunAt < this.intervalMs) return null;
    return this.run();
  }

  /** A snapshot of every active tenant now. */
  run(): Promise<SnapshotResult> {
    this.running ??= this.snapshotAll().finally(() => (this.running = undefined));
    return this.running;
  }

  private async snapshotAll(): Promise<SnapshotResult> {
    this.lastRunAt = Date.now();
    const control = this.pools.control();
    const tenants = (await control.query<TenantRow[]>(`SELECT ${TENANT_COLUMNS} FROM control.tenants WHERE status = 'active' ORDER BY id`)).map(toRoute);
    const seatRows = await control.query<Array<{ tenant_id: string; seats: number }>>(
      `SELECT tenant_id, count(*)::int AS seats FROM control.memberships GROUP BY tenant_id`,
    );
    const seats = new Map(seatRows.map((r) => [r.tenant_id, r.seats]));
    const tablesOf = new Map<string, string[]>();
    const snapshots: TenantSnapshot[] = [];
    let failed = 0;
    for (const route of tenants) {
      // A placement set aside at start-up (its migrations failed) is not served, nor counted.
      if (this.runtime.failedPlacements.has(route.id)) continue;
      try {
        snapshots.push({ tenant_id: route.id, rows_stored: await this.countRows(route, tablesOf), active_seats: seats.get(route.id) ?? 0 });
      } catch (err) {
        failed++;
        this.logger.warn({ tenantId: route.id, err: (err as Error).message }, 'rows of a tenant could not be counted for usage; the next snapshot tries again');
      }
    }
    const day = utcDay(new Date());
    for (let i = 0; i < snapshots.length; i += WRITE_BATCH) {
      await control.query(
        `INSERT INTO control.usage_daily AS u (tenant_id, day, rows_stored, active_seats)
         SELECT d.tenant_id, $2::date, d.rows_stored, d.active_seats
           FROM jsonb_to_recordset($1::jsonb) AS d (tenant_id uuid, rows_stored jsonb, active_seats integer)
           JOIN control.tenants t ON t.id = d.tenant_id
          ORDER BY d.tenant_id
         ON CONFLICT (tenant_id, day) DO UPDATE SET
           rows_stored = EXCLUDED.rows_stored, active_seats = EXCLUDED.active_seats, updated_at = now()`,
        [JSON.stringify(snapshots.slice(i, i + WRITE_BATCH)), day],
      );
    }
    return { day, tenants: snapshots.length, failed };
  }

  /** The tenant's rows per tenant table, in one statement inside a read-only transaction confined to it. */
  private async countRows(route: TenantRoute, tablesOf: Map<string, string[]>): Promise<Record<string, number>> {
    const p = route.placement;
    const access: TenantAccess = { route, userId: SNAPSHOT_USER, role: 'viewer', readOnly: true };
    const lease = this.pools.lease(p);
    const session = await TenantSession.begin(access, lease instanceof Promise ? await lease : lease);
    const counts: Record<string, number> = {};
    try {
      const key = `${p.serverKey}/${p.database}/${p.schema}`;
      let tables = tablesOf.get(key);
      if (tables === undefined) {
        // tenantTables needs only query(); it is the one definition of what counts as tenant data.
        const client = { query: async (sql: string) => ({ rows: await session.manager.query(sql) }) } as unknown as pg.ClientBase;
        tables = (await tenantTables(client)).map((t) => t.name);
        tablesOf.set(key, tables);
      }
      if (tables.length > 0) {
        const [row] = await session.manager.query<Array<Record<string, string>>>(`SELECT ${tables.map((t) => `(SELECT count(*) FROM ${quoteIdent(t)}) AS ${quoteIdent(t)}`).join(', ')}`);
        for (const t of tables) counts[t] = Number(row[t]);
      }
    } catch (err) {
      await session.rollback();
      throw err;
    }
    // Outside the try: a failed commit has given the connection back already.
    await session.commit();
    return counts;
  }
}
