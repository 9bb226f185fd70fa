import { Injectable } from '@nestjs/common';
import type { AuthUser } from '../auth/auth-user.js';
import { recordPlatformEvent } from '../lifecycle/platform-audit.js';
import type { SupportAccessCheck } from '../tenancy/tenant-access.guard.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import type { SupportGrantAccess, TenantRoute } from '../tenancy/tenant-route.js';
import { SupportGrantsStore } from './support-grants.store.js';

/**
 * What the tenant access guard asks when support staff who are not members enter a tenant: one
 * query per request, never cached, so a revocation or an expiry counts on the very next request
 * on every instance. Refusals are recorded in the platform audit log, with why.
 */
@Injectable()
export class SupportAccessService implements SupportAccessCheck {
  constructor(
    private readonly store: SupportGrantsStore,
    private readonly pools: TenantPools,
  ) {}

  async activeGrant(tenant: TenantRoute, user: AuthUser, request: { id: string; method: string; path: string }): Promise<SupportGrantAccess | null> {
    const grant = await this.store.forAccess(tenant.id, user.id);
    if (grant?.status === 'active') return { id: grant.id, access: grant.access };
    await recordPlatformEvent(this.pools.control(), {
      actorKind: 'support',
      actorId: user.id,
      action: 'support.access_refused',
      tenantId: tenant.id,
      targetType: grant ? 'support_grant' : undefined,
      targetId: grant?.id,
      requestId: request.id,
      // no_grant, or the status of their latest grant: requested, denied, revoked, expired.
      metadata: { reason: grant ? grant.status : 'no_grant', grantId: grant?.id ?? null, method: request.method, path: request.path },
    });
    return null;
  }
}
