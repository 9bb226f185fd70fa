import { Body, Controller, Delete, Get, HttpCode, Param, Post, Req, UseGuards } from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiConflictResponse,
  ApiForbiddenResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { AuthUser, CurrentUser } from '../auth/auth-user.js';
import { PlatformAdminGuard } from '../auth/platform-admin.guard.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { UuidPipe } from '../http/validation.js';
import { TenantDto } from '../tenancy/dto/tenant.dto.js';
import type { Actor } from './actor.js';
import { PurgeReceiptDto, SuspendTenantDto } from './dto/lifecycle.dto.js';
import { LifecycleService } from './lifecycle.service.js';

function adminActor(user: AuthUser, req: FastifyRequest): Actor {
  return { kind: 'user', id: user.id, requestId: String(req.id) };
}

@ApiTags('tenant lifecycle (platform admins)')
@ApiBearerAuth()
@ApiForbiddenResponse({ type: ErrorBodyDto, description: 'The caller is not a platform admin' })
@ApiBadRequestResponse({ type: ErrorBodyDto, description: 'The id is not a UUID, or the body is invalid' })
@ApiNotFoundResponse({ type: ErrorBodyDto, description: 'No tenant has this id' })
@UseGuards(PlatformAdminGuard)
@Controller('tenants')
export class LifecycleController {
  constructor(private readonly lifecycle: LifecycleService) {}

  @Post(':id/suspend')
  @HttpCode(200)
  @ApiOperation({ summary: 'Suspend an active tenant: its members get 403 TENANT_SUSPENDED with the reason; its data is kept' })
  @ApiOkResponse({ type: TenantDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'TENANT_STATE_CONFLICT: the tenant is not active' })
  async suspend(@Param('id', UuidPipe) id: string, @Body() dto: SuspendTenantDto, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<TenantDto> {
    return TenantDto.from(await this.lifecycle.suspend(id, dto.reason, adminActor(user, req)));
  }

  @Post(':id/reactivate')
  @HttpCode(200)
  @ApiOperation({ summary: 'Reactivate a suspended tenant' })
  @ApiOkResponse({ type: TenantDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'TENANT_STATE_CONFLICT: the tenant is not suspended' })
  async reactivate(@Param('id', UuidPipe) id: string, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<TenantDto> {
    return TenantDto.from(await this.lifecycle.reactivate(id, adminActor(user, req)));
  }

  @Delete(':id')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Schedule the deletion of an active or suspended tenant',
    description:
      'Its members get 403 TENANT_PENDING_DELETION at once. Its data is purged after the grace period ' +
      '(TENANT_DELETION_GRACE_DAYS), from purgeAfter on; until then POST /tenants/{id}/restore brings it back.',
  })
  @ApiAcceptedResponse({ type: TenantDto, description: 'Scheduled: status pending_deletion, with purgeAfter' })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'TENANT_STATE_CONFLICT (already pending deletion, or not active or suspended) or MOVE_IN_PROGRESS' })
  async scheduleDeletion(@Param('id', UuidPipe) id: string, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<TenantDto> {
    return TenantDto.from(await this.lifecycle.scheduleDeletion(id, adminActor(user, req)));
  }

  @Post(':id/restore')
  @HttpCode(200)
  @ApiOperation({ summary: 'Restore a tenant scheduled for deletion (until its purge starts): active again, data untouched' })
  @ApiOkResponse({ type: TenantDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'TENANT_STATE_CONFLICT: not pending deletion, or its purge has started' })
  async restore(@Param('id', UuidPipe) id: string, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<TenantDto> {
    return TenantDto.from(await this.lifecycle.restore(id, adminActor(user, req)));
  }

  @Post(':id/purge')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Purge a tenant whose grace period is over, now (the sweeper would do it by itself)',
    description: 'Removes its rows, its schema or database, the leftovers of a finished move, its memberships and its routing row; answers the purge receipt.',
  })
  @ApiOkResponse({ type: PurgeReceiptDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'PURGE_NOT_DUE (with the date), TENANT_STATE_CONFLICT (not pending deletion) or MOVE_IN_PROGRESS' })
  async purge(@Param('id', UuidPipe) id: string, @CurrentUser() user: AuthUser, @Req() req: FastifyRequest): Promise<PurgeReceiptDto> {
    return PurgeReceiptDto.from(await this.lifecycle.purge(id, adminActor(user, req)));
  }

  @Get(':id/purge-receipt')
  @ApiOperation({
    summary: 'The purge receipt of a purged tenant, from the platform audit log',
    description: 'sha256 is the hex SHA-256 of the receipt as canonical JSON (keys sorted at every level, no white space, UTF-8).',
  })
  @ApiOkResponse({ type: PurgeReceiptDto })
  @ApiNotFoundResponse({ type: ErrorBodyDto, description: 'PURGE_RECEIPT_NOT_FOUND' })
  async purgeReceipt(@Param('id', UuidPipe) id: string): Promise<PurgeReceiptDto> {
    return PurgeReceiptDto.from(await this.lifecycle.purgeReceipt(id));
  }
}
