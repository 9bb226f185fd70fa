import { Injectable } from '@nestjs/common';
import { AuditService } from '../audit/audit.service.js';
import { TenantContextStore } from '../tenancy/tenant-context.js';
import { TenantConnectionProvider } from '../tenancy/tenant-connection.provider.js';
import { MemberRecord, MembershipChange, TenantDirectory } from '../tenancy/tenant-directory.service.js';
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
  ) {}

  /** Memberships live in the control plane: their entry goes to the tenant's log right after the change. */
  private async recorded(action: string, userId: string, metadata: Record<string, unknown>): Promise<void> {
    const { access, request } = this.store.require();
    await this.audit.recordFor(access.route, { actorKind: 'user', actorId: access.userId, action, targetType: 'user', targetId: userId, metadata }, request);
  }

  list(limit: number, cursor?: string): Promise<MemberRecord[]> {
    return this.directory.listMembers(this.tenant.tenant.id, limit, cursor);
  }

  async add(email: string, role: Role): Promise<MemberRecord> {
    const { id: tenantId, slug } = this.tenant.tenant;
    this.assertMayTouchOwner(role);
    const user = await this.directory.ensureUser(email);
    const member = await this.directory.addMember(tenantId, user.id, role);
    if (!member) throw new OrganizationsError('MEMBER_EXISTS', `${user.email} is already a member of '${slug}'`, 'email');
    await this.recorded('member.added', user.id, { role });
    return member;
  }

  async changeRole(userId: string, role: Role): Promise<MemberRecord> {
    const { id: tenantId, role: callerRole } = this.tenant.tenant;
    this.check(await this.directory.changeMember(tenantId, userId, { role }, callerRole === 'owner'), userId);
    const member = await this.directory.findMember(tenantId, userId);
    if (!member) throw memberNotFound(userId);
    await this.recorded('member.role_changed', userId, { role });
    return member;
  }

  async remove(userId: string): Promise<void> {
    const { id: tenantId, role: callerRole } = this.tenant.tenant;
    this.check(await this.directory.changeMember(tenantId, userId, 'remove', callerRole === 'owner'), userId);
    await this.recorded('member.removed', userId, {});
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
