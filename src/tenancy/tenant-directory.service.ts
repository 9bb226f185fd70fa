import { Injectable } from '@nestjs/common';
import { v7 as uuidv7 } from 'uuid';
import { RoutingTable, TENANT_COLUMNS, TenantRow, toRoute } from './routing-table.service.js';
import { TenantPools } from './tenant-pools.service.js';
import type { Role, TenantRoute, TenantStatus, Tier } from './tenant-route.js';

export interface UserRecord {
  id: string;
  email: string;
  createdAt: Date;
}

export interface MemberRecord {
  userId: string;
  email: string;
  role: Role;
  createdAt: Date;
  updatedAt: Date;
}

export interface MembershipOfUser {
  tenantId: string;
  slug: string;
  name: string;
  tier: Tier;
  status: TenantStatus;
  role: Role;
}

/** A DataSource or a transaction's EntityManager: both run raw SQL. */
export interface Queryable {
  query<T = unknown>(sql: string, parameters?: unknown[]): Promise<T>;
}

export type MembershipChange = 'ok' | 'not_found' | 'last_owner' | 'owner_restricted';

interface MemberRow {
  user_id: string;
  email: string;
  role: Role;
  created_at: Date;
  updated_at: Date;
}

const toMember = (r: MemberRow): MemberRecord => ({
  userId: r.user_id,
  email: r.email,
  role: r.role,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/**
 * The control plane's people side (users and memberships) and tenant listings: the facade other
 * modules use instead of touching control tables. Keeps the invariant "a tenant always has an owner".
 */
@Injectable()
export class TenantDirectory {
  constructor(
    private readonly pools: TenantPools,
    private readonly routing: RoutingTable,
  ) {}

  /** The user with this email, created if new; `q` runs it inside a caller's transaction. */
  async ensureUser(email: string, q: Queryable = this.pools.control()): Promise<UserRecord> {
    const rows = await q.query<Array<{ id: string; email: string; created_at: Date }>>(
      `INSERT INTO control.users (id, email) VALUES ($1, $2)
       ON CONFLICT ((lower(email))) DO UPDATE SET email = control.users.email
       RETURNING id, email, created_at`,
      [uuidv7(), email.trim().toLowerCase()],
    );
    return { id: rows[0].id, email: rows[0].email, createdAt: rows[0].created_at };
  }

  /** Whether a tenant enforces SSO for this (verified) email domain. */
  async ssoEnforcedFor(domain: string): Promise<boolean> {
    const rows = await this.pools.control().query<unknown[]>(
      `SELECT 1 FROM control.sso_domains d JOIN control.sso_links l ON l.tenant_id = d.tenant_id
        WHERE d.domain = $1 AND d.verified AND l.enforce_sso`,
      [domain],
    );
    return rows.length > 0;
  }

  async findUser(id: string): Promise<UserRecord | null> {
    const rows = await this.pools.control().query<Array<{ id: string; email: string; created_at: Date }>>(
      'SELECT id, email, created_at FROM control.users WHERE id = $1',
      [id],
    );
    return rows.length ? { id: rows[0].id, email: rows[0].email, createdAt: rows[0].created_at } : null;
  }

  async tenantsOf(userId: string): Promise<MembershipOfUser[]> {
    const rows = await this.pools.control().query<Array<TenantRow & { role: Role }>>(
      `SELECT t.id, t.slug, t.name, t.tier, t.status, m.role FROM control.memberships m
         JOIN control.tenants t ON t.id = m.tenant_id
        WHERE m.user_id = $1 AND t.status IN ('active', 'suspended') ORDER BY t.slug`,
      [userId],
    );
    return rows.map((r) => ({ tenantId: r.id, slug: r.slug, name: r.name, tier: r.tier, status: r.status, role: r.role }));
  }

  async listTenants(limit: number, after?: string): Promise<TenantRoute[]> {
    const rows = await this.pools.control().query<TenantRow[]>(
      `SELECT ${TENANT_COLUMNS} FROM control.tenants
        WHERE ($1::uuid IS NULL OR id > $1::uuid) ORDER BY id LIMIT $2`,
      [after ?? null, limit],
    );
    return rows.map(toRoute);
  }

  async findTenant(id: string): Promise<TenantRoute | null> {
    const rows = await this.pools.control().query<TenantRow[]>(`SELECT ${TENANT_COLUMNS} FROM control.tenants WHERE id = $1`, [id]);
    return rows.length ? toRoute(rows[0]) : null;
  }

  async listMembers(tenantId: string, limit: number, after?: string): Promise<MemberRecord[]> {
    const rows = await this.pools.control().query<MemberRow[]>(
      `SELECT m.user_id, u.email, m.role, m.created_at, m.updated_at
         FROM control.memberships m JOIN control.users u ON u.id = m.user_id
        WHERE m.tenant_id = $1 AND ($2::uuid IS NULL OR m.user_id > $2::uuid)
        ORDER BY m.user_id LIMIT $3`,
      [tenantId, after ?? null, limit],
    );
    return rows.map(toMember);
  }

  async findMember(tenantId: string, userId: string, q: Queryable = this.pools.control()): Promise<MemberRecord | null> {
    const rows = await q.query<MemberRow[]>(
      `SELECT m.user_id, u.email, m.role, m.created_at, m.updated_at
         FROM control.memberships m JOIN control.users u ON u.id = m.user_id
        WHERE m.tenant_id = $1 AND m.user_id = $2`,
      [tenantId, userId],
    );
    return rows.length ? toMember(rows[0]) : null;
  }

  /**
   * Adds a membership; null when the user is a member already. `alsoInTransaction` runs with the
   * insert, only when it inserted (an audit entry, a seat check); its throw undoes the insert.
   * With `within` (a caller's control-plane transaction) everything runs there, so a refusal also
   * undoes what the caller wrote before; the caller then calls forgetMembership after its commit.
   */
  async addMember(
    tenantId: string,
    userId: string,
    role: Role,
    alsoInTransaction?: (m: Queryable) => Promise<void>,
    within?: Queryable,
  ): Promise<MemberRecord | null> {
    const insert = async (m: Queryable): Promise<boolean> => {
      const rows = await m.query<Array<{ user_id: string }>>(
        `INSERT INTO control.memberships (tenant_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, user_id) DO NOTHING RETURNING user_id`,
        [tenantId, userId, role],
      );
      if (rows.length && alsoInTransaction) await alsoInTransaction(m);
      return rows.length > 0;
    };
    if (within) return (await insert(within)) ? this.findMember(tenantId, userId, within) : null;
    const added = await this.pools.control().transaction(insert);
    this.routing.forgetMembership(tenantId, userId);
    return added ? this.findMember(tenantId, userId) : null;
  }

  /** Drops this instance's cached role at once (other instances hear of it through NOTIFY at commit). */
  forgetMembership(tenantId: string, userId: string): void {
    this.routing.forgetMembership(tenantId, userId);
  }

  /**
   * Changes a role or removes a member, refusing to leave the tenant without an owner and, unless
   * mayTouchOwner, to grant or take the owner role; both checked under the lock (race-free).
   */
  async changeMember(
    tenantId: string,
    userId: string,
    change: { role: Role } | 'remove',
    mayTouchOwner: boolean,
    alsoInTransaction?: (m: Queryable) => Promise<void>,
  ): Promise<MembershipChange> {
    const result = await this.pools.control().transaction(async (m) => {
      // Lock the tenant's owner rows first so two concurrent demotions cannot both pass the check.
      const owners = await m.query<Array<{ user_id: string }>>(
        `SELECT user_id FROM control.memberships WHERE tenant_id = $1 AND role = 'owner' FOR UPDATE`,
        [tenantId],
      );
      const current = await m.query<Array<{ role: Role }>>(
        'SELECT role FROM control.memberships WHERE tenant_id = $1 AND user_id = $2 FOR UPDATE',
        [tenantId, userId],
      );
      if (!current.length) return 'not_found' as const;
      const touchesOwner = current[0].role === 'owner' || (change !== 'remove' && change.role === 'owner');
      if (touchesOwner && !mayTouchOwner) return 'owner_restricted' as const;
      const losesOwner = current[0].role === 'owner' && (change === 'remove' || change.role !== 'owner');
      if (losesOwner && owners.length <= 1) return 'last_owner' as const;
      if (change === 'remove') {
        await m.query('DELETE FROM control.memberships WHERE tenant_id = $1 AND user_id = $2', [tenantId, userId]);
      } else {
        await m.query(
          'UPDATE control.memberships SET role = $3, updated_at = now() WHERE tenant_id = $1 AND user_id = $2',
          [tenantId, userId, change.role],
        );
      }
      if (alsoInTransaction) await alsoInTransaction(m);
      return 'ok' as const;
    });
    this.routing.forgetMembership(tenantId, userId);
    return result;
  }
}
