import { Injectable, Logger } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { EntityManager } from 'typeorm';
import type { AppConfig } from '../../config/configuration.js';
import { AuditService } from '../audit/audit.service.js';
import { RoutingTable, TENANT_COLUMNS, TenantRow, toRoute } from '../tenancy/routing-table.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { TenantRoute, TenantStatus } from '../tenancy/tenant-route.js';
import { TenancyError } from '../tenancy/tenancy.errors.js';
import { Actor, SWEEPER_ACTOR } from './actor.js';
import { LifecycleError } from './lifecycle.errors.js';
import { recordPlatformEvent } from './platform-audit.js';
import { DueProgress, DueSweep, openMoves, refuseRunningMove, startedPurges, StoredReceipt, TenantPurge } from './tenant-purge.js';

interface Transition {
  /** dotted audit action: tenant.suspended, ... */
  action: string;
  from: TenantStatus[];
  /** What the refusal says is allowed, e.g. "only an active tenant can be suspended". */
  rule: string;
  /** SET clause; $1 is the tenant id, $2... are params. */
  set: string;
  params?: unknown[];
  check?: (m: EntityManager, tenant: TenantRoute) => Promise<void>;
  metadata?: (before: TenantRoute, after: TenantRoute) => Record<string, unknown>;
}

/**
 * The tenant lifecycle for platform admins and operators: suspend, reactivate, schedule
 * deletion (with a grace period), restore, purge. Each transition is one control-plane
 * transaction with its platform audit entry; every app instance drops its cached route through
 * the routing trigger's NOTIFY, this one at once.
 *
 *   active ⇄ suspended;  active | suspended → pending_deletion → active (restore) | purged
 */
@Injectable()
export class LifecycleService {
  private readonly graceDays: number;

  private readonly logger = new Logger(LifecycleService.name);

  constructor(
    private readonly pools: TenantPools,
    private readonly routing: RoutingTable,
    private readonly purges: TenantPurge,
    private readonly audit: AuditService,
    config: ConfigService<AppConfig, true>,
  ) {
    this.graceDays = config.get('lifecycle', { infer: true }).deletionGraceDays;
  }

  /** The id of a slug (the CLI names tenants by slug); null when there is no such tenant. */
  async idOf(slug: string): Promise<string | null> {
    const rows = await this.pools.control().query<Array<{ id: string }>>('SELECT id FROM control.tenants WHERE slug = $1', [slug]);
    return rows.length ? rows[0].id : null;
  }

  /** Its members get 403 TENANT_SUSPENDED with the reason; its data is kept as it is. */
  suspend(id: string, reason: string, actor: Actor): Promise<TenantRoute> {
    return this.transition(id, actor, {
      action: 'tenant.suspended',
      from: ['active'],
      rule: 'only an active tenant can be suspended',
      set: `status = 'suspended', status_reason = $2`,
      params: [reason],
      metadata: () => ({ reason }),
    });
  }

  reactivate(id: string, actor: Actor): Promise<TenantRoute> {
    return this.transition(id, actor, {
      action: 'tenant.reactivated',
      from: ['suspended'],
      rule: 'only a suspended tenant can be reactivated',
      set: `status = 'active', status_reason = NULL`,
      metadata: (before) => ({ previousReason: before.statusReason }),
    });
  }

  /** Closes the tenant to its members at once; its data is purged once the grace period is over. */
  scheduleDeletion(id: string, actor: Actor): Promise<TenantRoute> {
    return this.transition(id, actor, {
      action: 'tenant.deletion_scheduled',
      from: ['active', 'suspended'],
      rule: 'only an active or suspended tenant can be deleted',
      set: `status = 'pending_deletion', status_reason = NULL, deletion_requested_at = now(), purge_after = now() + make_interval(days => $2)`,
      params: [this.graceDays],
      check: async (m, tenant) => void refuseRunningMove(tenant, await openMoves(m, tenant.id), 'delete'),
      metadata: (before, after) => ({ graceDays: this.graceDays, purgeAfter: after.purgeAfter?.toISOString(), previousReason: before.statusReason }),
    });
  }

  /** Back to active, as long as no purge has started. */
  restore(id: string, actor: Actor): Promise<TenantRoute> {
    return this.transition(id, actor, {
      action: 'tenant.restored',
      from: ['pending_deletion'],
      rule: 'only a tenant scheduled for deletion can be restored',
      set: `status = 'active', status_reason = NULL, deletion_requested_at = NULL, purge_after = NULL`,
      check: async (m, t) => {
        const started = await startedPurges(m, t);
        if (started.length) {
          throw new LifecycleError(
            'TENANT_STATE_CONFLICT',
            `the purge of tenant '${t.slug}' started at ${started[0].startedAt} and its data may be gone already; it can no longer be restored: purge it to finish`,
          );
        }
      },
      metadata: (before) => ({ deletionRequestedAt: before.deletionRequestedAt?.toISOString(), purgeAfter: before.purgeAfter?.toISOString() }),
    });
  }

  /** Only once the grace period is over (else 409 PURGE_NOT_DUE with the date). */
  async purge(id: string, actor: Actor): Promise<StoredReceipt> {
    return (await this.purges.purge(id, actor))!;
  }

  /** Every tenant whose grace period is over: the sweeper's step, and `tenants purge --due`. */
  purgeDue(actor: Actor = SWEEPER_ACTOR, onProgress?: DueProgress): Promise<DueSweep> {
    return this.purges.purgeDue(actor, onProgress);
  }

  async purgeReceipt(id: string): Promise<StoredReceipt> {
    const stored = await this.purges.receiptOf(id);
    if (!stored) throw new LifecycleError('PURGE_RECEIPT_NOT_FOUND', `there is no purge receipt for tenant ${id}`, 'id');
    return stored;
  }

  private async transition(id: string, actor: Actor, t: Transition): Promise<TenantRoute> {
    const after = await this.pools.control().transaction(async (m) => {
      const rows = await m.query<TenantRow[]>(`SELECT ${TENANT_COLUMNS} FROM control.tenants WHERE id = $1 FOR UPDATE`, [id]);
      if (!rows.length) throw new TenancyError('TENANT_NOT_FOUND', `tenant ${id} was not found`, 'id');
      const before = toRoute(rows[0]);
      if (!t.from.includes(before.status)) {
        throw new LifecycleError('TENANT_STATE_CONFLICT', `tenant '${before.slug}' is ${before.status.replace('_', ' ')}; ${t.rule}`);
      }
      await t.check?.(m, before);
      // A CTE, so that TypeORM returns the rows (for a bare UPDATE it returns [rows, count]).
      const updated = await m.query<TenantRow[]>(
        `WITH u AS (UPDATE control.tenants SET ${t.set}, updated_at = now() WHERE id = $1 RETURNING *) SELECT ${TENANT_COLUMNS} FROM u`,
        [id, ...(t.params ?? [])],
      );
      const route = toRoute(updated[0]);
      await recordPlatformEvent(m, {
        actorKind: actor.kind,
        actorId: actor.id,
        action: t.action,
        tenantId: id,
        targetType: 'tenant',
        targetId: id,
        requestId: actor.requestId,
        metadata: { slug: route.slug, from: before.status, to: route.status, ...t.metadata?.(before, route) },
      });
      // The tenant's own log says it too, except deletion and its undoing: a purge removes that log.
      if (t.action !== 'tenant.deletion_scheduled' && t.action !== 'tenant.restored') {
        await this.audit.enqueue(
          m,
          id,
          {
            actorKind: actor.kind === 'user' ? 'user' : actor.kind === 'support' ? 'support' : 'system',
            actorId: actor.kind === 'operator' ? `operator:${actor.id}` : actor.id,
            action: t.action,
            targetType: 'tenant',
            targetId: id,
            metadata: { to: route.status },
          },
          actor.requestId ? { id: actor.requestId } : undefined,
        );
      }
      return route;
    });
    this.routing.forgetTenant([after.slug], id);
    // Queued in the transaction above for the tenant's own log, delivered now (or by the sweeper).
    await this.audit.deliver(id).catch((err: Error) => this.logger.warn({ tenantId: id, action: t.action, reason: err.message }, "the tenant's audit entry of a lifecycle change is queued; the sweeper delivers it"));
    return after;
  }
}
