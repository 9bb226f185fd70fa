import { applyDecorators, SetMetadata, UseGuards, UseInterceptors } from '@nestjs/common';
import { ApiBearerAuth, ApiForbiddenResponse, ApiNotFoundResponse, ApiParam, ApiTooManyRequestsResponse } from '@nestjs/swagger';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { TenantAccessGuard } from './tenant-access.guard.js';
import { TenantThrottlerGuard } from './tenant-throttler.guard.js';
import type { Role } from './tenant-route.js';
import { TenantAccessInterceptor, TenantTransactionInterceptor } from './tenant-transaction.interceptor.js';

export const TENANT_SCOPED = 'tenancy:scoped';
export const TENANT_ROLES = 'tenancy:roles';

/**
 * Marks a controller whose routes run inside one tenant (`/orgs/:slug/...`): membership is
 * checked, and the handler runs in a transaction confined to that tenant. Controllers that only
 * touch the control plane pass `{ transaction: false }` and hold no tenant connection.
 */
export function TenantScoped(options: { transaction?: boolean } = {}): ClassDecorator {
  const decorate = applyDecorators(
    SetMetadata(TENANT_SCOPED, true),
    // Controller-level, so they run after the global authentication guard; the rate limits after
    // the access check, so that nobody but the tenant's members spends its budget.
    UseGuards(TenantAccessGuard, TenantThrottlerGuard),
    UseInterceptors(options.transaction === false ? TenantAccessInterceptor : TenantTransactionInterceptor),
    ApiBearerAuth(),
    ApiParam({ name: 'slug', description: 'Tenant slug (the X-Tenant header, if sent, must match it)', example: 'acme' }),
    ApiNotFoundResponse({ type: ErrorBodyDto, description: 'No such tenant, or the caller is not a member (indistinguishable)' }),
    ApiForbiddenResponse({ type: ErrorBodyDto, description: 'Tenant suspended, or the role may not do this' }),
    ApiTooManyRequestsResponse({
      type: ErrorBodyDto,
      description: "Over the plan's requests per minute (RATE_LIMITED), or its requests at once (TENANT_BUSY); see Retry-After",
    }),
  ) as ClassDecorator;
  return (target) => {
    tenantScopedControllers.add(target);
    decorate(target);
  };
}

/** Controllers marked @TenantScoped(), so the X-Tenant header form of their routes can be derived. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export const tenantScopedControllers = new Set<Function>();

/** Roles allowed on a route; without it, reads are open to every member and writes to owner, admin and member. */
export const AllowRoles = (...roles: Role[]) => SetMetadata(TENANT_ROLES, roles);
