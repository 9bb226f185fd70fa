import { Body, Controller, Get, HttpCode, Param, Post, Query, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiForbiddenResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { AuthUser, CurrentUser } from '../auth/auth-user.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { nextCursor } from '../http/page.dto.js';
import { UuidPipe } from '../http/validation.js';
import { GrantDecisionDto, ListGrantsQuery, RequestGrantDto, SupportGrantDto, SupportGrantPageDto } from './dto/support.dto.js';
import { Caller, SupportGrantsService } from './support-grants.service.js';

const PLATFORM = { side: 'platform' } as const;

/** Support grants from the platform side: support staff request them; platform admins approve, deny and revoke. */
@ApiTags('support access')
@ApiBearerAuth()
@ApiBadRequestResponse({ type: ErrorBodyDto, description: 'The body, query or id is invalid (the field is named)' })
@ApiForbiddenResponse({ type: ErrorBodyDto, description: 'SUPPORT_STAFF_REQUIRED, PLATFORM_ADMIN_REQUIRED, SUPPORT_SELF_APPROVAL or SUPPORT_APPROVER_MISMATCH' })
@Controller('support/grants')
export class SupportGrantsController {
  constructor(private readonly grants: SupportGrantsService) {}

  private caller(user: AuthUser, req: FastifyRequest): Caller {
    return { user, requestId: String(req.id) };
  }

  @Post()
  @ApiOperation({
    summary: 'Request access to a tenant (support staff)',
    description:
      'Read access is active at once for `minutes` unless the tenant requires approval for reads; write access always waits for ' +
      "approval by the tenant's owners or admins, or by a platform admin, as the tenant's settings say.",
  })
  @ApiCreatedResponse({ type: SupportGrantDto })
  @ApiNotFoundResponse({ type: ErrorBodyDto, description: 'TENANT_NOT_FOUND' })
  async request(@Body() dto: RequestGrantDto, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<SupportGrantDto> {
    return SupportGrantDto.from(await this.grants.request(dto, this.caller(user, req)));
  }

  @Get()
  @ApiOperation({ summary: "Support staff: their own grants; platform admins: everyone's (filter with ?tenant=)" })
  @ApiOkResponse({ type: SupportGrantPageDto })
  async list(@Query() q: ListGrantsQuery, @CurrentUser() user: AuthUser): Promise<SupportGrantPageDto> {
    const items = await this.grants.listForStaff(user, q.tenant, { limit: q.limit, cursor: q.cursor });
    return { items: items.map(SupportGrantDto.from), nextCursor: nextCursor(items, q.limit) };
  }

  @Get(':id')
  @ApiOkResponse({ type: SupportGrantDto })
  @ApiNotFoundResponse({ type: ErrorBodyDto, description: 'SUPPORT_GRANT_NOT_FOUND (support staff see only their own)' })
  async get(@Param('id', UuidPipe) id: string, @CurrentUser() user: AuthUser): Promise<SupportGrantDto> {
    return SupportGrantDto.from(await this.grants.getForStaff(id, user));
  }

  @Post(':id/approve')
  @HttpCode(200)
  @ApiOperation({ summary: 'Approve a write grant of a tenant whose writeApprover is platform (platform admins, never the requester)' })
  @ApiOkResponse({ type: SupportGrantDto, description: 'Active now, for its minutes' })
  @ApiNotFoundResponse({ type: ErrorBodyDto, description: 'SUPPORT_GRANT_NOT_FOUND' })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'SUPPORT_GRANT_STATE_CONFLICT: decided already, revoked or expired' })
  async approve(@Param('id', UuidPipe) id: string, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<SupportGrantDto> {
    return SupportGrantDto.from(await this.grants.approve(id, PLATFORM, this.caller(user, req)));
  }

  @Post(':id/deny')
  @HttpCode(200)
  @ApiOperation({ summary: 'Deny a pending grant that is the platform\'s to decide (platform admins, never the requester)' })
  @ApiOkResponse({ type: SupportGrantDto })
  @ApiNotFoundResponse({ type: ErrorBodyDto, description: 'SUPPORT_GRANT_NOT_FOUND' })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'SUPPORT_GRANT_STATE_CONFLICT' })
  async deny(@Param('id', UuidPipe) id: string, @Body() dto: GrantDecisionDto, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<SupportGrantDto> {
    return SupportGrantDto.from(await this.grants.deny(id, PLATFORM, this.caller(user, req), dto.reason ?? null));
  }

  @Post(':id/revoke')
  @HttpCode(200)
  @ApiOperation({ summary: 'End an active grant or withdraw a pending request (platform admins, or the requester): refused from the next request on' })
  @ApiOkResponse({ type: SupportGrantDto })
  @ApiNotFoundResponse({ type: ErrorBodyDto, description: 'SUPPORT_GRANT_NOT_FOUND' })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'SUPPORT_GRANT_STATE_CONFLICT: denied, revoked or expired already' })
  async revoke(@Param('id', UuidPipe) id: string, @Body() dto: GrantDecisionDto, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<SupportGrantDto> {
    return SupportGrantDto.from(await this.grants.revoke(id, PLATFORM, this.caller(user, req), dto.reason ?? null));
  }
}
