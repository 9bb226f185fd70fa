import { v7 as uuidv7 } from 'uuid';
import type { Queryable } from '../tenancy/tenant-directory.service.js';

export type PlatformActorKind = 'user' | 'support' | 'system' | 'operator';

export interface PlatformEvent {
  actorKind: PlatformActorKind;
  /** A user id for users, a name for operators (the CLI's OS user) or the job for system. */
  actorId?: string | null;
  /** dotted, lowercase: tenant.suspended, tenant.purged, tenant.move_started, ... */
  action: string;
  tenantId?: string | null;
  targetType?: string;
  targetId?: string;
  metadata?: Record<string, unknown>;
  requestId?: string;
}

export interface PlatformAuditEntry {
  id: string;
  at: Date;
  actorKind: PlatformActorKind;
  actorId: string | null;
  action: string;
  tenantId: string | null;
  targetType: string | null;
  targetId: string | null;
  metadata: Record<string, unknown>;
  requestId: string | null;
}

/**
 * Appends one entry to the platform audit log (control.platform_audit_log). Pass a transaction's
 * manager as `q` so the entry commits or rolls back with the change it records.
 */
export async function recordPlatformEvent(q: Queryable, e: PlatformEvent): Promise<string> {
  const id = uuidv7();
  await q.query(
    `INSERT INTO control.platform_audit_log (id, actor_kind, actor_id, action, tenant_id, target_type, target_id, metadata, request_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [id, e.actorKind, e.actorId ?? null, e.action, e.tenantId ?? null, e.targetType ?? null, e.targetId ?? null, JSON.stringify(e.metadata ?? {}), e.requestId ?? null],
  );
  return id;
}

export async function platformEventsOf(q: Queryable, tenantId: string, action?: string): Promise<PlatformAuditEntry[]> {
  const rows = await q.query<Array<Record<string, unknown>>>(
    `SELECT id, at, actor_kind, actor_id, action, tenant_id, target_type, target_id, metadata, request_id
       FROM control.platform_audit_log WHERE tenant_id = $1 AND ($2::text IS NULL OR action = $2) ORDER BY at, id`,
    [tenantId, action ?? null],
  );
  return rows.map((r) => ({
    id: r.id as string,
    at: r.at as Date,
    actorKind: r.actor_kind as PlatformActorKind,
    actorId: r.actor_id as string | null,
    action: r.action as string,
    tenantId: r.tenant_id as string | null,
    targetType: r.target_type as string | null,
    targetId: r.target_id as string | null,
    metadata: r.metadata as Record<string, unknown>,
    requestId: r.request_id as string | null,
  }));
}
