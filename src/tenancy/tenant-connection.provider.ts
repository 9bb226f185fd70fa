import type { EntityManager } from 'typeorm';
import { TenantContextStore } from './tenant-context.js';
import type { Role, Tier } from './tenant-route.js';

export interface CurrentTenant {
  id: string;
  slug: string;
  tier: Tier;
  role: Role;
  userId: string;
}

/**
 * What product code gets: an EntityManager already confined to the current request's tenant
 * (its placement, its RLS setting, one transaction), on every tier alike. The request's session
 * lives in AsyncLocalStorage, so the provider works at any DI scope (TENANT_PROVIDER_SCOPE:
 * singleton by default, or durable / request); it throws when used outside a tenant request.
 */
export class TenantConnectionProvider {
  constructor(private readonly store: TenantContextStore) {}

  get manager(): EntityManager {
    return this.store.requireSession().manager;
  }

  get tenant(): CurrentTenant {
    const { access } = this.store.require();
    return { id: access.route.id, slug: access.route.slug, tier: access.route.placement.tier, role: access.role, userId: access.userId };
  }
}
