import { Injectable } from '@nestjs/common';
import { TenantConnectionProvider } from '../tenancy/tenant-connection.provider.js';
import { TenantDirectory } from '../tenancy/tenant-directory.service.js';
import { TenantPools } from '../tenancy/tenant-pools.service.js';
import { TenancyError } from '../tenancy/tenancy.errors.js';
import { TopTenantDto, TopUsageDto, TopUsageQuery, UsageRangeQuery, UsageReportDto } from './dto/usage.dto.js';
import { resolveRange, RunQuery, topTenants, usageDays } from './usage-queries.js';

/** Usage as stored in usage_daily: what every instance has flushed (up to USAGE_FLUSH_INTERVAL_MS behind). */
@Injectable()
export class UsageService {
  private readonly run: RunQuery;

  constructor(
    pools: TenantPools,
    private readonly tenant: TenantConnectionProvider,
    private readonly directory: TenantDirectory,
  ) {
    this.run = (sql, params) => pools.control().query(sql, params);
  }

  /** The current tenant's usage (a tenant-scoped route). */
  async ofCurrentTenant(q: UsageRangeQuery): Promise<UsageReportDto> {
    const { from, to } = resolveRange(q);
    const t = this.tenant.tenant;
    return UsageReportDto.from(t, from, to, await usageDays(this.run, t.id, from, to));
  }

  /** Any tenant's usage, for platform admins: TENANT_NOT_FOUND when no tenant has this id. */
  async ofTenant(id: string, q: UsageRangeQuery): Promise<UsageReportDto> {
    const { from, to } = resolveRange(q);
    const t = await this.directory.findTenant(id);
    if (!t) throw new TenancyError('TENANT_NOT_FOUND', `tenant ${id} was not found`, 'id');
    return UsageReportDto.from({ id: t.id, slug: t.slug, tier: t.placement.tier }, from, to, await usageDays(this.run, t.id, from, to));
  }

  async top(q: TopUsageQuery): Promise<TopUsageDto> {
    const { from, to } = resolveRange(q);
    const items = await topTenants(this.run, q.by, from, to, q.limit);
    return { by: q.by, from, to, items: items.map(TopTenantDto.from) };
  }
}
