import { ContextId, ContextIdFactory, ContextIdStrategy, HostComponentInfo } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { SLUG_PATTERN } from './tenant-route.js';

const MAX_TENANT_CONTEXTS = 10_000;

/**
 * Durable providers: one DI sub-tree per tenant instead of one per request. Requests name
 * their tenant by slug; unknown shapes fall back to a per-request tree. Bounded, so random
 * slugs cannot grow it without limit (an evicted tenant simply gets a fresh tree).
 */
export class TenantContextIdStrategy implements ContextIdStrategy {
  private readonly tenants = new Map<string, ContextId>();

  attach(contextId: ContextId, request: FastifyRequest) {
    const params = request.params as Record<string, string | undefined> | undefined;
    const header = request.headers?.['x-tenant'];
    const slug = params?.slug ?? (typeof header === 'string' ? header : undefined);
    if (!slug || !SLUG_PATTERN.test(slug)) return undefined;
    let tenantContext = this.tenants.get(slug);
    if (!tenantContext) {
      if (this.tenants.size >= MAX_TENANT_CONTEXTS) this.tenants.delete(this.tenants.keys().next().value!);
      tenantContext = ContextIdFactory.create();
      this.tenants.set(slug, tenantContext);
    }
    const durable = tenantContext;
    return (info: HostComponentInfo) => (info.isTreeDurable ? durable : contextId);
  }
}
