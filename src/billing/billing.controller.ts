import { Body, Controller, Get, Param, Put, Req, UseGuards } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiForbiddenResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { AuthUser, CurrentUser } from '../auth/auth-user.js';
import { PlatformAdminGuard } from '../auth/platform-admin.guard.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { UuidPipe } from '../http/validation.js';
import { TenantConnectionProvider } from '../tenancy/tenant-connection.provider.js';
import { AllowRoles, TenantScoped } from '../tenancy/tenant-scoped.decorator.js';
import { BillingService } from './billing.service.js';
import { ChangeBillingDto, PlanDto, PlanListDto, TenantBillingDto } from './dto/billing.dto.js';

/** A tenant's own billing, for its owners and billing members. */
@ApiTags('billing')
@ApiBadRequestResponse({ type: ErrorBodyDto, description: 'Malformed slug' })
// Billing lives in the control plane: no tenant transaction.
@TenantScoped({ transaction: false })
@Controller('orgs/:slug/billing')
export class TenantBillingController {
  constructor(
    private readonly billing: BillingService,
    private readonly tenant: TenantConnectionProvider,
  ) {}

  @Get()
  @AllowRoles('owner', 'billing')
  @ApiOperation({
    summary: "The tenant's plan (with its limits and flags), billing status, periods, seats bought and used, and whether it is read-only for non-payment",
    description: 'Owners and billing members only (others: 403 ROLE_FORBIDDEN). Works while the tenant is read-only.',
  })
  @ApiOkResponse({ type: TenantBillingDto })
  @ApiForbiddenResponse({ type: ErrorBodyDto, description: 'ROLE_FORBIDDEN: not an owner or billing member; TENANT_SUSPENDED' })
  async show(): Promise<TenantBillingDto> {
    const { id, slug } = this.tenant.tenant;
    return TenantBillingDto.from(await this.billing.view({ id, slug }));
  }
}

/** The plan catalogue, for anyone signed in. */
@ApiTags('billing')
@ApiBearerAuth()
@ApiUnauthorizedResponse({ type: ErrorBodyDto })
@Controller('plans')
export class PlansController {
  constructor(private readonly billing: BillingService) {}

  @Get()
  @ApiOperation({ summary: 'Every plan with its limits (null: unlimited) and flags (which tiers it includes), cheapest first' })
  @ApiOkResponse({ type: PlanListDto })
  async list(): Promise<PlanListDto> {
    return { items: (await this.billing.catalogue()).map(PlanDto.from) };
  }
}

/** Platform admins set a tenant's plan (and status) by hand: contracts, credits, corrections. */
@ApiTags('billing (platform admins)')
@ApiBearerAuth()
@ApiForbiddenResponse({ type: ErrorBodyDto, description: 'PLATFORM_ADMIN_REQUIRED' })
@ApiBadRequestResponse({ type: ErrorBodyDto, description: 'The id is not a UUID, or the body is invalid' })
@ApiNotFoundResponse({ type: ErrorBodyDto, description: 'TENANT_NOT_FOUND: no tenant has this id' })
@UseGuards(PlatformAdminGuard)
@Controller('tenants/:id/billing')
export class TenantBillingAdminController {
  constructor(private readonly billing: BillingService) {}

  @Get()
  @ApiOperation({ summary: "A tenant's billing" })
  @ApiOkResponse({ type: TenantBillingDto })
  async show(@Param('id', UuidPipe) id: string): Promise<TenantBillingDto> {
    return TenantBillingDto.from(await this.billing.viewById(id));
  }

  @Put()
  @ApiOperation({
    summary: "Set a tenant's plan, and optionally its billing status",
    description:
      "The plan must include the tenant's current tier. Going below current usage is allowed: the plan's limits then block only new creation. " +
      'Recorded in the tenant\'s and the platform\'s audit logs (billing.plan_changed, billing.status_changed) in the same transaction; effective at once on every instance.',
  })
  @ApiOkResponse({ type: TenantBillingDto })
  @ApiBadRequestResponse({ type: ErrorBodyDto, description: 'PLAN_NOT_FOUND (field plan), or VALIDATION_FAILED naming the field' })
  @ApiForbiddenResponse({ type: ErrorBodyDto, description: "PLAN_TIER_NOT_ALLOWED: the plan does not include the tenant's tier; PLATFORM_ADMIN_REQUIRED" })
  async change(@Param('id', UuidPipe) id: string, @Body() dto: ChangeBillingDto, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<TenantBillingDto> {
    const view = await this.billing.changePlan(id, { plan: dto.plan, status: dto.status, reason: dto.reason }, { kind: 'user', id: user.id, requestId: String(req.id) });
    return TenantBillingDto.from(view);
  }
}
