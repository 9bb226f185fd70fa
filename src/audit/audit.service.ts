import { Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import { TenantContextStore } from '../tenancy/tenant-context.js';

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
 * its entry or not at all. The database numbers and chains entries (migrations/tenant/0003).
 */
@Injectable()
export class AuditService {
  constructor(private readonly store: TenantContextStore) {}

  async record(entry: AuditEntry): Promise<void> {
    const context = this.store.require();
    const session = this.store.requireSession();
    const support = (context.access as { supportGrant?: { id: string } }).supportGrant;
    const metadata = support ? { ...entry.metadata, supportGrantId: support.id } : (entry.metadata ?? {});
    await session.manager.query(
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
  }
}
