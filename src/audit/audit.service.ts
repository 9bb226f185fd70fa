import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import { v7 as uuidv7 } from 'uuid';
import type { AppConfig } from '../../config/configuration.js';
import { TenantContextStore } from '../tenancy/tenant-context.js';
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
    config: ConfigService<AppConfig, true>,
  ) {
    this.skip = config.get('benchSkipAudit', { infer: true });
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
