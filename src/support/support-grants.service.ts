import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { AppConfig } from '../../config/configuration.js';
import type { AuthUser } from '../auth/auth-user.js';
import { AuthError } from '../auth/auth.errors.js';
import { ValidationFailed } from '../http/domain-error.js';
import { recordPlatformEvent } from '../lifecycle/platform-audit.js';
import { RoutingTable } from '../tenancy/routing-table.service.js';
import type { Queryable } from '../tenancy/tenant-directory.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { TenantRoute } from '../tenancy/tenant-route.js';
import { TenancyError } from '../tenancy/tenancy.errors.js';
import { ApproverKind, GrantAccess, SupportGrant, SupportGrantsStore, SupportSettings, WriteApprover } from './support-grants.store.js';
import { SupportError } from './support.errors.js';

/** Who acts, from where: a tenant's owner or admin (through /orgs/:slug), or platform staff (through /support). */
export type GrantSide = { side: 'tenant'; tenantId: string } | { side: 'platform' };

export interface Caller {
  user: AuthUser;
  requestId: string;
}

export interface GrantRequest {
  tenant: string;
  reason: string;
  ticket?: string;
  access: GrantAccess;
  minutes: number;
}

export interface Page {
  limit: number;
  cursor?: string;
}

const grantNotFound = (id: string) => new SupportError('SUPPORT_GRANT_NOT_FOUND', `support grant ${id} was not found`, 'id');

/** Who must approve a new grant, from the tenant's settings. */
function approverFor(access: GrantAccess, s: SupportSettings): ApproverKind {
  if (access === 'read') return s.readRequiresApproval ? 'tenant' : 'automatic';
  return s.writeApprover;
}

/**
 * Support grants: requested by support staff with a reason, approved or denied by the tenant or a
 * platform admin (as the tenant's settings say; never by the requester), revoked by either side.
 * Every step is in the platform audit log, in the transaction of the change it records.
 */
@Injectable()
export class SupportGrantsService {
  private readonly maxMinutes: number;

  constructor(
    private readonly store: SupportGrantsStore,
    private readonly pools: TenantPools,
    private readonly routing: RoutingTable,
    config: ConfigService<AppConfig, true>,
  ) {
    this.maxMinutes = config.get('support', { infer: true }).grantMaxMinutes;
  }

  async request(input: GrantRequest, caller: Caller): Promise<SupportGrant> {
    if (!caller.user.support) throw new SupportError('SUPPORT_STAFF_REQUIRED', 'only platform support staff may request support access');
    if (input.minutes > this.maxMinutes) throw new ValidationFailed('minutes', `minutes must be 1 to ${this.maxMinutes} (SUPPORT_GRANT_MAX_MINUTES)`);
    const route = await this.routing.resolveSlug(input.tenant);
    if (!route || route.status === 'provisioning' || route.status === 'failed') {
      throw new TenancyError('TENANT_NOT_FOUND', `tenant '${input.tenant}' was not found`, 'tenant');
    }
    const id = await this.pools.control().transaction(async (m) => {
      const approverKind = approverFor(input.access, await this.store.settings(route.id, m));
      const grantId = await this.store.insert(m, {
        tenantId: route.id,
        requesterId: caller.user.id,
        reason: input.reason,
        ticket: input.ticket ?? null,
        access: input.access,
        minutes: input.minutes,
        approverKind,
      });
      await this.record(m, caller, 'support', 'support.grant_requested', route.id, grantId, {
        access: input.access,
        minutes: input.minutes,
        reason: input.reason,
        ticket: input.ticket ?? null,
        approverKind,
      });
      if (approverKind === 'automatic') {
        await recordPlatformEvent(m, {
          actorKind: 'system',
          actorId: 'support-automatic-approval',
          action: 'support.grant_approved',
          tenantId: route.id,
          targetType: 'support_grant',
          targetId: grantId,
          requestId: caller.requestId,
          metadata: { approverKind, access: input.access, minutes: input.minutes },
        });
      }
      return grantId;
    });
    return (await this.store.find(id))!;
  }

  /** Support staff see their own grants; platform admins see everyone's (optionally one tenant's). */
  async listForStaff(user: AuthUser, tenantSlug: string | undefined, page: Page): Promise<SupportGrant[]> {
    if (!user.platformAdmin && !user.support) throw new SupportError('SUPPORT_STAFF_REQUIRED', 'only platform support staff and platform admins may list support grants');
    let tenantId: string | undefined;
    if (tenantSlug !== undefined) {
      const route = await this.routing.resolveSlug(tenantSlug);
      if (!route) return [];
      tenantId = route.id;
    }
    return this.store.list({ tenantId, requesterId: user.platformAdmin ? undefined : user.id, limit: page.limit, before: page.cursor });
  }

  listForTenant(tenant: TenantRoute, page: Page): Promise<SupportGrant[]> {
    return this.store.list({ tenantId: tenant.id, limit: page.limit, before: page.cursor });
  }

  /** One grant, for platform staff: admins see any, support staff their own. */
  async getForStaff(id: string, user: AuthUser): Promise<SupportGrant> {
    if (!user.platformAdmin && !user.support) throw new SupportError('SUPPORT_STAFF_REQUIRED', 'only platform support staff and platform admins may see support grants');
    const grant = await this.store.find(id);
    if (!grant || (!user.platformAdmin && grant.requester.id !== user.id)) throw grantNotFound(id);
    return grant;
  }

  approve(id: string, by: GrantSide, caller: Caller): Promise<SupportGrant> {
    return this.decide(id, by, caller, 'approve', null);
  }

  deny(id: string, by: GrantSide, caller: Caller, reason: string | null): Promise<SupportGrant> {
    return this.decide(id, by, caller, 'deny', reason);
  }

  /** Ends an active grant (or withdraws a pending request): the tenant's owners and admins, platform admins, or the requester. */
  async revoke(id: string, by: GrantSide, caller: Caller, reason: string | null): Promise<SupportGrant> {
    const { user } = caller;
    if (by.side === 'platform' && !user.platformAdmin && !user.support) {
      throw new SupportError('SUPPORT_STAFF_REQUIRED', 'only platform admins and the requester may revoke a support grant here');
    }
    await this.pools.control().transaction(async (m) => {
      const grant = await this.store.lock(m, id);
      if (!grant || (by.side === 'tenant' && grant.tenantId !== by.tenantId)) throw grantNotFound(id);
      // Support staff who are not admins act only on their own grants; others' do not exist for them.
      if (by.side === 'platform' && !user.platformAdmin && grant.requester.id !== user.id) throw grantNotFound(id);
      if (grant.status !== 'active' && grant.status !== 'requested') {
        throw new SupportError('SUPPORT_GRANT_STATE_CONFLICT', `support grant ${id} is ${grant.status}: only an active grant or a pending request can be revoked`);
      }
      await this.store.revoke(m, id, user.id, reason);
      const actorKind = grant.requester.id === user.id ? 'support' : 'user';
      await this.record(m, caller, actorKind, 'support.grant_revoked', grant.tenantId, id, { by: by.side, reason, wasStatus: grant.status, access: grant.access });
    });
    return (await this.store.find(id))!;
  }

  settings(tenant: TenantRoute): Promise<SupportSettings> {
    return this.store.settings(tenant.id);
  }

  async updateSettings(tenant: TenantRoute, change: { readRequiresApproval?: boolean; writeApprover?: WriteApprover }, caller: Caller): Promise<SupportSettings> {
    await this.pools.control().transaction(async (m) => {
      await this.store.updateSettings(m, tenant.id, change);
      await this.record(m, caller, 'user', 'support.settings_changed', tenant.id, tenant.id, { ...change }, 'tenant');
    });
    return this.store.settings(tenant.id);
  }

  private async decide(id: string, by: GrantSide, caller: Caller, decision: 'approve' | 'deny', reason: string | null): Promise<SupportGrant> {
    const { user } = caller;
    if (by.side === 'platform' && !user.platformAdmin) throw new AuthError('PLATFORM_ADMIN_REQUIRED', `only platform admins may ${decision} support grants here`);
    await this.pools.control().transaction(async (m) => {
      const grant = await this.store.lock(m, id);
      if (!grant || (by.side === 'tenant' && grant.tenantId !== by.tenantId)) throw grantNotFound(id);
      if (grant.requester.id === user.id) throw new SupportError('SUPPORT_SELF_APPROVAL', `nobody may ${decision} their own support grant`);
      if (grant.approverKind !== 'automatic' && grant.approverKind !== by.side) {
        const where = grant.approverKind === 'tenant' ? `the tenant's owners or admins (POST /orgs/${grant.tenantSlug}/support-grants/${id}/${decision})` : `a platform admin (POST /support/grants/${id}/${decision})`;
        throw new SupportError('SUPPORT_APPROVER_MISMATCH', `this grant is decided by ${where}`);
      }
      if (grant.status !== 'requested') {
        throw new SupportError('SUPPORT_GRANT_STATE_CONFLICT', `support grant ${id} is ${grant.status}: only a pending request can be ${decision === 'approve' ? 'approved' : 'denied'}`);
      }
      if (decision === 'approve') await this.store.approve(m, id, user.id);
      else await this.store.deny(m, id, user.id, reason);
      const action = decision === 'approve' ? 'support.grant_approved' : 'support.grant_denied';
      await this.record(m, caller, 'user', action, grant.tenantId, id, { approverKind: by.side, access: grant.access, minutes: grant.minutes, reason });
    });
    return (await this.store.find(id))!;
  }

  private record(
    m: Queryable,
    caller: Caller,
    actorKind: 'user' | 'support',
    action: string,
    tenantId: string,
    targetId: string,
    metadata: Record<string, unknown>,
    targetType = 'support_grant',
  ): Promise<string> {
    return recordPlatformEvent(m, { actorKind, actorId: caller.user.id, action, tenantId, targetType, targetId, metadata, requestId: caller.requestId });
  }
}
