import { Controller, Get, Param, Query, UseGuards } from '@nestjs/common';
import { ApiBadRequestResponse, ApiBearerAuth, ApiForbiddenResponse, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { PlatformAdminGuard } from '../auth/platform-admin.guard.js';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { UuidPipe } from '../http/validation.js';
import { TopUsageDto, TopUsageQuery, UsageRangeQuery, UsageReportDto } from './dto/usage.dto.js';
import { UsageService } from './usage.service.js';

/**
 * Usage across tenants, for platform admins. `usage/top` is a static path: Fastify's router
 * prefers static segments to parameters, and no `tenants/:id/...` route ends in `/top`, so no
 * `tenants/:id` route can take it (the e2e test asks for it).
 */
@ApiTags('usage (platform admins)')
@ApiBearerAuth()
@ApiForbiddenResponse({ type: ErrorBodyDto, description: 'PLATFORM_ADMIN_REQUIRED: the caller is not a platform admin' })
@ApiBadRequestResponse({ type: ErrorBodyDto, description: 'VALIDATION_FAILED: a bad id, date, range, by or limit (field names which)' })
@UseGuards(PlatformAdminGuard)
@Controller('tenants')
export class TenantUsageController {
  constructor(private readonly usage: UsageService) {}

  @Get('usage/top')
  @ApiOperation({ summary: 'The tenants that used the most over a range of UTC days, noisiest first (by requests or by database time)' })
  @ApiOkResponse({ type: TopUsageDto })
  top(@Query() q: TopUsageQuery): Promise<TopUsageDto> {
    return this.usage.top(q);
  }

  @Get(':id/usage')
  @ApiOperation({ summary: "A tenant's usage per UTC day (as GET /orgs/{slug}/usage shows it to the tenant)" })
  @ApiOkResponse({ type: UsageReportDto })
  @ApiNotFoundResponse({ type: ErrorBodyDto, description: 'TENANT_NOT_FOUND' })
  report(@Param('id', UuidPipe) id: string, @Query() q: UsageRangeQuery): Promise<UsageReportDto> {
    return this.usage.ofTenant(id, q);
  }
}
