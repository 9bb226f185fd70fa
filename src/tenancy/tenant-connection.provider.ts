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
 * What product code gets: an EntityManager already confined to the request's tenant (its
 * placement, its RLS setting, one transaction), on every tier alike. Registered request-scoped
 * (or durable per tenant, see TenancyModule); it throws when used outside a tenant request.
 */
export class TenantConnectionProvider {
  constructor(private readonly store: TenantContextStore) {}

  get manager(): EntityManager {
    return this.store.require().manager;
  }

  get tenant(): CurrentTenant {
    const { access } = this.store.require();
    return { id: access.route.id, slug: access.route.slug, tier: access.route.placement.tier, role: access.role, userId: access.userId };
  }
}
