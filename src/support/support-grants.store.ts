import { Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import type { Queryable } from '../tenancy/tenant-directory.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';

export const GRANT_ACCESS = ['read', 'write'] as const;
export type GrantAccess = (typeof GRANT_ACCESS)[number];
export const GRANT_STATUSES = ['requested', 'active', 'denied', 'revoked', 'expired'] as const;
export type GrantStatus = (typeof GRANT_STATUSES)[number];
export const APPROVER_KINDS = ['tenant', 'platform', 'automatic'] as const;
export type ApproverKind = (typeof APPROVER_KINDS)[number];
export const WRITE_APPROVERS = ['tenant', 'platform'] as const;
export type WriteApprover = (typeof WRITE_APPROVERS)[number];

/** A request nobody decided within this lapses: an old request must not turn into access days later. */
export const REQUEST_LIFETIME_HOURS = 24;

export interface GrantPerson {
  id: string;
  email: string | null;
}

export interface SupportGrant {
  id: string;
  tenantId: string;
  tenantSlug: string;
  requester: GrantPerson;
  reason: string;
  ticket: string | null;
  access: GrantAccess;
  minutes: number;
  /** Derived: an active grant past expiresAt, or a request older than REQUEST_LIFETIME_HOURS, is expired. */
  status: GrantStatus;
  requestedAt: Date;
  approverKind: ApproverKind;
  approvedBy: GrantPerson | null;
  approvedAt: Date | null;
  expiresAt: Date | null;
  deniedBy: GrantPerson | null;
  deniedAt: Date | null;
  denyReason: string | null;
  revokedBy: GrantPerson | null;
  revokedAt: Date | null;
  revokeReason: string | null;
}

export interface SupportSettings {
  readRequiresApproval: boolean;
  writeApprover: WriteApprover;
  updatedAt: Date | null;
}

/** What the access check needs: the grant that would admit the caller, or the latest that does not. */
export interface GrantForAccess {
  id: string;
  access: GrantAccess;
  status: GrantStatus;
}

interface GrantRow {
  id: string;
  tenant_id: string;
  tenant_slug: string;
  requester_id: string;
  requester_email: string | null;
  reason: string;
  ticket: string | null;
  access: GrantAccess;
  minutes: number;
  state: GrantStatus;
  requested_at: Date;
  approver_kind: ApproverKind;
  approved_by: string | null;
  approved_by_email: string | null;
  approved_at: Date | null;
  expires_at: Date | null;
  denied_by: string | null;
  denied_by_email: string | null;
  denied_at: Date | null;
  deny_reason: string | null;
  revoked_by: string | null;
  revoked_by_email: string | null;
  revoked_at: Date | null;
  revoke_reason: string | null;
}

const person = (id: string | null, email: string | null): GrantPerson | null => (id ? { id, email } : null);

const toGrant = (r: GrantRow): SupportGrant => ({
  id: r.id,
  tenantId: r.tenant_id,
  tenantSlug: r.tenant_slug,
  requester: { id: r.requester_id, email: r.requester_email },
  reason: r.reason,
  ticket: r.ticket,
  access: r.access,
  minutes: r.minutes,
  status: r.state,
  requestedAt: r.requested_at,
  approverKind: r.approver_kind,
  approvedBy: person(r.approved_by, r.approved_by_email),
  approvedAt: r.approved_at,
  expiresAt: r.expires_at,
  deniedBy: person(r.denied_by, r.denied_by_email),
  deniedAt: r.denied_at,
  denyReason: r.deny_reason,
  revokedBy: person(r.revoked_by, r.revoked_by_email),
  revokedAt: r.revoked_at,
  revokeReason: r.revoke_reason,
});

/** The one definition of the derived status. */
const STATE = `CASE
    WHEN g.status = 'active' AND g.expires_at <= now() THEN 'expired'
    WHEN g.status = 'requested' AND g.requested_at <= now() - make_interval(hours => ${REQUEST_LIFETIME_HOURS}) THEN 'expired'
    ELSE g.status END`;

const SELECT_GRANTS = `
  SELECT g.id, g.tenant_id, t.slug AS tenant_slug, g.requester_id, ru.email AS requester_email, g.reason, g.ticket,
         g.access, g.minutes, ${STATE} AS state, g.requested_at, g.approver_kind,
         g.approved_by, au.email AS approved_by_email, g.approved_at, g.expires_at,
         g.denied_by, du.email AS denied_by_email, g.denied_at, g.deny_reason,
         g.revoked_by, vu.email AS revoked_by_email, g.revoked_at, g.revoke_reason
    FROM control.support_grants g
    JOIN control.tenants t ON t.id = g.tenant_id
    LEFT JOIN control.users ru ON ru.id = g.requester_id
    LEFT JOIN control.users au ON au.id = g.approved_by
    LEFT JOIN control.users du ON du.id = g.denied_by
    LEFT JOIN control.users vu ON vu.id = g.revoked_by`;

export interface NewGrant {
  tenantId: string;
  requesterId: string;
  reason: string;
  ticket: string | null;
  access: GrantAccess;
  minutes: number;
  approverKind: ApproverKind;
}

export interface GrantFilter {
  tenantId?: string;
  requesterId?: string;
  limit: number;
  /** Newest first: the page after this id. */
  before?: string;
}

/** Support grants and tenants' support settings in the control plane (SQL only; the rules live in SupportGrantsService). */
@Injectable()
export class SupportGrantsStore {
  constructor(private readonly pools: TenantPools) {}

  /** Inserts a grant; an automatic one is active at once for its minutes. */
  async insert(q: Queryable, g: NewGrant): Promise<string> {
    const id = uuidv7();
    const automatic = g.approverKind === 'automatic';
    await q.query(
      `INSERT INTO control.support_grants (id, tenant_id, requester_id, reason, ticket, access, minutes, status, approver_kind, approved_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
               CASE WHEN $10 THEN now() END, CASE WHEN $10 THEN now() + make_interval(mins => $7) END)`,
      [id, g.tenantId, g.requesterId, g.reason, g.ticket, g.access, g.minutes, automatic ? 'active' : 'requested', g.approverKind, automatic],
    );
    return id;
  }

  async find(id: string, q: Queryable = this.pools.control()): Promise<SupportGrant | null> {
    const rows = await q.query<GrantRow[]>(`${SELECT_GRANTS} WHERE g.id = $1`, [id]);
    return rows.length ? toGrant(rows[0]) : null;
  }

  /** The grant, locked until the transaction `m` ends (decisions on one grant are serialized). */
  async lock(m: Queryable, id: string): Promise<SupportGrant | null> {
    const rows = await m.query<GrantRow[]>(`${SELECT_GRANTS} WHERE g.id = $1 FOR UPDATE OF g`, [id]);
    return rows.length ? toGrant(rows[0]) : null;
  }

  async list(f: GrantFilter): Promise<SupportGrant[]> {
    const rows = await this.pools.control().query<GrantRow[]>(
      `${SELECT_GRANTS}
        WHERE ($1::uuid IS NULL OR g.tenant_id = $1) AND ($2::uuid IS NULL OR g.requester_id = $2)
          AND ($3::uuid IS NULL OR g.id < $3)
        ORDER BY g.id DESC LIMIT $4`,
      [f.tenantId ?? null, f.requesterId ?? null, f.before ?? null, f.limit],
    );
    return rows.map(toGrant);
  }

  async approve(m: Queryable, id: string, by: string): Promise<void> {
    await m.query(
      `UPDATE control.support_grants SET status = 'active', approved_by = $2, approved_at = now(), expires_at = now() + make_interval(mins => minutes)
        WHERE id = $1`,
      [id, by],
    );
  }

  async deny(m: Queryable, id: string, by: string, reason: string | null): Promise<void> {
    await m.query(`UPDATE control.support_grants SET status = 'denied', denied_by = $2, denied_at = now(), deny_reason = $3 WHERE id = $1`, [id, by, reason]);
  }

  async revoke(m: Queryable, id: string, by: string, reason: string | null): Promise<void> {
    await m.query(`UPDATE control.support_grants SET status = 'revoked', revoked_by = $2, revoked_at = now(), revoke_reason = $3 WHERE id = $1`, [id, by, reason]);
  }

  /**
   * The access check of every support request: the live grant that admits the caller (write
   * before read), else their latest grant in the tenant (to say why not), else nothing.
   */
  async forAccess(tenantId: string, requesterId: string): Promise<GrantForAccess | null> {
    const rows = await this.pools.control().query<GrantForAccess[]>(
      `SELECT g.id, g.access, ${STATE} AS status FROM control.support_grants g
        WHERE g.tenant_id = $1 AND g.requester_id = $2
        ORDER BY (g.status = 'active' AND g.expires_at > now()) DESC,
                 (g.status = 'active' AND g.expires_at > now() AND g.access = 'write') DESC, g.id DESC
        LIMIT 1`,
      [tenantId, requesterId],
    );
    return rows[0] ?? null;
  }

  async settings(tenantId: string, q: Queryable = this.pools.control()): Promise<SupportSettings> {
    const rows = await q.query<Array<{ read_requires_approval: boolean; write_approver: WriteApprover; updated_at: Date }>>(
      'SELECT read_requires_approval, write_approver, updated_at FROM control.tenant_support_settings WHERE tenant_id = $1',
      [tenantId],
    );
    if (!rows.length) return { readRequiresApproval: false, writeApprover: 'tenant', updatedAt: null };
    return { readRequiresApproval: rows[0].read_requires_approval, writeApprover: rows[0].write_approver, updatedAt: rows[0].updated_at };
  }

  async updateSettings(m: Queryable, tenantId: string, change: { readRequiresApproval?: boolean; writeApprover?: WriteApprover }): Promise<void> {
    await m.query(
      `INSERT INTO control.tenant_support_settings AS s (tenant_id, read_requires_approval, write_approver)
       VALUES ($1, coalesce($2, false), coalesce($3, 'tenant'))
       ON CONFLICT (tenant_id) DO UPDATE SET read_requires_approval = coalesce($2, s.read_requires_approval),
              write_approver = coalesce($3, s.write_approver), updated_at = now()`,
      [tenantId, change.readRequiresApproval ?? null, change.writeApprover ?? null],
    );
  }
}
