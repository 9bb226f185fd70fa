import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { v7 as uuidv7 } from 'uuid';
import type { AppConfig } from '../../config/configuration.js';
import { RequestInfo, TenantContextStore, TenantSession } from '../tenancy/tenant-context.js';
import { Queryable, TenantDirectory } from '../tenancy/tenant-directory.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { TenantAccess, TenantRoute } from '../tenancy/tenant-route.js';
import { AuditSealer } from './audit-sealer.service.js';
import { INSERT_NEW, INSERT_ONCE } from './audit-statements.js';

export type AuditActorKind = 'user' | 'support' | 'system' | 'identity_provider';

export interface AuditEntry {
  /** Given only by the outbox (delivery of an entry keeps its id, so a repeat is recorded once). */
  id?: string;
  /** dotted, lowercase: project.created, task.updated, ... */
  action: string;
  targetType?: string;
  targetId?: string;
  /** What changed, by name; never secrets. */
  metadata?: Record<string, unknown>;
  /** Defaults to the request's user (or 'support' under a support grant). */
  actorKind?: AuditActorKind;
  actorId?: string | null;
}

/**
 * The tenant's audit log, written in the request's own tenant transaction: a change commits with
 * its entry or not at all (the entry is inserted right before COMMIT, in the same message). The
 * database numbers and chains entries (migrations/tenant/0003, 0004).
 */
@Injectable()
export class AuditService {
  private readonly skip: boolean;

  constructor(
    private readonly store: TenantContextStore,
    private readonly sealer: AuditSealer,
    private readonly pools: TenantPools,
    private readonly directory: TenantDirectory,
    config: ConfigService<AppConfig, true>,
  ) {
    this.skip = config.get('benchSkipAudit', { infer: true });
  }

  /**
   * For a change that lives in the control plane (members and roles, lifecycle, SSO): queues the
   * tenant's entry in control.audit_outbox with `q`, the change's own transaction, so the change
   * and its entry commit together. deliver() then writes it to the tenant's log.
   */
  async enqueue(q: Queryable, tenantId: string, entry: AuditEntry & { actorKind: AuditActorKind; actorId: string | null }, request?: RequestInfo): Promise<void> {
    if (this.skip) return;
    await q.query('INSERT INTO control.audit_outbox (id, tenant_id, entry, request) VALUES ($1, $2, $3, $4)', [
      uuidv7(),
      tenantId,
      JSON.stringify(entry),
      request ? JSON.stringify(request) : null,
    ]);
  }

  /**
   * Writes a tenant's queued entries to its log (a short transaction on its placement each) and
   * removes them from the outbox. Throws if one cannot be written (it stays queued; the sweeper
   * tries again).
   */
  async deliver(tenantId: string): Promise<number> {
    if (this.skip) return 0;
    return this.pools.control().transaction(async (m) => {
      const rows = await m.query<Array<{ id: string; entry: AuditEntry & { actorKind: AuditActorKind; actorId: string | null }; request: RequestInfo | null }>>(
        'SELECT id, entry, request FROM control.audit_outbox WHERE tenant_id = $1 ORDER BY created_at, id LIMIT 1000 FOR UPDATE SKIP LOCKED',
        [tenantId],
      );
      if (!rows.length) return 0;
      const route = await this.directory.findTenant(tenantId);
      if (!route) return 0;
      for (const r of rows) {
        try {
          await this.writeFor(route, { ...r.entry, id: r.id }, r.request ?? undefined);
        } catch (err) {
          await m.query('UPDATE control.audit_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1', [r.id, (err as Error).message.slice(0, 500)]);
          throw err;
        }
        await m.query('DELETE FROM control.audit_outbox WHERE id = $1', [r.id]);
      }
      return rows.length;
    });
  }

  /** Delivers every tenant's queued entries (the sweeper's step, for what a crash or an outage left). */
  async deliverAll(): Promise<number> {
    const tenants = await this.pools.control().query<Array<{ tenant_id: string }>>('SELECT DISTINCT tenant_id FROM control.audit_outbox');
    let delivered = 0;
    for (const t of tenants) delivered += await this.deliver(t.tenant_id).catch(() => 0);
    return delivered;
  }

  /** enqueue() and deliver() for a change that is not in a transaction of its own. */
  async recordFor(route: TenantRoute, entry: AuditEntry & { actorKind: AuditActorKind; actorId: string | null }, request?: RequestInfo): Promise<void> {
    if (this.skip) return;
    await this.enqueue(this.pools.control(), route.id, entry, request);
    await this.deliver(route.id);
  }

  /** The entry in the tenant's placement, in a short write transaction of its own. */
  private async writeFor(route: TenantRoute, entry: AuditEntry & { actorKind: AuditActorKind; actorId: string | null }, request?: RequestInfo): Promise<void> {
    const access: TenantAccess = { route, userId: entry.actorId ?? 'system', role: 'member', readOnly: false };
    const lease = this.pools.lease(route.placement);
    const session = await TenantSession.begin(access, lease instanceof Promise ? await lease : lease);
    try {
      await this.store.run({ access, session, request }, () => this.record(entry));
    } catch (err) {
      throw (await session.rollback()) ?? err;
    }
    await session.commit();
  }

  async record(entry: AuditEntry): Promise<void> {
    if (this.skip) return;
    const context = this.store.require();
    const session = this.store.requireSession();
    const support = (context.access as { supportGrant?: { id: string } }).supportGrant;
    const metadata = support ? { ...entry.metadata, supportGrantId: support.id } : (entry.metadata ?? {});
    // Written with the COMMIT (pipelined), and queued for sealing in the same statement.
    const insert = entry.id === undefined ? INSERT_NEW : INSERT_ONCE;
    session.deferUntilCommit(
      insert.sql,
      [
        entry.id ?? uuidv7(),
        entry.actorKind ?? (support ? 'support' : 'user'),
        entry.actorId === undefined ? context.access.userId : entry.actorId,
        entry.action,
        entry.targetType ?? null,
        entry.targetId ?? null,
        JSON.stringify(metadata),
        context.request?.id ?? null,
        context.request?.ip ?? null,
        context.request?.userAgent ?? null,
      ],
      insert.name,
    );
    this.sealer.schedule(context.access.route.id, context.access.route.placement);
  }
}
