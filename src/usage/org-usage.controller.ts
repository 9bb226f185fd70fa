import { Controller, Get, Query } from '@nestjs/common';
import { ApiBadRequestResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ErrorBodyDto } from '../http/error-body.dto.js';
import { AllowRoles, TenantScoped } from '../tenancy/tenant-scoped.decorator.js';
import { UsageRangeQuery, UsageReportDto } from './dto/usage.dto.js';
import { UsageService } from './usage.service.js';

@ApiTags('usage')
// Usage lives in the control plane: no tenant transaction.
@TenantScoped({ transaction: false })
@Controller('orgs/:slug/usage')
export class OrgUsageController {
  constructor(private readonly usage: UsageService) {}

  @Get()
  @AllowRoles('owner', 'admin', 'billing')
  @ApiOperation({
    summary: "The tenant's usage per UTC day: requests, errors, writes, database time, rows stored and active seats",
    description:
      'Counters are added by every app instance every USAGE_FLUSH_INTERVAL_MS, so the latest requests may be missing for that long. ' +
      'Rows stored and active seats are snapshots taken every USAGE_SNAPSHOT_INTERVAL_MS. Owners, admins and billing members only.',
  })
  @ApiOkResponse({ type: UsageReportDto })
  @ApiBadRequestResponse({ type: ErrorBodyDto, description: 'VALIDATION_FAILED: from or to is not a YYYY-MM-DD date, from is after to, or the range covers more than 366 days (field names which)' })
  report(@Query() q: UsageRangeQuery): Promise<UsageReportDto> {
    return this.usage.ofCurrentTenant(q);
  }
}
