import { Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service.js';
import { PlanLimits } from '../billing/plan-limits.js';
import { TenantContextStore } from '../tenancy/tenant-context.js';
import { TenantConnectionProvider } from '../tenancy/tenant-connection.provider.js';
import { MemberRecord, MembershipChange, Queryable, TenantDirectory } from '../tenancy/tenant-directory.service.js';
import type { Role } from '../tenancy/tenant-route.js';
import { OrganizationsError } from './organizations.errors.js';

const memberNotFound = (userId: string) => new OrganizationsError('MEMBER_NOT_FOUND', `user ${userId} is not a member of this tenant`, 'userId');

/** Members of the current tenant. Only owners grant, change or remove the owner role; a tenant always keeps one owner. */
@Injectable()
export class MembersService {
  constructor(
    private readonly tenant: TenantConnectionProvider,
    private readonly directory: TenantDirectory,
    private readonly audit: AuditService,
    private readonly store: TenantContextStore,
    private readonly limits: PlanLimits,
  ) {}

  /**
   * Memberships live in the control plane: the tenant's audit entry is queued in the change's own
   * transaction (control.audit_outbox), then delivered to the tenant's log.
   */
  private entry(action: string, userId: string, metadata: Record<string, unknown>): (m: Queryable) => Promise<void> {
    const { access, request } = this.store.require();
    return (m) => this.audit.enqueue(m, access.route.id, { actorKind: 'user', actorId: access.userId, action, targetType: 'user', targetId: userId, metadata }, request);
  }

  /** The change is committed with its queued entry: a failed delivery is the sweeper's to retry, not the caller's error. */
  private async delivered(): Promise<void> {
    await this.audit.deliver(this.tenant.tenant.id).catch(() => undefined);
  }

  list(limit: number, cursor?: string): Promise<MemberRecord[]> {
    return this.directory.listMembers(this.tenant.tenant.id, limit, cursor);
  }

  async add(email: string, role: Role): Promise<MemberRecord> {
    const { id: tenantId, slug } = this.tenant.tenant;
    this.assertMayTouchOwner(role);
    const user = await this.directory.ensureUser(email);
    const seat = this.limits.seatCheck(tenantId);
    const audited = this.entry('member.added', user.id, { role });
    const member = await this.directory.addMember(tenantId, user.id, role, async (m) => {
      await seat(m);
      await audited(m);
    });
    if (!member) throw new OrganizationsError('MEMBER_EXISTS', `${user.email} is already a member of '${slug}'`, 'email');
    await this.delivered();
    return member;
  }

  async changeRole(userId: string, role: Role): Promise<MemberRecord> {
    const { id: tenantId, role: callerRole } = this.tenant.tenant;
    this.check(await this.directory.changeMember(tenantId, userId, { role }, callerRole === 'owner', this.entry('member.role_changed', userId, { role })), userId);
    await this.delivered();
    const member = await this.directory.findMember(tenantId, userId);
    if (!member) throw memberNotFound(userId);
    return member;
  }

  async remove(userId: string): Promise<void> {
    const { id: tenantId, role: callerRole } = this.tenant.tenant;
    this.check(await this.directory.changeMember(tenantId, userId, 'remove', callerRole === 'owner', this.entry('member.removed', userId, {})), userId);
    await this.delivered();
  }

  private assertMayTouchOwner(role: Role): void {
    if (role === 'owner' && this.tenant.tenant.role !== 'owner') {
      throw new OrganizationsError('OWNER_ROLE_RESTRICTED', 'only an owner may grant, change or remove the owner role', 'role');
    }
  }

  private check(result: MembershipChange, userId: string): void {
    if (result === 'not_found') throw memberNotFound(userId);
    if (result === 'owner_restricted') this.assertMayTouchOwner('owner');
    if (result === 'last_owner') {
      throw new OrganizationsError('LAST_OWNER', 'a tenant must keep at least one owner; make someone else owner first', 'role');
    }
  }
}
