import { Body, Controller, Get, HttpCode, Param, Post, Query, UseGuards } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBearerAuth,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiForbiddenResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiServiceUnavailableResponse,
  ApiTags,
} from '@nestjs/swagger';
import { PlatformAdminGuard } from '../auth/platform-admin.guard.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { nextCursor } from '../http/page.dto.js';
import { UuidPipe } from '../http/validation.js';
import { CreateTenantDto, ListTenantsQuery, TenantDto, TenantPageDto } from './dto/tenant.dto.js';
import { ProvisioningService } from './provisioning.service.js';
import { TenantDirectory } from './tenant-directory.service.js';
import { TenancyError } from './tenancy.errors.js';

@ApiTags('tenants (platform admins)')
@ApiBearerAuth()
@ApiForbiddenResponse({ type: ErrorBodyDto, description: 'The caller is not a platform admin' })
@UseGuards(PlatformAdminGuard)
@Controller('tenants')
export class TenantsController {
  constructor(
    private readonly provisioning: ProvisioningService,
    private readonly directory: TenantDirectory,
  ) {}

  @Post()
  @HttpCode(201)
  @ApiCreatedResponse({ type: TenantDto, description: 'Provisioned and active' })
  @ApiBadRequestResponse({ type: ErrorBodyDto })
  @ApiConflictResponse({ type: ErrorBodyDto, description: 'Slug taken' })
  @ApiServiceUnavailableResponse({ type: ErrorBodyDto, description: 'The placement could not be prepared; nothing was kept' })
  async create(@Body() dto: CreateTenantDto): Promise<TenantDto> {
    return TenantDto.from(await this.provisioning.provision(dto));
  }

  @Get()
  @ApiOkResponse({ type: TenantPageDto })
  async list(@Query() q: ListTenantsQuery): Promise<TenantPageDto> {
    const items = await this.directory.listTenants(q.limit, q.cursor);
    return { items: items.map(TenantDto.from), nextCursor: nextCursor(items, q.limit) };
  }

  @Get(':id')
  @ApiOkResponse({ type: TenantDto })
  @ApiNotFoundResponse({ type: ErrorBodyDto })
  async get(@Param('id', UuidPipe) id: string): Promise<TenantDto> {
    const t = await this.directory.findTenant(id);
    if (!t) throw new TenancyError('TENANT_NOT_FOUND', `tenant ${id} was not found`, 'id');
    return TenantDto.from(t);
  }
}
