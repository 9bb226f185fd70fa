import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { v7 as uuidv7 } from 'uuid';
import type { AppConfig } from '../../config/configuration.js';
import { RequestInfo, TenantContextStore, TenantSession } from '../tenancy/tenant-context.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { TenantAccess, TenantRoute } from '../tenancy/tenant-route.js';
import { AuditSealer } from './audit-sealer.service.js';

export type AuditActorKind = 'user' | 'support' | 'system' | 'identity_provider';

export interface AuditEntry {
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

export interface AuditRow {
  id: string;
  seq: string;
  actor_kind: AuditActorKind;
  actor_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  metadata: Record<string, unknown>;
  request_id: string | null;
  ip: string | null;
  user_agent: string | null;
  created_at: Date;
  hash: Buffer;
}

/**
 * The tenant's audit log, written in the request's own tenant transaction: a change commits with
 * its entry or not at all (the entry is inserted right before COMMIT, in the same message). The
 * database numbers and chains entries (migrations/tenant/0003).
 */
@Injectable()
export class AuditService {
  private readonly skip: boolean;

  constructor(
    private readonly store: TenantContextStore,
    private readonly sealer: AuditSealer,
    private readonly pools: TenantPools,
    config: ConfigService<AppConfig, true>,
  ) {
    this.skip = config.get('benchSkipAudit', { infer: true });
  }

  /**
   * Records an entry for a change that lives outside the tenant's placement (members and roles,
   * lifecycle, SSO settings and sign-ins are in the control plane), in a short write transaction
   * of its own on the tenant's placement, right after that change. Not atomic with it: the
   * control plane's own record (the platform audit log) is.
   */
  async recordFor(route: TenantRoute, entry: AuditEntry & { actorKind: AuditActorKind; actorId: string | null }, request?: RequestInfo): Promise<void> {
    if (this.skip) return;
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
    // Written with the COMMIT (pipelined): the chain head's row lock is held for no extra round trip.
    session.deferUntilCommit(
      `INSERT INTO audit_log (id, actor_kind, actor_id, action, target_type, target_id, metadata, request_id, ip, user_agent)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [
        uuidv7(),
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
    );
    this.sealer.schedule(context.access.route.id, context.access.route.placement);
  }
}
