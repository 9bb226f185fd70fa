import { Inject, Injectable, Logger } from '@nestjs/common';
import type pg from 'pg';
import type { EntityManager } from 'typeorm';
import { quoteIdent } from '../../libs/postgres/index.js';
import { assertOwnObject, DATABASE_RUNTIME, DatabaseRuntime, dropPlacement, serverOf, withOwner } from '../tenancy/placements.js';
import { RoutingTable, TENANT_COLUMNS, TenantRow, toRoute } from '../tenancy/routing-table.service.js';
import type { Queryable } from '../tenancy/tenant-directory.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { Placement, TenantRoute, Tier } from '../tenancy/tenant-route.js';
import { TenancyError } from '../tenancy/tenancy.errors.js';
import type { Actor } from './actor.js';
import { LifecycleError } from './lifecycle.errors.js';
import { platformEventsOf, recordPlatformEvent } from './platform-audit.js';
import { PURGE_RECEIPT_FORMAT, PurgedPlacement, PurgedTable, PurgeReceipt, receiptDigest } from './purge-receipt.js';
import { connectToTenant, deleteTenantRows, tenantTables } from './tenant-data.js';

/** A purge receipt as kept in the platform audit log. */
export interface StoredReceipt {
  auditEntryId: string;
  tenantId: string;
  recordedAt: Date;
  receipt: PurgeReceipt;
  sha256: string;
}

export interface DueSweep {
  purged: StoredReceipt[];
  /** Due tenants another process was purging (or had just purged). */
  skipped: number;
  failed: Array<{ tenantId: string; slug: string; error: string }>;
}

export type DueProgress = (done: number, total: number, slug: string) => void;

export interface OpenMove {
  id: string;
  phase: string;
  source: Placement;
}

/** Where the tenant's data may be: its placement, and the source of a move that has flipped but not been cleaned. */
interface Target {
  role: PurgedPlacement['role'];
  moveId: string | null;
  placement: Placement;
}

interface Inventory {
  found: boolean;
  tables: Array<{ name: string; rows: number }>;
}

const LOCK_NOT_AVAILABLE = '55P03';

/**
 * Moves of a tenant that are not finished, locked until the caller's transaction ends. A
 * 'flipped' move is finished for the tenant (it is served from the target) but its source
 * still holds a copy of the data, waiting for clean-up.
 */
export async function openMoves(m: Queryable, tenantId: string): Promise<OpenMove[]> {
  const rows = await m.query<Array<{ id: string; phase: string; source_tier: Tier; source_server: string; source_database: string; source_schema: string }>>(
    `SELECT id, phase, source_tier, source_server, source_database, source_schema FROM control.tenant_moves
      WHERE tenant_id = $1 AND phase NOT IN ('cleaned', 'aborted', 'failed') ORDER BY created_at FOR UPDATE`,
    [tenantId],
  );
  return rows.map((r) => ({
    id: r.id,
    phase: r.phase,
    source: { tier: r.source_tier, serverKey: r.source_server, database: r.source_database, schema: r.source_schema },
  }));
}

/** Refuses while a move is under way (anything short of 'flipped'); returns the flipped ones. */
export function refuseRunningMove(tenant: TenantRoute, moves: OpenMove[], doing: string): OpenMove[] {
  const running = moves.find((mv) => mv.phase !== 'flipped');
  if (running) {
    throw new LifecycleError(
      'MOVE_IN_PROGRESS',
      `tenant '${tenant.slug}' is being moved (move ${running.id} is ${running.phase}); finish or abort the move before you ${doing} it`,
    );
  }
  return moves;
}

/** Purge attempts since the tenant's current deletion request that did not finish (a crash half way). */
export async function startedPurges(m: Queryable, tenant: TenantRoute): Promise<Array<{ startedAt: string; rowsFound: number }>> {
  if (!tenant.deletionRequestedAt) return [];
  const rows = await m.query<Array<{ at: Date; rows: number | null }>>(
    `SELECT at, (metadata->>'rowsFound')::bigint AS rows FROM control.platform_audit_log
      WHERE tenant_id = $1 AND action = 'tenant.purge_started' AND at >= $2 ORDER BY at, id`,
    [tenant.id, tenant.deletionRequestedAt],
  );
  return rows.map((r) => ({ startedAt: r.at.toISOString(), rowsFound: Number(r.rows ?? 0) }));
}

async function countRows(c: pg.ClientBase, table: string, tenantId: string): Promise<number> {
  const { rows } = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteIdent(table)} WHERE organization_id = $1`, [tenantId]);
  return Number(rows[0].n);
}

/**
 * Purges a tenant whose grace period is over: every row of it (shared tier, through an
 * RLS-confined connection), its own schema or database, the source a flipped move left behind,
 * its memberships and its routing row; then a receipt in the platform audit log.
 *
 * The tenant row stays locked (FOR UPDATE) until the end, so two processes never purge the same
 * tenant. Every removal is idempotent: if the process dies after dropping the data but before
 * the row is deleted, the tenant is still due and the next run finishes the job.
 */
@Injectable()
export class TenantPurge {
  private readonly logger = new Logger(TenantPurge.name);

  constructor(
    @Inject(DATABASE_RUNTIME) private readonly runtime: DatabaseRuntime,
    private readonly pools: TenantPools,
    private readonly routing: RoutingTable,
  ) {}

  /** Purges one tenant. With skipLocked (the sweeper), a tenant another process holds returns null at once. */
  async purge(id: string, actor: Actor, opts: { skipLocked?: boolean } = {}): Promise<StoredReceipt | null> {
    let slug: string | undefined;
    try {
      return await this.pools.control().transaction(async (m) => {
        // An explicit purge waits a little for a transition under way, not for another purge.
        if (!opts.skipLocked) await m.query(`SET LOCAL lock_timeout = '5s'`);
        const rows = await m.query<Array<TenantRow & { due: boolean }>>(
          `SELECT ${TENANT_COLUMNS}, purge_after <= now() AS due FROM control.tenants WHERE id = $1 FOR UPDATE${opts.skipLocked ? ' SKIP LOCKED' : ''}`,
          [id],
        );
        if (!rows.length) {
          if (opts.skipLocked) return null;
          throw await this.notFound(id);
        }
        const tenant = toRoute(rows[0]);
        slug = tenant.slug;
        if (tenant.status !== 'pending_deletion') {
          throw new LifecycleError(
            'TENANT_STATE_CONFLICT',
            `tenant '${tenant.slug}' is ${tenant.status}; only a tenant scheduled for deletion can be purged`,
          );
        }
        if (!rows[0].due) {
          throw new LifecycleError(
            'PURGE_NOT_DUE',
            `tenant '${tenant.slug}' may be purged from ${tenant.purgeAfter!.toISOString()}, when its grace period ends; until then it can be restored`,
          );
        }
        const moves = refuseRunningMove(tenant, await openMoves(m, id), 'purge');
        return this.removeEverything(m, tenant, moves, actor);
      });
    } catch (err) {
      if ((err as { driverError?: { code?: string } }).driverError?.code === LOCK_NOT_AVAILABLE) {
        throw new LifecycleError('TENANT_STATE_CONFLICT', `another change of tenant ${id} is under way (probably its purge); retry shortly`);
      }
      throw err;
    } finally {
      if (slug) this.routing.forgetTenant([slug], id);
    }
  }

  /** Purges every tenant whose grace period is over, one at a time; one failure does not stop the others. */
  async purgeDue(actor: Actor, onProgress?: DueProgress): Promise<DueSweep> {
    const due = await this.pools.control().query<Array<{ id: string; slug: string }>>(
      `SELECT id, slug FROM control.tenants WHERE status = 'pending_deletion' AND purge_after <= now() ORDER BY purge_after, id`,
    );
    const sweep: DueSweep = { purged: [], skipped: 0, failed: [] };
    onProgress?.(0, due.length, '');
    for (const [i, t] of due.entries()) {
      try {
        const stored = await this.purge(t.id, actor, { skipLocked: true });
        if (stored) sweep.purged.push(stored);
        else sweep.skipped++;
      } catch (err) {
        const error = (err as Error).message;
        this.logger.error({ tenantId: t.id, slug: t.slug, err: error }, 'purge failed; the tenant stays due and is retried on the next sweep');
        sweep.failed.push({ tenantId: t.id, slug: t.slug, error });
      }
      onProgress?.(i + 1, due.length, t.slug);
    }
    return sweep;
  }

  /** The last purge receipt of a tenant id, or null. */
  async receiptOf(tenantId: string): Promise<StoredReceipt | null> {
    const events = await platformEventsOf(this.pools.control(), tenantId, 'tenant.purged');
    const last = events.at(-1);
    if (!last) return null;
    const meta = last.metadata as { receipt: PurgeReceipt; sha256: string };
    return { auditEntryId: last.id, tenantId, recordedAt: last.at, receipt: meta.receipt, sha256: meta.sha256 };
  }

  private async notFound(id: string): Promise<TenancyError> {
    const receipt = await this.receiptOf(id);
    const purged = receipt ? ` (it was purged at ${receipt.receipt.purgedAt}; see GET /tenants/${id}/purge-receipt)` : '';
    return new TenancyError('TENANT_NOT_FOUND', `tenant ${id} was not found${purged}`, 'id');
  }

  private async removeEverything(m: EntityManager, tenant: TenantRoute, moves: OpenMove[], actor: Actor): Promise<StoredReceipt> {
    const targets: Target[] = [
      { role: 'current', moveId: null, placement: tenant.placement },
      ...moves.map((mv): Target => ({ role: 'move_source', moveId: mv.id, placement: mv.source })),
    ];
    targets.forEach((t) => assertOwnObject(this.runtime, tenant.id, t.placement));
    const earlierAttempts = await startedPurges(m, tenant);
    const inventories: Inventory[] = [];
    for (const t of targets) inventories.push(await this.inventory(tenant.id, t.placement));
    // Committed at once (not with the purge): from here on data may be gone, so a restore must be refused.
    await recordPlatformEvent(this.pools.control(), {
      actorKind: actor.kind,
      actorId: actor.id,
      action: 'tenant.purge_started',
      tenantId: tenant.id,
      targetType: 'tenant',
      targetId: tenant.id,
      requestId: actor.requestId,
      metadata: {
        rowsFound: inventories.reduce((n, inv) => n + inv.tables.reduce((s, t) => s + t.rows, 0), 0),
        placements: targets.map((t, i) => ({ role: t.role, tier: t.placement.tier, server: t.placement.serverKey, found: inventories[i].found, tables: inventories[i].tables })),
      },
    });

    const placements: PurgedPlacement[] = [];
    for (const [i, t] of targets.entries()) placements.push(await this.remove(tenant.id, t, inventories[i]));
    if (moves.length) {
      await m.query(
        `UPDATE control.tenant_moves SET phase = 'cleaned', finished_at = now(), updated_at = now() WHERE id = ANY($1::uuid[])`,
        [moves.map((mv) => mv.id)],
      );
    }
    const [{ n: membershipsRemoved }] = await m.query<Array<{ n: number }>>(
      `WITH d AS (DELETE FROM control.memberships WHERE tenant_id = $1 RETURNING 1) SELECT count(*)::int AS n FROM d`,
      [tenant.id],
    );
    await m.query(`WITH d AS (DELETE FROM control.tenants WHERE id = $1 RETURNING 1) SELECT count(*)::int AS n FROM d`, [tenant.id]);
    const [left] = await m.query<Array<{ memberships: number; tenants: number }>>(
      `SELECT (SELECT count(*)::int FROM control.memberships WHERE tenant_id = $1) AS memberships,
              (SELECT count(*)::int FROM control.tenants WHERE id = $1) AS tenants`,
      [tenant.id],
    );

    const rowsRemaining = placements.reduce((n, p) => n + p.tables.reduce((s, t) => s + t.rowsRemaining, 0), 0);
    const objectsRemaining = placements.filter((p) => !p.gone).length;
    const verification = {
      rowsRemaining,
      objectsRemaining,
      membershipsRemaining: left.memberships,
      tenantRowsRemaining: left.tenants,
      nothingLeft: rowsRemaining === 0 && objectsRemaining === 0 && left.memberships === 0 && left.tenants === 0,
    };
    if (!verification.nothingLeft) {
      // Never a receipt that says more than what happened: roll back, stay due, and say why.
      throw new Error(`purge of tenant '${tenant.slug}' left something behind: ${JSON.stringify(verification)}`);
    }
    const receipt: PurgeReceipt = {
      format: PURGE_RECEIPT_FORMAT,
      tenant: {
        id: tenant.id,
        slug: tenant.slug,
        name: tenant.name,
        tier: tenant.placement.tier,
        server: tenant.placement.serverKey,
        database: tenant.placement.database,
        schema: tenant.placement.schema,
      },
      deletionRequestedAt: tenant.deletionRequestedAt!.toISOString(),
      purgeAfter: tenant.purgeAfter!.toISOString(),
      purgedAt: new Date().toISOString(),
      purgedBy: { kind: actor.kind, id: actor.id },
      placements,
      rowsRemoved: placements.reduce((n, p) => n + p.tables.reduce((s, t) => s + t.rowsRemoved, 0), 0),
      membershipsRemoved,
      verification,
      earlierAttempts,
    };
    const sha256 = receiptDigest(receipt);
    const auditEntryId = await recordPlatformEvent(m, {
      actorKind: actor.kind,
      actorId: actor.id,
      action: 'tenant.purged',
      tenantId: tenant.id,
      targetType: 'tenant',
      targetId: tenant.id,
      requestId: actor.requestId,
      metadata: { receipt, sha256 },
    });
    const [{ at }] = await m.query<Array<{ at: Date }>>('SELECT at FROM control.platform_audit_log WHERE id = $1', [auditEntryId]);
    this.logger.log({ tenantId: tenant.id, slug: tenant.slug, rowsRemoved: receipt.rowsRemoved, sha256 }, 'tenant purged');
    return { auditEntryId, tenantId: tenant.id, recordedAt: at, receipt, sha256 };
  }

  private placementExists(p: Placement): Promise<boolean> {
    const server = serverOf(this.runtime, p.serverKey);
    if (p.tier === 'dedicated') {
      return withOwner(server, server.database, async (c) => ((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [p.database])).rowCount ?? 0) > 0);
    }
    return withOwner(server, p.database, async (c) => ((await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [p.schema])).rowCount ?? 0) > 0);
  }

  /** The tenant's rows per table where it lives (seen through RLS, so only its own). */
  private async inventory(tenantId: string, p: Placement): Promise<Inventory> {
    if (!(await this.placementExists(p))) return { found: false, tables: [] };
    const c = await connectToTenant(this.runtime, p, tenantId, 'tenancy-purge');
    try {
      const tables: Inventory['tables'] = [];
      for (const t of await tenantTables(c)) tables.push({ name: t.name, rows: await countRows(c, t.name, tenantId) });
      return { found: true, tables };
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  private async remove(tenantId: string, target: Target, inv: Inventory): Promise<PurgedPlacement> {
    const p = target.placement;
    const base = { role: target.role, moveId: target.moveId, tier: p.tier, server: p.serverKey, database: p.database, schema: p.schema, found: inv.found };
    if (p.tier !== 'shared') {
      // The rows just counted are what the drop removes: a tenant pending deletion takes no writes.
      if (inv.found) await dropPlacement(this.runtime, p, tenantId);
      const gone = !(await this.placementExists(p));
      const tables = [...inv.tables].reverse().map((t): PurgedTable => ({ name: t.name, rowsRemoved: t.rows, rowsRemaining: gone ? 0 : t.rows }));
      return { ...base, tables, dropped: inv.found ? (p.tier === 'schema' ? 'schema' : 'database') : null, gone };
    }
    // Shared schema: children first, through a connection that RLS confines to this tenant.
    const c = await connectToTenant(this.runtime, p, tenantId, 'tenancy-purge');
    try {
      const removed = await deleteTenantRows(c, tenantId);
      const tables: PurgedTable[] = [];
      for (const r of removed) tables.push({ ...r, rowsRemaining: await countRows(c, r.name, tenantId) });
      return { ...base, tables, dropped: null, gone: tables.every((t) => t.rowsRemaining === 0) };
    } finally {
      await c.end().catch(() => undefined);
    }
  }
}
