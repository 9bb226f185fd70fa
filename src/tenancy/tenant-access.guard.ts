import { CanActivate, ExecutionContext, Inject, Injectable, Optional } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import type { AuthUser } from '../auth/auth-user.js';
import { ValidationFailed } from '../http/domain-error.js';
import { LifecycleError } from '../lifecycle/lifecycle.errors.js';
import { DATABASE_RUNTIME, DatabaseRuntime } from './placements.js';
import { RoutingTable } from './routing-table.service.js';
import { TENANT_ROLES } from './tenant-scoped.decorator.js';
import { Role, SLUG_PATTERN, SLUG_RULE, SupportGrantAccess, TenantAccess, TenantRoute, WRITER_ROLES } from './tenant-route.js';
import { TenancyError, tenantNotFound } from './tenancy.errors.js';
import { TenantPools } from './tenant-pools.service.js';
import { recordPlatformEvent } from '../lifecycle/platform-audit.js';

export type TenantRequest = FastifyRequest & {
  user?: AuthUser;
  tenantAccess?: TenantAccess;
  /** Set as soon as a support grant admits the caller, before any later refusal, so the request is audited whatever its outcome. */
  supportGrant?: { grant: SupportGrantAccess; route: TenantRoute };
  /** Milliseconds the request held a tenant connection and transaction (usage metering's database time). */
  dbTimeMs?: number;
};

/**
 * How support staff who are not members may enter a tenant: provided by the support module
 * (tenancy does not depend on it). Asked on every such request, never for members.
 */
export interface SupportAccessCheck {
  /** The caller's active, unexpired grant in the tenant, or null (the refusal is the implementation's to record). */
  activeGrant(tenant: TenantRoute, user: AuthUser, request: { id: string; method: string; path: string }): Promise<SupportGrantAccess | null>;
}
export const SUPPORT_ACCESS = Symbol('SupportAccessCheck');

/**
 * What the tenant's plan says about this request (provided by the billing module; tenancy does
 * not depend on it): may refuse it (a read-only tenant's write) and sets access.limits. Called
 * on every admitted request, so it must answer from memory in the common case.
 */
export interface TenantAdmission {
  admit(access: TenantAccess, isRead: boolean): void | Promise<void>;
}
export const TENANT_ADMISSION = Symbol('TenantAdmission');

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The slug a request names, from the path or the X-Tenant header; both must agree. */
export function requestedSlug(req: FastifyRequest): string {
  const fromPath = (req.params as Record<string, string | undefined> | undefined)?.slug;
  const header = req.headers['x-tenant'];
  const fromHeader = Array.isArray(header) ? header[0] : header;
  if (fromPath !== undefined && fromHeader !== undefined && fromHeader !== fromPath) {
    throw new TenancyError('TENANT_MISMATCH', 'the X-Tenant header names a different tenant than the path', 'X-Tenant');
  }
  const slug = fromPath ?? fromHeader;
  if (slug === undefined || slug === '') {
    throw new TenancyError('TENANT_REQUIRED', 'name the tenant in the path or the X-Tenant header', 'slug');
  }
  if (!SLUG_PATTERN.test(slug)) {
    throw new ValidationFailed('slug', SLUG_RULE);
  }
  return slug;
}

/**
 * Resolves the tenant of a tenant-scoped route and checks that the caller may enter it:
 * non-members get the same 404 as a tenant that does not exist (support staff get in only with an
 * active grant, see SupportAccessCheck); suspended tenants and tenants scheduled for deletion 403.
 */
@Injectable()
export class TenantAccessGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly routing: RoutingTable,
    @Inject(DATABASE_RUNTIME) private readonly runtime: DatabaseRuntime,
    private readonly pools: TenantPools,
    @Optional() @Inject(SUPPORT_ACCESS) private readonly support?: SupportAccessCheck,
    @Optional() @Inject(TENANT_ADMISSION) private readonly admission?: TenantAdmission,
  ) {}

  private readonly attempts = new Map<string, number>();

  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    const req = context.switchToHttp().getRequest<TenantRequest>();
    const user = req.user;
    if (!user) return false;
    const slug = requestedSlug(req);
    // Cached routes and roles come back synchronously: the common path allocates no promise.
    const route = this.routing.resolveSlug(slug);
    if (route instanceof Promise) return route.then((r) => this.withRoute(context, req, user, slug, r));
    return this.withRoute(context, req, user, slug, route);
  }

  private withRoute(context: ExecutionContext, req: TenantRequest, user: AuthUser, slug: string, route: TenantRoute | null): boolean | Promise<boolean> {
    if (!route) throw tenantNotFound(slug);
    const role = this.routing.roleOf(route.id, user.id);
    if (role instanceof Promise) return role.then((r) => this.admit(context, req, user, slug, route, r));
    return this.admit(context, req, user, slug, route, role);
  }

  private admit(context: ExecutionContext, req: TenantRequest, user: AuthUser, slug: string, route: TenantRoute, role: Role | null): boolean | Promise<boolean> {
    if (role) return this.enter(context, req, user.id, slug, route, role);
    // Not a member: only support staff with an active grant get in, checked afresh on every
    // request (revocation and expiry count at once); everyone else gets the non-member 404.
    if (!user.support || !this.support) {
      this.noteCrossTenantAttempt(req, user, route);
      throw tenantNotFound(slug);
    }
    const request = { id: String(req.id), method: req.method, path: req.url.split('?')[0] };
    return this.support.activeGrant(route, user, request).then((grant) => {
      if (!grant) throw tenantNotFound(slug);
      req.supportGrant = { grant, route };
      return this.enter(context, req, user.id, slug, route, grant.access === 'read' ? 'viewer' : 'member', grant);
    });
  }

  /**
   * A signed-in person reaching into a tenant they do not belong to goes into the platform audit
   * log: once a minute per person and tenant (so a scan cannot turn into a flood of writes), not
   * awaited (the 404 does not wait for it).
   */
  private noteCrossTenantAttempt(req: TenantRequest, user: AuthUser, route: TenantRoute): void {
    const key = `${user.id}:${route.id}`;
    const now = Date.now();
    if ((this.attempts.get(key) ?? 0) > now - 60_000) return;
    if (this.attempts.size > 10_000) this.attempts.clear();
    this.attempts.set(key, now);
    recordPlatformEvent(this.pools.control(), {
      actorKind: 'user',
      actorId: user.id,
      action: 'access.cross_tenant_refused',
      tenantId: route.id,
      targetType: 'tenant',
      targetId: route.id,
      requestId: String(req.id),
      metadata: { method: req.method, path: req.url.split('?')[0] },
    }).catch(() => undefined);
  }

  private enter(context: ExecutionContext, req: TenantRequest, userId: string, slug: string, route: TenantRoute, role: Role, grant?: SupportGrantAccess): boolean | Promise<boolean> {
    // Request logs carry the tenant id (see customProps in app.module.ts).
    (req.raw as { tenantId?: string }).tenantId = route.id;
    if (route.status === 'suspended') {
      throw new TenancyError('TENANT_SUSPENDED', `tenant '${slug}' is suspended${route.statusReason ? `: ${route.statusReason}` : ''}`);
    }
    if (route.status === 'pending_deletion') {
      const on = route.purgeAfter?.toISOString() ?? 'an unknown date';
      throw new LifecycleError('TENANT_PENDING_DELETION', `tenant '${slug}' is scheduled for deletion on ${on}; a platform admin can restore it until then`);
    }
    if (route.status !== 'active' || this.runtime.failedPlacements.has(route.id)) {
      throw new TenancyError('TENANT_UNAVAILABLE', `tenant '${slug}' is not available yet; retry shortly`, undefined, { 'retry-after': '5' });
    }
    const allowed = this.reflector.get<Role[] | undefined>(TENANT_ROLES, context.getHandler());
    const isRead = READ_METHODS.has(req.method);
    if (allowed ? !allowed.includes(role) : !isRead && !WRITER_ROLES.includes(role)) {
      const who = grant ? `a ${grant.access} support grant` : `the ${role} role`;
      throw new TenancyError('ROLE_FORBIDDEN', `${who} may not do this in tenant '${slug}'`);
    }
    // A read grant's transactions are READ ONLY whatever the route: the database refuses its writes
    // even should a route's roles let a viewer write.
    const readOnly = isRead || !WRITER_ROLES.includes(role) || grant?.access === 'read';
    const access: TenantAccess = { route, userId, role, readOnly, supportGrant: grant };
    req.tenantAccess = access;
    const admitted = this.admission?.admit(access, isRead);
    return admitted instanceof Promise ? admitted.then(() => true) : true;
  }
}
