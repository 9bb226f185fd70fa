import { Body, Controller, Get, HttpCode, Param, Patch, Post, Query, Req } from '@nestjs/common';
import { ApiBadRequestResponse, ApiConflictResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { AuthUser, CurrentUser } from '../auth/auth-user.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { nextCursor, PageQuery } from '../http/page.dto.js';
import { UuidPipe } from '../http/validation.js';
import { TenantContextStore } from '../tenancy/tenant-context.js';
import { AllowRoles, TenantScoped } from '../tenancy/tenant-scoped.decorator.js';
import { GrantDecisionDto, SupportGrantDto, SupportGrantPageDto, SupportSettingsChangeDto, SupportSettingsDto } from './dto/support.dto.js';
import { Caller, GrantSide, SupportGrantsService } from './support-grants.service.js';

/** Support access as the tenant sees it: who asked, why, who approved, when; approve, deny, revoke (owners and admins). */
@ApiTags('support access')
@ApiBadRequestResponse({ type: ErrorBodyDto })
// Grants live in the control plane: no tenant transaction.
@TenantScoped({ transaction: false })
@Controller('orgs/:slug/support-grants')
export class TenantSupportGrantsController {
  constructor(
    private readonly grants: SupportGrantsService,
    private readonly context: TenantContextStore,
  ) {}

  private side(): GrantSide {
    return { side: 'tenant', tenantId: this.context.require().access.route.id };
  }

  private caller(user: AuthUser, req: FastifyRequest): Caller {
    return { user, requestId: String(req.id) };
  }

  @Get()
  @AllowRoles('owner', 'admin')
  @ApiOperation({ summary: "The tenant's support grants, active and past, newest first: reasons, tickets, approvers and times" })
  @ApiOkResponse({ type: SupportGrantPageDto })
  async list(@Query() q: PageQuery): Promise<SupportGrantPageDto> {
    const items = await this.grants.listForTenant(this.context.require().access.route, { limit: q.limit, cursor: q.cursor });
    return { items: items.map(SupportGrantDto.from), nextCursor: nextCursor(items, q.limit) };
  }

  @Post(':id/approve')
  @HttpCode(200)
  @AllowRoles('owner', 'admin')
  @ApiOperation({ summary: "Approve a pending grant that is the tenant's to decide (read grants when reads need approval; write grants unless the platform approves them)" })
  @ApiOkResponse({ type: SupportGrantDto, description: 'Active now, for its minutes' })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'SUPPORT_GRANT_STATE_CONFLICT: decided already, revoked or expired' })
  async approve(@Param('id', UuidPipe) id: string, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<SupportGrantDto> {
    return SupportGrantDto.from(await this.grants.approve(id, this.side(), this.caller(user, req)));
  }

  @Post(':id/deny')
  @HttpCode(200)
  @AllowRoles('owner', 'admin')
  @ApiOperation({ summary: "Deny a pending grant that is the tenant's to decide" })
  @ApiOkResponse({ type: SupportGrantDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'SUPPORT_GRANT_STATE_CONFLICT' })
  async deny(@Param('id', UuidPipe) id: string, @Body() dto: GrantDecisionDto, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<SupportGrantDto> {
    return SupportGrantDto.from(await this.grants.deny(id, this.side(), this.caller(user, req), dto.reason ?? null));
  }

  @Post(':id/revoke')
  @HttpCode(200)
  @AllowRoles('owner', 'admin')
  @ApiOperation({ summary: 'End an active grant (or refuse a pending one) at once: the next request under it is refused' })
  @ApiOkResponse({ type: SupportGrantDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'SUPPORT_GRANT_STATE_CONFLICT: denied, revoked or expired already' })
  async revoke(@Param('id', UuidPipe) id: string, @Body() dto: GrantDecisionDto, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<SupportGrantDto> {
    return SupportGrantDto.from(await this.grants.revoke(id, this.side(), this.caller(user, req), dto.reason ?? null));
  }
}

/** How support may reach into the tenant: whether reads need approval, who approves writes. */
@ApiTags('support access')
@ApiBadRequestResponse({ type: ErrorBodyDto })
@TenantScoped({ transaction: false })
@Controller('orgs/:slug/support-settings')
export class TenantSupportSettingsController {
  constructor(
    private readonly grants: SupportGrantsService,
    private readonly context: TenantContextStore,
  ) {}

  @Get()
  @AllowRoles('owner', 'admin')
  @ApiOkResponse({ type: SupportSettingsDto })
  async get(): Promise<SupportSettingsDto> {
    return SupportSettingsDto.from(await this.grants.settings(this.context.require().access.route));
  }

  @Patch()
  @AllowRoles('owner')
  @ApiOperation({ summary: 'Change the support settings (owners only); applies to grants requested from now on' })
  @ApiOkResponse({ type: SupportSettingsDto })
  async update(@Body() dto: SupportSettingsChangeDto, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<SupportSettingsDto> {
    const route = this.context.require().access.route;
    return SupportSettingsDto.from(await this.grants.updateSettings(route, dto, { user, requestId: String(req.id) }));
  }
}
